# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title Clearinghouse
@notice Markets, positions, signed orders, funding and margin of the perpetual exchange. Settles
        matched EIP-712 signed orders inside a price band around the oracle, keeps every account's
        cross margin over all markets, charges trading fees for the insurance vault and accrues
        funding lazily. Markets and their parameters come from the MarketConfigurator
        (contracts/MarketConfigurator.vy), which checks them against hard bounds.
        The waterfall that resolves a failing account lives in two contracts of its own, which
        act on the books only through this contract's role-guarded hooks:
        - the LiquidationEngine (contracts/LiquidationEngine.vy): liquidation through the market,
          the insurance vault's takeover, bankruptcy flags;
        - the AdlEngine (contracts/AdlEngine.vy): auto-deleveraging of a bankrupt account.
        Both move positions at a price they fix (`transfer_positions`), move collateral balances
        (`transfer_balance`), set an account's flags (`set_account_flags`), mark the side of a
        market an open ADL round can charge (`set_adl_exposure`) and, when a round reaches its
        deadline, spread what is left of a deficit over one side of a market (`socialise_loss`).
        A bankrupt account cannot trade or withdraw; an account holding a side that an open round
        can charge waits to withdraw; everyone else withdraws as usual.
@dev Account value = pool balance + unrealised PnL + unsettled funding, over all open markets.
     Collateral lives in the MarginPool; this contract tells the pool what to credit and debit.
     Every multiply-divide rounds in the pool's favour (see modules/margin_math.vy).
     Storage is packed where a fill touches it: a position is two slots (size and entry price in
     one), an account's open markets and flags share one word, and an order filled in full or
     cancelled is one bit of its account's nonce bitmap.
"""

from snekmate.auth import ownable
from snekmate.utils import ecdsa
from snekmate.utils import eip712_domain_separator
from interfaces import IMarginPool
from interfaces import IOracle
from modules import fixed_point
from modules import margin_math

initializes: ownable
initializes: eip712_domain_separator

exports: (
    ownable.owner,
    ownable.transfer_ownership,
    eip712_domain_separator.eip712Domain,
)


# ---------------------------------------------------------------- events

event Trade:
    market: indexed(uint256)
    buyer: indexed(address)
    seller: indexed(address)
    size: uint256
    price: uint256
    buy_order: bytes32
    sell_order: bytes32
    # @dev trading fees paid by each side, collateral units (in `settled` of their PositionUpdate)
    buyer_fee: uint256
    seller_fee: uint256

event FeesCollected:
    # @dev the insurance vault, credited once per `settle_fills` with every fee of its fills
    insurance_account: indexed(address)
    amount: uint256

event PositionUpdate:
    account: indexed(address)
    market: indexed(uint256)
    size: int256
    entry_price: uint256
    # @dev realised PnL plus settled funding credited to the pool balance (negative: debited)
    settled: int256

event OrderCancelled:
    account: indexed(address)
    order_hash: indexed(bytes32)

event FundingAccrued:
    market: indexed(uint256)
    funding_index: int256
    timestamp: uint256

event UpdateAccountFlags:
    account: indexed(address)
    flags: AccountFlag

event UpdateAdlExposure:
    market: indexed(uint256)
    # @dev the side an open ADL round can charge: True for the longs
    longs: bool
    # @dev open rounds that can charge that side now
    rounds: uint256

event LossSocialised:
    account: indexed(address)
    market: indexed(uint256)
    longs_pay: bool
    amount: uint256
    # @dev the rise of the paying side's loss index (price units per base unit, 1e18 scale)
    per_unit: uint256

event UpdateMarket:
    market: indexed(uint256)
    params: MarketParams

event UpdateInsuranceAccount:
    insurance_account: address

event UpdateMarketConfigurator:
    market_configurator: address

event UpdateLiquidationEngine:
    liquidation_engine: address

event UpdateAdlEngine:
    adl_engine: address


# ---------------------------------------------------------------- flags and structs

flag AccountFlag:
    # @dev found with negative value: frozen until the vault or an ADL round resolves it
    BANKRUPT
    # @dev in an open ADL round: only the ADL engine acts on it
    IN_ADL_ROUND

flag Requirement:
    # @dev the margin to open or grow risk and to withdraw
    INITIAL
    # @dev the margin below which an account is liquidated
    MAINTENANCE

struct MarketParams:
    # @dev initial margin fraction (1e18 = 100%), required to open or grow risk
    initial_margin: uint256
    # @dev maintenance margin fraction; below it the account can be liquidated
    maintenance_margin: uint256
    # @dev largest distance of a fill price from the oracle mark, as a fraction of the mark
    price_band: uint256
    # @dev cap on open interest per side, in base units (1e18)
    max_open_interest: uint256
    # @dev largest funding premium, as a fraction of the index price
    funding_premium_cap: uint256
    # @dev seconds over which the full premium is paid
    funding_period: uint256
    # @dev fee of the resting side of a fill, fraction of its notional (1e18 = 100%)
    maker_fee: uint256
    # @dev fee of the side that took liquidity, fraction of its notional; at least the maker fee
    taker_fee: uint256

struct Position:
    # @dev signed base units (1e18): long > 0, short < 0
    size: int256
    # @dev size-weighted average entry price (1e18); 0 when flat
    entry_price: uint256
    # @dev the market's funding index when funding was last settled into the pool balance
    funding_snapshot: int256

struct StoredPosition:
    # @dev the size as a 128-bit two's complement in the high half, the entry price in the low half
    size_and_entry: uint256
    funding_snapshot: int256

struct Order:
    account: address
    market: uint256
    # @dev signed base units: a buy is positive, a sell negative
    size: int256
    # @dev worst acceptable price: the highest for a buy, the lowest for a sell
    limit_price: uint256
    # @dev the order's id among its account's orders: once an order with this nonce is filled in
    #      full or cancelled, no order of the account with the same nonce fills again
    nonce: uint256
    # @dev last timestamp at which the order may fill
    expiry: uint256
    reduce_only: bool

struct SignedOrder:
    order: Order
    v: uint256
    r: uint256
    s: uint256

struct Fill:
    buy: SignedOrder
    sell: SignedOrder
    # @dev base units traded, positive
    size: uint256
    price: uint256
    # @dev the submitter's word on which order took liquidity: it pays the taker fee, the other
    #      the maker fee. Either order accepts the taker fee; the vault earns the same either way.
    buyer_is_taker: bool

struct PositionTransfer:
    # @dev the account taking the other side of the transfer: a liquidator, the vault or an ADL winner
    counterparty: address
    # @dev signed size change of `counterparty`; the account transferring takes the opposite change
    size: int256
    # @dev collateral credited to the account transferring and charged to the counterparty's position
    #      in the market (an ADL haircut): its entry price moves against it, so that its profit
    #      drops by at least this much before the size changes
    payment: uint256

struct TradeOutcome:
    # @dev the position's signed size after the trade
    size: int256
    # @dev its entry price after the trade
    entry_price: uint256
    # @dev whether its risk grew: a larger or flipped position
    risk_grew: bool
    # @dev the account's pool balance after the trade; UNKNOWN_BALANCE if the pool was not called
    balance: int256

struct AccountHealth:
    # @dev pool balance + unrealised PnL + unsettled funding, collateral units
    value: int256
    initial_margin: uint256
    maintenance_margin: uint256


# ---------------------------------------------------------------- constants

# @dev Markets are ids 0 .. MAX_MARKETS - 1; an account's open markets fit in the low bits of its state word.
MAX_MARKETS: constant(uint256) = 16
OPEN_MARKETS_MASK: constant(uint256) = 2**MAX_MARKETS - 1
# @dev An account's flags sit above its open markets in its state word.
FLAGS_SHIFT: constant(uint256) = MAX_MARKETS
# @dev Largest batch of fills in one `settle_fills` call.
MAX_FILLS: constant(uint256) = 64
# @dev Largest batch of counterparties in one `transfer_positions` call.
MAX_TRANSFERS: constant(uint256) = 400
# @dev A position's size is a 128-bit two's complement: |size| < 2**127; its entry price < 2**128.
SIZE_BOUND: constant(int256) = 2**127
HALF_WORD: constant(uint256) = 2**128
# @dev `_trade`'s balance when it did not call the pool (no balance is that negative).
UNKNOWN_BALANCE: constant(int256) = min_value(int256)
# @dev Two bits per nonce in a nonce bitmap word: bit 2k filled in part, bit 2k+1 filled in full or cancelled.
NONCES_PER_WORD: constant(uint256) = 128
ORDER_TYPEHASH: constant(bytes32) = keccak256(
    "Order(address account,uint256 market,int256 size,uint256 limit_price,uint256 nonce,uint256 expiry,bool reduce_only)"
)


# ---------------------------------------------------------------- storage

# @dev Prices per market.
oracle: public(immutable(IOracle))
# @dev Custody of all collateral balances.
pool: public(immutable(IMarginPool))
# @dev Number of listed markets; ids 0 .. market_count - 1.
market_count: public(uint256)
# @dev Risk and funding parameters per market.
markets: public(HashMap[uint256, MarketParams])
# @dev Cumulative funding per base unit (1e18 price units) per market, as of `funding_updated_at`.
funding_index: public(HashMap[uint256, int256])
# @dev Timestamp of the last funding accrual per market.
funding_updated_at: public(HashMap[uint256, uint256])
# @dev Sum of long sizes per market.
long_open_interest: public(HashMap[uint256, uint256])
# @dev Sum of |short sizes| per market; always equal to the long side.
short_open_interest: public(HashMap[uint256, uint256])
# @dev Position per account per market, packed (read it with `positions`).
_positions: HashMap[address, HashMap[uint256, StoredPosition]]
# @dev Per account: bit m set when it has a position in market m, its AccountFlag above them.
_account_state: HashMap[address, uint256]
# @dev Per account and nonce word (nonce // 128): two bits per nonce, see NONCES_PER_WORD.
nonce_bitmap: public(HashMap[address, HashMap[uint256, uint256]])
# @dev Base units filled of an order filled in part only (an order filled in full is a nonce bit).
_partly_filled: HashMap[bytes32, uint256]
# @dev Per market, the loss that ADL rounds spread over each side, [longs, shorts], cumulative
#      price units per base unit (1e18 scale); a position pays its rise like funding.
loss_index: public(HashMap[uint256, uint256[2]])
# @dev Per market, the open ADL rounds that can charge each side, [longs, shorts].
adl_exposure: public(HashMap[uint256, uint256[2]])
# @dev The insurance vault: credited with liquidation penalties, takes over failing accounts.
insurance_account: public(address)
# @dev The MarketConfigurator: lists markets and sets their parameters, checked against its bounds.
market_configurator: public(address)
# @dev The LiquidationEngine: may move positions and balances and flag accounts through the hooks.
liquidation_engine: public(address)
# @dev The AdlEngine: may move positions and balances and flag accounts through the hooks.
adl_engine: public(address)
# @dev Inside `settle_fills` only: the fresh prices already read per market, and bit m set for
#      each market read. The oracle cannot change during the call (it calls nothing that could
#      move a price), so a batch reads each market once; cleared before the call returns.
_batch_index_price: transient(HashMap[uint256, uint256])
_batch_mark_price: transient(HashMap[uint256, uint256])
_batch_markets_read: transient(uint256)
_batch_open: transient(bool)
# @dev Inside `settle_fills` only: the fees of its fills so far, credited to the vault at its end.
_batch_fees: transient(uint256)


# ---------------------------------------------------------------- constructor

@deploy
def __init__(price_oracle: IOracle, margin_pool: IMarginPool, insurance: address):
    """
    @notice Deploys the clearinghouse; the deployer becomes owner.
    @param price_oracle The oracle.
    @param margin_pool The margin pool (wire it back with `MarginPool.set_clearinghouse`).
    @param insurance The insurance vault (or, before one is deployed, any account).
    """
    ownable.__init__()
    eip712_domain_separator.__init__("Backstop", "1")
    oracle = price_oracle
    pool = margin_pool
    self._set_insurance_account(insurance)


# ---------------------------------------------------------------- owner

@external
def set_insurance_account(insurance: address):
    """
    @notice Sets the insurance vault: penalty recipient and taker of failing accounts.
    @dev Owner only.
    @param insurance The new insurance vault.
    """
    ownable._check_owner()
    self._set_insurance_account(insurance)


@external
def set_market_configurator(configurator: address):
    """
    @notice Sets the MarketConfigurator, the only contract that may list markets and set their
            parameters (`set_market`).
    @dev Owner only. Zero freezes the markets' parameters.
    @param configurator The MarketConfigurator.
    """
    ownable._check_owner()
    self.market_configurator = configurator
    log UpdateMarketConfigurator(market_configurator=configurator)


@external
def set_market(market: uint256, params: MarketParams):
    """
    @notice Lists a market under the next id, or replaces a listed market's parameters after
            accruing its funding at the old ones up to now.
    @dev MarketConfigurator only: it has checked `params` against their bounds.
    @param market The next id (`market_count`) to list, or a listed market.
    @param params Risk, funding and fee parameters.
    """
    assert msg.sender == self.market_configurator, "Clearinghouse: caller is not the market configurator"
    count: uint256 = self.market_count
    if market == count:
        assert market < MAX_MARKETS, "Clearinghouse: too many markets"
        self.market_count = count + 1
        self.funding_updated_at[market] = block.timestamp
    else:
        self._check_listed(market)
        self._accrue_funding(market)
    self.markets[market] = params
    log UpdateMarket(market=market, params=params)


@external
def set_liquidation_engine(engine: address):
    """
    @notice Sets the LiquidationEngine, one of the two contracts allowed to use the waterfall hooks.
    @dev Owner only. Zero disables liquidation, the vault's takeovers and bankruptcy flags.
    @param engine The LiquidationEngine.
    """
    ownable._check_owner()
    self.liquidation_engine = engine
    log UpdateLiquidationEngine(liquidation_engine=engine)


@external
def set_adl_engine(engine: address):
    """
    @notice Sets the AdlEngine, one of the two contracts allowed to use the waterfall hooks.
    @dev Owner only. Zero disables ADL.
    @param engine The AdlEngine.
    """
    ownable._check_owner()
    self.adl_engine = engine
    log UpdateAdlEngine(adl_engine=engine)


# ---------------------------------------------------------------- trading

@external
def settle_fills(fills: DynArray[Fill, MAX_FILLS]):
    """
    @notice Settles matched signed orders; all fills or none.
    @dev Anyone may submit: the signatures are the authorisation. Each fill needs a buy and a sell
         order of the same market, signed by their accounts, unexpired, with enough remaining size,
         at a price within both limits and within the market's band around the fresh oracle mark.
         Each side pays a trading fee on its notional (the taker fee for the order the fill says
         took liquidity, the maker fee for the other), settled with its trade; the batch's fees
         reach the insurance vault in one credit at the end (`FeesCollected`). Afterwards each
         account must be at or above initial margin if its risk grew, and keep a non-negative
         value otherwise, fees included.
    @param fills The fills, settled in order.
    """
    self._batch_open = True
    for fill: Fill in fills:
        self._settle_fill(fill)
    fees: uint256 = self._batch_fees
    if fees > 0:
        # One credit per batch: the vault's balance is written once, not once per fill.
        insurance: address = self.insurance_account
        extcall pool.settle(insurance, convert(fees, int256))
        log FeesCollected(insurance_account=insurance, amount=fees)
        self._batch_fees = 0
    # A cached price is read only under its bit, so clearing the bits forgets the cache: a second
    # `settle_fills` in the same transaction reads the oracle afresh.
    self._batch_markets_read = 0
    self._batch_open = False


@external
def cancel_order(order: Order):
    """
    @notice Cancels the rest of one of the caller's orders, and with it every order of the caller
            that carries the same nonce.
    @param order The order as signed.
    """
    assert order.account == msg.sender, "Clearinghouse: not the order's account"
    word: uint256 = order.nonce // NONCES_PER_WORD
    done_bit: uint256 = 2 << (order.nonce % NONCES_PER_WORD * 2)
    self.nonce_bitmap[msg.sender][word] |= done_bit
    log OrderCancelled(account=msg.sender, order_hash=self._order_hash(order))


@external
def accrue_funding(market: uint256):
    """
    @notice Brings a market's funding index up to now (keepers call it; trades do it themselves).
    @param market The market id.
    """
    self._check_listed(market)
    self._accrue_funding(market)


# ---------------------------------------------------------------- waterfall hooks

@external
def transfer_positions(account: address, market: uint256, price: uint256, transfers: DynArray[PositionTransfer, MAX_TRANSFERS]):
    """
    @notice Moves position between `account` and counterparties at `price`, with collateral
            payments from each counterparty to `account`: a liquidation, the vault's takeover, an
            ADL round's closes and haircuts. Funding accrues first; each side's realised PnL,
            funding and payment settle in one pool call per account.
    @dev LiquidationEngine and AdlEngine only; they have checked sides, sizes, prices, payments
         and every margin rule. No open-interest cap applies: these transfers resolve risk.
    @param account The account whose position is taken over (liquidated, bankrupt).
    @param market The market.
    @param price The price of every transfer.
    @param transfers Counterparties, their size changes and payments.
    """
    self._check_waterfall()
    self._check_listed(market)
    self._accrue_funding(market)
    total_size: int256 = 0
    total_payment: uint256 = 0
    for transfer: PositionTransfer in transfers:
        self._trade(transfer.counterparty, market, transfer.size, price, False, 0, transfer.payment)
        total_size += transfer.size
        total_payment += transfer.payment
    if total_size != 0:
        self._trade(account, market, -total_size, price, False, convert(total_payment, int256), 0)
    elif total_payment > 0:
        extcall pool.settle(account, convert(total_payment, int256))


@external
def transfer_balance(sender: address, receiver: address, amount: uint256):
    """
    @notice Moves collateral balance between two accounts: liquidation fees, a takeover's
            collateral or deficit, an ADL round's residual.
    @dev LiquidationEngine and AdlEngine only.
    @param sender The account debited.
    @param receiver The account credited.
    @param amount Collateral units.
    """
    self._check_waterfall()
    extcall pool.transfer_balance(sender, receiver, amount)


@external
def set_account_flags(account: address, flags: AccountFlag):
    """
    @notice Sets an account's flags: BANKRUPT freezes it (no trading, no withdrawal),
            IN_ADL_ROUND marks it as resolved by an open ADL round (withdrawals wait meanwhile).
    @dev LiquidationEngine and AdlEngine only.
    @param account The account.
    @param flags The account's flags from now on.
    """
    self._check_waterfall()
    self._account_state[account] = (self._account_state[account] & OPEN_MARKETS_MASK) | (convert(flags, uint256) << FLAGS_SHIFT)
    log UpdateAccountFlags(account=account, flags=flags)


@external
def set_adl_exposure(market: uint256, longs: bool, exposed: bool):
    """
    @notice Counts an open ADL round in (or out of) the side of a market it can charge: while any
            round can charge a side, accounts holding it in that market wait to withdraw.
    @dev LiquidationEngine and AdlEngine only; rounds add up, so overlapping rounds are safe.
    @param market The market.
    @param longs The side the round can charge: True for the longs.
    @param exposed True when the round opens in the market, False when it resolves there.
    """
    self._check_waterfall()
    side: uint256 = 0 if longs else 1
    if exposed:
        self.adl_exposure[market][side] += 1
    else:
        self.adl_exposure[market][side] -= 1
    log UpdateAdlExposure(market=market, longs=longs, rounds=self.adl_exposure[market][side])


@external
def socialise_loss(account: address, market: uint256, longs_pay: bool, amount: uint256) -> uint256:
    """
    @notice Spreads `amount` of `account`'s deficit over every open position on one side of a
            market, in proportion to size: the side's loss index rises by amount / open interest,
            each position pays its part like funding when it next settles, and `account` is
            credited `amount` now. Gas does not depend on the positions open.
    @dev LiquidationEngine and AdlEngine only (the fallback of an ADL round past its deadline).
         Rounded up, so the positions pay at least `amount`. Changes nothing and returns 0 when
         no one holds that side.
    @param account The account credited (the bankrupt account of the round).
    @param market The market.
    @param longs_pay True to charge the longs, False the shorts.
    @param amount Collateral units.
    @return The amount credited: `amount`, or 0.
    """
    self._check_waterfall()
    self._check_listed(market)
    open_interest: uint256 = self.long_open_interest[market] if longs_pay else self.short_open_interest[market]
    if open_interest == 0 or amount == 0:
        return 0
    # Ceiling: the side pays at least the amount credited.
    per_unit: uint256 = fixed_point.ceil_div(amount * fixed_point.NOTIONAL_SCALE, open_interest)
    side: uint256 = 0 if longs_pay else 1
    self.loss_index[market][side] += per_unit
    extcall pool.settle(account, convert(amount, int256))
    log LossSocialised(account=account, market=market, longs_pay=longs_pay, amount=amount, per_unit=per_unit)
    return amount


# ---------------------------------------------------------------- views

@external
@view
def positions(account: address, market: uint256) -> Position:
    """
    @notice An account's position in a market.
    @param account The account.
    @param market The market id.
    @return Size (signed base units), entry price and funding snapshot.
    """
    return self._position(account, market)


@external
@view
def open_markets(account: address) -> uint256:
    """
    @notice The markets an account holds a position in.
    @param account The account.
    @return Bit m set for market m.
    """
    return self._account_state[account] & OPEN_MARKETS_MASK


@external
@view
def account_flags(account: address) -> AccountFlag:
    """
    @notice An account's flags (BANKRUPT, IN_ADL_ROUND).
    @param account The account.
    @return The flags.
    """
    return self._flags_of(self._account_state[account])


@external
@view
def bankrupt(account: address) -> bool:
    """
    @notice Whether an account is flagged bankrupt: frozen until the vault or ADL resolves it.
    @param account The account.
    @return True if flagged.
    """
    return AccountFlag.BANKRUPT in self._flags_of(self._account_state[account])


@external
@view
def in_adl_round(account: address) -> bool:
    """
    @notice Whether an account is being resolved by an open ADL round.
    @param account The account.
    @return True while its round is open.
    """
    return AccountFlag.IN_ADL_ROUND in self._flags_of(self._account_state[account])


@external
@view
def withdrawable(account: address) -> uint256:
    """
    @notice The most `account` may withdraw now: its balance, less what keeps it at initial margin
            at fresh prices; 0 while it is bankrupt or an open ADL round can charge a side it
            holds. The pool refuses any withdrawal above it.
    @dev Reverts, as a withdrawal would, while a market the account holds is paused or stale.
    @param account The account.
    @return Token units.
    """
    if self._withdrawal_waits(account):
        return 0
    balance: int256 = staticcall pool.balance_of(account)
    health: AccountHealth = self._health_from(account, balance, True, Requirement.INITIAL, MAX_MARKETS)
    headroom: int256 = min(balance, health.value - convert(health.initial_margin, int256))
    return convert(max(headroom, 0), uint256)


@external
@view
def account_health(account: address) -> AccountHealth:
    """
    @notice An account's value and margin requirements at the latest prices.
    @param account The account.
    @return value (collateral units, may be negative), initial and maintenance margin.
    """
    return self._health(account, False)


@external
@view
def fresh_account_health(account: address) -> AccountHealth:
    """
    @notice `account_health` at fresh prices: what a rule that lets risk grow or moves an
            account to another owner must see.
    @dev Reverts if a market the account holds is paused or its price is stale.
    @param account The account.
    @return value (collateral units, may be negative), initial and maintenance margin.
    """
    return self._health(account, True)


@external
@view
def account_value(account: address) -> int256:
    """
    @notice Pool balance + unrealised PnL + unsettled funding, at the latest prices.
    @param account The account.
    @return Collateral units; negative when the account is bankrupt.
    """
    return self._health(account, False).value


@external
@view
def current_funding_index(market: uint256) -> int256:
    """
    @notice The market's funding index as if accrued now.
    @param market The market id.
    @return Cumulative funding per base unit (1e18 price units).
    """
    self._check_listed(market)
    index_price: uint256 = 0
    mark_price: uint256 = 0
    index_price, mark_price = staticcall oracle.latest_prices(market)
    return self._funding_index_now(market, index_price, mark_price)


@external
@view
def order_hash(order: Order) -> bytes32:
    """
    @notice The EIP-712 digest an account signs for `order` on this chain and contract.
    @param order The order.
    @return The digest.
    """
    return self._order_hash(order)


@external
@view
def filled_size(order: Order) -> uint256:
    """
    @notice Base units of `order` that can no longer fill: all of it once it (or an order of its
            account with the same nonce) was filled in full or cancelled, else what it filled.
    @param order The order.
    @return Base units, at most |order.size|.
    """
    word: uint256 = self.nonce_bitmap[order.account][order.nonce // NONCES_PER_WORD]
    bit: uint256 = order.nonce % NONCES_PER_WORD * 2
    if word & (2 << bit) != 0:
        return convert(abs(order.size), uint256)
    if word & (1 << bit) != 0:
        return self._partly_filled[self._order_hash(order)]
    return 0


# ---------------------------------------------------------------- internals: trading

@internal
def _settle_fill(fill: Fill):
    buy: Order = fill.buy.order
    sell: Order = fill.sell.order
    market: uint256 = buy.market
    assert sell.market == market, "Clearinghouse: orders for different markets"
    self._check_listed(market)
    assert buy.size > 0, "Clearinghouse: buy order must have positive size"
    assert sell.size < 0, "Clearinghouse: sell order must have negative size"
    assert buy.account != sell.account, "Clearinghouse: self-trade"
    assert fill.size > 0, "Clearinghouse: zero fill"
    assert fill.price <= buy.limit_price, "Clearinghouse: price above buy limit"
    assert fill.price >= sell.limit_price, "Clearinghouse: price below sell limit"

    mark: uint256 = self._accrue_with_fresh_prices(market)
    band: uint256 = self.markets[market].price_band
    distance: uint256 = fill.price - mark if fill.price > mark else mark - fill.price
    assert distance * fixed_point.WAD <= band * mark, "Clearinghouse: price outside band"

    buy_hash: bytes32 = self._use_order(fill.buy, fill.size)
    sell_hash: bytes32 = self._use_order(fill.sell, fill.size)
    traded: int256 = convert(fill.size, int256)
    open_interest_before: uint256 = self.long_open_interest[market]
    maker_fee: uint256 = self.markets[market].maker_fee
    taker_fee: uint256 = self.markets[market].taker_fee
    # A fee is a fraction of the notional, rounded up like a margin requirement (pool's favour).
    buyer_fee: uint256 = margin_math.margin_requirement(traded, fill.price, taker_fee if fill.buyer_is_taker else maker_fee)
    seller_fee: uint256 = margin_math.margin_requirement(traded, fill.price, maker_fee if fill.buyer_is_taker else taker_fee)
    self._batch_fees += buyer_fee + seller_fee
    buyer: TradeOutcome = self._trade(buy.account, market, traded, fill.price, buy.reduce_only, -convert(buyer_fee, int256), 0)
    seller: TradeOutcome = self._trade(sell.account, market, -traded, fill.price, sell.reduce_only, -convert(seller_fee, int256), 0)
    # The cap stops growth only: a fill that shrinks open interest is always allowed.
    open_interest: uint256 = self.long_open_interest[market]
    assert open_interest <= open_interest_before or open_interest <= self.markets[market].max_open_interest, "Clearinghouse: open interest cap"
    self._check_margin_after_trade(buy.account, market, mark, buyer)
    self._check_margin_after_trade(sell.account, market, mark, seller)
    log Trade(market=market, buyer=buy.account, seller=sell.account, size=fill.size, price=fill.price, buy_order=buy_hash, sell_order=sell_hash, buyer_fee=buyer_fee, seller_fee=seller_fee)


@internal
def _use_order(signed: SignedOrder, size: uint256) -> bytes32:
    """
    @dev Checks an order and books `size` against it. An order filled in full in one go costs
         one bit of a nonce word (shared by 128 nonces) instead of a fresh storage slot.
    """
    order: Order = signed.order
    assert AccountFlag.BANKRUPT not in self._flags_of(self._account_state[order.account]), "Clearinghouse: account bankrupt"
    assert block.timestamp <= order.expiry, "Clearinghouse: order expired"
    order_hash: bytes32 = self._order_hash(order)
    signer: address = ecdsa._try_recover_vrs(order_hash, signed.v, signed.r, signed.s)
    assert signer == order.account, "Clearinghouse: bad signature"

    word_index: uint256 = order.nonce // NONCES_PER_WORD
    bit: uint256 = order.nonce % NONCES_PER_WORD * 2
    word: uint256 = self.nonce_bitmap[order.account][word_index]
    order_size: uint256 = convert(abs(order.size), uint256)
    filled: uint256 = size
    partly_filled: bool = word & (1 << bit) != 0
    if word & (2 << bit) != 0:
        filled = order_size + size
    elif partly_filled:
        filled += self._partly_filled[order_hash]
    assert filled <= order_size, "Clearinghouse: fill exceeds order remaining"
    if filled == order_size:
        self.nonce_bitmap[order.account][word_index] = word | (2 << bit)
        if partly_filled:
            self._partly_filled[order_hash] = 0
    else:
        if not partly_filled:
            self.nonce_bitmap[order.account][word_index] = word | (1 << bit)
        self._partly_filled[order_hash] = filled
    return order_hash


@internal
def _trade(account: address, market: uint256, delta: int256, price: uint256, reduce_only: bool, adjustment: int256, profit_charge: uint256) -> TradeOutcome:
    """
    @dev Applies a signed size change at `price`: settles the position's funding (and socialised
         loss), realises PnL on the part closed, blends the entry price on the part added, and
         keeps open interest. `adjustment` (a payment received in a position transfer; negative,
         a trading fee) is credited in the same pool call; `profit_charge` (an ADL haircut) is taken from the position's
         profit before the size changes. Returns the position after the trade, whether its risk
         grew, and the account's pool balance if the pool was called.
    """
    position: Position = self._position(account, market)
    old_size: int256 = position.size
    new_size: int256 = old_size + delta
    funding: int256 = self.funding_index[market]
    index_before: int256 = self._index_for(market, old_size, funding)
    settled: int256 = margin_math.funding_payment(old_size, index_before, position.funding_snapshot) + adjustment

    if profit_charge > 0:
        # The entry price moves against the position, so the profit any later round can charge
        # shrinks with what this one took. Ceiling: the position gives up at least the charge.
        entry_shift: uint256 = fixed_point.ceil_div(profit_charge * fixed_point.NOTIONAL_SCALE, convert(abs(old_size), uint256))
        position.entry_price = position.entry_price + entry_shift if old_size > 0 else position.entry_price - entry_shift

    if reduce_only:
        assert old_size != 0 and (old_size > 0) != (delta > 0) and abs(delta) <= abs(old_size), "Clearinghouse: reduce-only order would grow the position"

    if old_size == 0 or (old_size > 0) == (delta > 0):
        position.entry_price = margin_math.blended_entry_price(old_size, position.entry_price, delta, price)
    elif abs(delta) <= abs(old_size):
        settled += margin_math.pnl(-delta, position.entry_price, price)
        if new_size == 0:
            position.entry_price = 0
    else:
        settled += margin_math.pnl(old_size, position.entry_price, price)
        position.entry_price = price

    # A position that keeps its side keeps its side's index: no second loss-index read.
    index_after: int256 = index_before
    if old_size == 0 or new_size == 0 or (old_size > 0) != (new_size > 0):
        index_after = self._index_for(market, new_size, funding)
    self._store_position(account, market, new_size, position.entry_price, index_after)
    self._update_open_interest(market, old_size, new_size)
    state: uint256 = self._account_state[account]
    new_state: uint256 = state & ~(1 << market) if new_size == 0 else state | (1 << market)
    if new_state != state:
        self._account_state[account] = new_state
    balance: int256 = UNKNOWN_BALANCE
    if settled != 0:
        balance = extcall pool.settle(account, settled)
    log PositionUpdate(account=account, market=market, size=new_size, entry_price=position.entry_price, settled=settled)
    grew: bool = abs(new_size) > abs(old_size) or (old_size != 0 and new_size != 0 and (old_size > 0) != (new_size > 0))
    return TradeOutcome(size=new_size, entry_price=position.entry_price, risk_grew=grew, balance=balance)


@internal
def _update_open_interest(market: uint256, old_size: int256, new_size: int256):
    long_change: int256 = max(new_size, 0) - max(old_size, 0)
    short_change: int256 = max(-new_size, 0) - max(-old_size, 0)
    if long_change != 0:
        self.long_open_interest[market] = convert(convert(self.long_open_interest[market], int256) + long_change, uint256)
    if short_change != 0:
        self.short_open_interest[market] = convert(convert(self.short_open_interest[market], int256) + short_change, uint256)


@internal
@view
def _check_margin_after_trade(account: address, market: uint256, mark: uint256, trade: TradeOutcome):
    """
    @dev Grown risk needs fresh prices and the initial margin; otherwise the value alone is
         checked. The traded market counts from the trade itself: its funding has just settled,
         so it adds its PnL at the mark (and its margin) without reading the position again.
    """
    balance: int256 = trade.balance
    if balance == UNKNOWN_BALANCE:
        balance = staticcall pool.balance_of(account)
    requirements: Requirement = empty(Requirement)
    if trade.risk_grew:
        requirements = Requirement.INITIAL
    health: AccountHealth = self._health_from(account, balance, trade.risk_grew, requirements, market)
    health.value += margin_math.pnl(trade.size, trade.entry_price, mark)
    if trade.risk_grew:
        health.initial_margin += margin_math.margin_requirement(trade.size, mark, self.markets[market].initial_margin)
        assert health.value >= convert(health.initial_margin, int256), "Clearinghouse: below initial margin"
    else:
        assert health.value >= 0, "Clearinghouse: trade would bankrupt the account"


@internal
@view
def _order_hash(order: Order) -> bytes32:
    struct_hash: bytes32 = keccak256(
        abi_encode(ORDER_TYPEHASH, order.account, order.market, order.size, order.limit_price, order.nonce, order.expiry, order.reduce_only)
    )
    return eip712_domain_separator._hash_typed_data_v4(struct_hash)


# ---------------------------------------------------------------- internals: storage layout

@internal
@view
def _position(account: address, market: uint256) -> Position:
    stored: StoredPosition = self._positions[account][market]
    high: uint256 = stored.size_and_entry >> 128
    size: int256 = convert(high, int256)
    if high >= HALF_WORD >> 1:
        size -= convert(HALF_WORD, int256)
    return Position(size=size, entry_price=stored.size_and_entry % HALF_WORD, funding_snapshot=stored.funding_snapshot)


@internal
def _store_position(account: address, market: uint256, size: int256, entry_price: uint256, funding_snapshot: int256):
    assert size < SIZE_BOUND and size > -SIZE_BOUND and entry_price < HALF_WORD, "Clearinghouse: position out of range"
    high: uint256 = convert(size, uint256) if size >= 0 else convert(size + convert(HALF_WORD, int256), uint256)
    self._positions[account][market] = StoredPosition(size_and_entry=(high << 128) | entry_price, funding_snapshot=funding_snapshot)


@internal
@pure
def _flags_of(state: uint256) -> AccountFlag:
    return convert(state >> FLAGS_SHIFT, AccountFlag)


# ---------------------------------------------------------------- internals: funding and health

@internal
def _accrue_with_fresh_prices(market: uint256) -> uint256:
    """
    @dev Accrues funding with prices that must be fresh (the action opens or moves risk) and
         returns the mark.
    """
    index_price: uint256 = 0
    mark_price: uint256 = 0
    index_price, mark_price = self._fresh_prices(market)
    if self.funding_updated_at[market] != block.timestamp:
        self._store_funding_index(market, self._funding_index_now(market, index_price, mark_price))
    return mark_price


@internal
def _fresh_prices(market: uint256) -> (uint256, uint256):
    """
    @dev The oracle's fresh prices; inside `settle_fills`, read once per market per call.
    """
    if self._batch_markets_read & (1 << market) != 0:
        return self._batch_index_price[market], self._batch_mark_price[market]
    index_price: uint256 = 0
    mark_price: uint256 = 0
    index_price, mark_price = staticcall oracle.fresh_prices(market)
    if self._batch_open:
        self._batch_index_price[market] = index_price
        self._batch_mark_price[market] = mark_price
        self._batch_markets_read |= 1 << market
    return index_price, mark_price


@internal
@view
def _prices(market: uint256, fresh: bool) -> (uint256, uint256):
    """
    @dev Fresh (or, if `fresh` is False, the latest) prices: what `settle_fills` has read in this
         call if it has, else the oracle's. `_batch_markets_read` is zero outside `settle_fills`.
    """
    if self._batch_markets_read & (1 << market) != 0:
        return self._batch_index_price[market], self._batch_mark_price[market]
    if fresh:
        return staticcall oracle.fresh_prices(market)
    return staticcall oracle.latest_prices(market)


@internal
def _accrue_funding(market: uint256):
    if self.funding_updated_at[market] == block.timestamp:
        return
    index_price: uint256 = 0
    mark_price: uint256 = 0
    index_price, mark_price = staticcall oracle.latest_prices(market)
    self._store_funding_index(market, self._funding_index_now(market, index_price, mark_price))


@internal
def _store_funding_index(market: uint256, index: int256):
    self.funding_index[market] = index
    self.funding_updated_at[market] = block.timestamp
    log FundingAccrued(market=market, funding_index=index, timestamp=block.timestamp)


@internal
@view
def _funding_index_now(market: uint256, index_price: uint256, mark_price: uint256) -> int256:
    elapsed: uint256 = block.timestamp - self.funding_updated_at[market]
    if elapsed == 0:
        return self.funding_index[market]
    # Field by field: copying the whole MarketParams struct would read six storage slots.
    premium_cap: uint256 = self.markets[market].funding_premium_cap
    period: uint256 = self.markets[market].funding_period
    return self.funding_index[market] + margin_math.funding_index_delta(index_price, mark_price, premium_cap, elapsed, period)


@internal
@view
def _index_for(market: uint256, size: int256, funding_index: int256) -> int256:
    """
    @dev The index a position of `size` settles against: the funding index plus the loss spread
         over its side (a long pays a rising index, a short a falling one).
    """
    if size > 0:
        return funding_index + convert(self.loss_index[market][0], int256)
    if size < 0:
        return funding_index - convert(self.loss_index[market][1], int256)
    return funding_index


@internal
@view
def _withdrawal_waits(account: address) -> bool:
    """
    @dev True while the account is bankrupt or holds a side of a market that an open ADL round can
         still charge. Nothing else makes a withdrawal wait: a round never freezes bystanders.
    """
    state: uint256 = self._account_state[account]
    if AccountFlag.BANKRUPT in self._flags_of(state):
        return True
    open_mask: uint256 = state & OPEN_MARKETS_MASK
    for market: uint256 in range(MAX_MARKETS):
        if open_mask == 0:
            break
        if open_mask & (1 << market) == 0:
            continue
        open_mask &= ~(1 << market)
        side: uint256 = 0 if self._position(account, market).size > 0 else 1
        if self.adl_exposure[market][side] > 0:
            return True
    return False


@internal
@view
def _health(account: address, fresh: bool) -> AccountHealth:
    """
    @dev Cross-margin health over the account's open markets. `fresh` demands fresh, unpaused
         prices (for checks that let risk grow); otherwise the latest prices are used.
    """
    return self._health_from(account, staticcall pool.balance_of(account), fresh, Requirement.INITIAL | Requirement.MAINTENANCE, MAX_MARKETS)


@internal
@view
def _health_from(account: address, balance: int256, fresh: bool, requirements: Requirement, skipped_market: uint256) -> AccountHealth:
    """
    @dev `_health` from a known pool balance, computing only the `requirements` asked for (the
         others stay zero), over the open markets but `skipped_market` (MAX_MARKETS: none).
    """
    health: AccountHealth = AccountHealth(value=balance, initial_margin=0, maintenance_margin=0)
    open_mask: uint256 = self._account_state[account] & OPEN_MARKETS_MASK & ~(1 << skipped_market)
    for market: uint256 in range(MAX_MARKETS):
        if open_mask == 0:
            break
        if open_mask & (1 << market) == 0:
            continue
        open_mask &= ~(1 << market)
        index_price: uint256 = 0
        mark_price: uint256 = 0
        index_price, mark_price = self._prices(market, fresh)
        position: Position = self._position(account, market)
        funding_index: int256 = self._index_for(market, position.size, self._funding_index_now(market, index_price, mark_price))
        health.value += margin_math.pnl(position.size, position.entry_price, mark_price)
        health.value += margin_math.funding_payment(position.size, funding_index, position.funding_snapshot)
        if Requirement.INITIAL in requirements:
            health.initial_margin += margin_math.margin_requirement(position.size, mark_price, self.markets[market].initial_margin)
        if Requirement.MAINTENANCE in requirements:
            health.maintenance_margin += margin_math.margin_requirement(position.size, mark_price, self.markets[market].maintenance_margin)
    return health


# ---------------------------------------------------------------- internals: parameters and roles

@internal
@view
def _check_waterfall():
    assert msg.sender == self.liquidation_engine or msg.sender == self.adl_engine, "Clearinghouse: caller is not a waterfall engine"


@internal
@view
def _check_listed(market: uint256):
    assert market < self.market_count, "Clearinghouse: unknown market"


@internal
def _set_insurance_account(insurance: address):
    assert insurance != empty(address), "Clearinghouse: zero insurance account"
    self.insurance_account = insurance
    log UpdateInsuranceAccount(insurance_account=insurance)
