# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title Clearinghouse
@notice Markets, positions, funding and open interest of the perpetual exchange. Settles matched
        EIP-712 signed orders inside a price band around the oracle, keeps every account's cross
        margin over all markets and accrues funding lazily. The waterfall for a failing account:
        1. below maintenance margin anyone may `liquidate` it at the mark (discount to the
           liquidator, penalty to the insurance vault);
        2. below `backstop_ratio` x maintenance margin (or below maintenance when a keeper found no
           liquidator) anyone may `backstop` it: the insurance vault takes over every position and
           all remaining collateral, covering a deficit within its loss cap, if its risk limits allow;
        3. an account with negative value that the vault refuses is flagged bankrupt and frozen;
           the ADL engine (contracts/AdlEngine.vy) then resolves it through the `adl_*` hooks:
           opposite-side winners pay its deficit and its positions are offset at one price per
           market. Withdrawals wait while an ADL round is open.
@dev Account value = pool balance + unrealised PnL + unsettled funding, over all open markets.
     Collateral lives in the MarginPool; this contract tells the pool what to credit and debit.
     Every multiply-divide rounds in the pool's favour (see modules/margin_math.vy).
"""

from snekmate.auth import ownable
from snekmate.utils import ecdsa
from snekmate.utils import eip712_domain_separator
from interfaces import IInsuranceVault
from interfaces import IMarginPool
from interfaces import IOracle
from modules import fixed_point
from modules import keeper_roles
from modules import margin_math

initializes: ownable
initializes: keeper_roles[ownable := ownable]
initializes: eip712_domain_separator

exports: (
    ownable.owner,
    ownable.transfer_ownership,
    keeper_roles.is_keeper,
    keeper_roles.set_keeper,
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

event Liquidation:
    account: indexed(address)
    liquidator: indexed(address)
    market: indexed(uint256)
    size: uint256
    price: uint256
    discount: uint256
    penalty: uint256

event BankruptcyFlagged:
    account: indexed(address)
    deficit: uint256

event BankruptcyCleared:
    account: indexed(address)

event Takeover:
    account: indexed(address)
    vault: indexed(address)
    # @dev the account's value handed over: positive is the vault's buffer, negative its loss
    value: int256
    markets: uint256

event TakeoverRefused:
    account: indexed(address)
    vault: indexed(address)
    reason: String[48]

event UpdateMarket:
    market: indexed(uint256)
    params: MarketParams

event UpdateLiquidationParams:
    discount: uint256
    penalty: uint256

event UpdateInsuranceAccount:
    insurance_account: address

event UpdateBackstopRatio:
    backstop_ratio: uint256

event UpdateAdlEngine:
    adl_engine: address


# ---------------------------------------------------------------- structs

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

struct Position:
    # @dev signed base units (1e18): long > 0, short < 0
    size: int256
    # @dev size-weighted average entry price (1e18); 0 when flat
    entry_price: uint256
    # @dev the market's funding index when funding was last settled into the pool balance
    funding_snapshot: int256

struct Order:
    account: address
    market: uint256
    # @dev signed base units: a buy is positive, a sell negative
    size: int256
    # @dev worst acceptable price: the highest for a buy, the lowest for a sell
    limit_price: uint256
    # @dev any number that makes otherwise equal orders distinct
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

struct AdlSettlement:
    # @dev an account trading against the bankrupt account: a winner or the vault
    account: address
    # @dev signed size change of `account`; the bankrupt account takes the opposite change
    size: int256
    # @dev collateral moved from `account` to the bankrupt account
    haircut: uint256

struct AccountHealth:
    # @dev pool balance + unrealised PnL + unsettled funding, collateral units
    value: int256
    initial_margin: uint256
    maintenance_margin: uint256


# ---------------------------------------------------------------- constants

# @dev Markets are ids 0 .. MAX_MARKETS - 1; an account's open markets fit in one bitmask word.
MAX_MARKETS: constant(uint256) = 16
# @dev Largest batch of fills in one `settle_fills` call.
MAX_FILLS: constant(uint256) = 64
# @dev Largest batch of counterparties in one `adl_settle` call.
MAX_ADL_SETTLEMENTS: constant(uint256) = 400
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
# @dev Position per account per market.
positions: public(HashMap[address, HashMap[uint256, Position]])
# @dev Bit m set when the account has a position in market m.
open_markets: public(HashMap[address, uint256])
# @dev Base units filled per order hash; a cancelled order counts as filled in full.
order_filled: public(HashMap[bytes32, uint256])
# @dev Accounts found with negative value, frozen until the backstop or ADL resolves them.
bankrupt: public(HashMap[address, bool])
# @dev The insurance vault: credited with liquidation penalties, takes over failing accounts.
insurance_account: public(address)
# @dev Fraction of maintenance margin (1e18 = 100%) below which anyone may hand an account to the vault.
backstop_ratio: public(uint256)
# @dev The ADL engine: the only caller of the `adl_*` hooks.
adl_engine: public(address)
# @dev Number of open ADL rounds; withdrawals wait while it is above zero.
adl_rounds_open: public(uint256)
# @dev Accounts in an open ADL round: the backstop and `clear_bankruptcy` leave them alone.
in_adl_round: public(HashMap[address, bool])
# @dev Liquidator's discount as a fraction of the notional liquidated (1e18 = 100%).
liquidation_discount: public(uint256)
# @dev Insurance penalty as a fraction of the notional liquidated.
liquidation_penalty: public(uint256)


# ---------------------------------------------------------------- constructor

@deploy
def __init__(price_oracle: IOracle, margin_pool: IMarginPool, insurance: address, discount: uint256, penalty: uint256, ratio: uint256):
    """
    @notice Deploys the clearinghouse; the deployer becomes owner.
    @param price_oracle The oracle.
    @param margin_pool The margin pool (wire it back with `MarginPool.set_clearinghouse`).
    @param insurance The insurance vault (or, before one is deployed, any account for penalties).
    @param discount Liquidator's discount, fraction of notional (1e18 = 100%).
    @param penalty Insurance penalty, fraction of notional.
    @param ratio Backstop ratio, fraction of maintenance margin (Hyperliquid uses 2/3).
    """
    ownable.__init__()
    eip712_domain_separator.__init__("Backstop", "1")
    oracle = price_oracle
    pool = margin_pool
    self._set_insurance_account(insurance)
    self._set_liquidation_params(discount, penalty)
    self._set_backstop_ratio(ratio)


# ---------------------------------------------------------------- owner

@external
def list_market(params: MarketParams) -> uint256:
    """
    @notice Lists a new market under the next id.
    @dev Owner only. The oracle must already have a feed for that id before anyone trades.
    @param params Risk and funding parameters.
    @return The new market id.
    """
    ownable._check_owner()
    market: uint256 = self.market_count
    assert market < MAX_MARKETS, "Clearinghouse: too many markets"
    self.market_count = market + 1
    self.funding_updated_at[market] = block.timestamp
    self._set_market(market, params)
    return market


@external
def set_market_params(market: uint256, params: MarketParams):
    """
    @notice Updates a listed market's parameters.
    @dev Owner only. Funding accrues at the old parameters up to now first.
    @param market The market id.
    @param params New risk and funding parameters.
    """
    ownable._check_owner()
    self._check_listed(market)
    self._accrue_funding(market)
    self._set_market(market, params)


@external
def set_liquidation_params(discount: uint256, penalty: uint256):
    """
    @notice Sets the liquidator's discount and the insurance penalty.
    @dev Owner only. Their sum must stay below 100%.
    @param discount Fraction of the notional liquidated paid to the liquidator.
    @param penalty Fraction of the notional liquidated paid to the insurance account.
    """
    ownable._check_owner()
    self._set_liquidation_params(discount, penalty)


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
def set_backstop_ratio(ratio: uint256):
    """
    @notice Sets the fraction of maintenance margin below which anyone may hand an account to the vault.
    @dev Owner only; at most 100%.
    @param ratio 1e18 = 100%.
    """
    ownable._check_owner()
    self._set_backstop_ratio(ratio)


@external
def set_adl_engine(engine: address):
    """
    @notice Sets the ADL engine, the only contract allowed to resolve bankrupt accounts.
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
         Afterwards each account must be at or above initial margin if its risk grew, and keep a
         non-negative value otherwise.
    @param fills The fills, settled in order.
    """
    for fill: Fill in fills:
        self._settle_fill(fill)


@external
def cancel_order(order: Order):
    """
    @notice Cancels the rest of one of the caller's orders.
    @param order The order as signed.
    """
    assert order.account == msg.sender, "Clearinghouse: not the order's account"
    order_hash: bytes32 = self._order_hash(order)
    self.order_filled[order_hash] = convert(abs(order.size), uint256)
    log OrderCancelled(account=msg.sender, order_hash=order_hash)


@external
def accrue_funding(market: uint256):
    """
    @notice Brings a market's funding index up to now (keepers call it; trades do it themselves).
    @param market The market id.
    """
    self._check_listed(market)
    self._accrue_funding(market)


# ---------------------------------------------------------------- liquidation

@external
def liquidate(account: address, market: uint256, size: uint256) -> uint256:
    """
    @notice Takes over (part of) a position of an account below maintenance margin at the oracle
            mark. The liquidator receives a discount and the insurance account a penalty, both
            fractions of the notional taken and both bounded by what the account has left, so
            the liquidation never makes the account's value negative.
    @dev The size is clamped to the current position, so a keeper's stale figure is safe. A
         partial take-over must leave the account healthier (higher value per unit of maintenance
         margin); the liquidator must end at or above initial margin.
    @param account The account to liquidate.
    @param market The market of the position taken over.
    @param size Base units to take over; clamped to the position.
    @return The base units taken over.
    """
    assert account != msg.sender, "Clearinghouse: cannot liquidate yourself"
    self._check_listed(market)
    assert not self.bankrupt[account], "Clearinghouse: account bankrupt"
    assert not self.bankrupt[msg.sender], "Clearinghouse: liquidator bankrupt"
    position_size: int256 = self.positions[account][market].size
    assert position_size != 0, "Clearinghouse: no position"
    mark: uint256 = self._accrue_with_fresh_prices(market)

    before: AccountHealth = self._health(account, False)
    assert before.value >= 0, "Clearinghouse: account bankrupt"
    assert before.value < convert(before.maintenance_margin, int256), "Clearinghouse: account healthy"

    taken: uint256 = min(size, convert(abs(position_size), uint256))
    assert taken > 0, "Clearinghouse: zero size"
    account_delta: int256 = -convert(taken, int256) if position_size > 0 else convert(taken, int256)
    self._trade(account, market, account_delta, mark, False, 0)
    self._trade(msg.sender, market, -account_delta, mark, False, 0)

    after: AccountHealth = self._health(account, False)
    # Fees come out of what the account has left, discount first: a liquidation never bankrupts.
    # Floor on both: they move balance between accounts, never out of the pool.
    available: uint256 = convert(max(after.value, 0), uint256)
    taken_notional: uint256 = margin_math.notional(account_delta, mark)
    discount: uint256 = min(taken_notional * self.liquidation_discount // fixed_point.WAD, available)
    penalty: uint256 = min(taken_notional * self.liquidation_penalty // fixed_point.WAD, available - discount)
    if discount > 0:
        extcall pool.transfer_balance(account, msg.sender, discount)
    if penalty > 0:
        extcall pool.transfer_balance(account, self.insurance_account, penalty)
    value_after: int256 = after.value - convert(discount + penalty, int256)

    # A position taken over in full always passes: below (discount + penalty) / maintenance fraction
    # of its margin no partial take-over can raise an account's margin ratio, and such an account
    # must still be liquidatable market by market.
    if taken < convert(abs(position_size), uint256):
        assert value_after * convert(before.maintenance_margin, int256) > before.value * convert(after.maintenance_margin, int256), "Clearinghouse: partial liquidation must leave the account healthier"
    liquidator: AccountHealth = self._health(msg.sender, True)
    assert liquidator.value >= convert(liquidator.initial_margin, int256), "Clearinghouse: liquidator below initial margin"

    log Liquidation(account=account, liquidator=msg.sender, market=market, size=taken, price=mark, discount=discount, penalty=penalty)
    return taken


@external
def backstop(account: address) -> bool:
    """
    @notice Hands a failing account to the insurance vault: the vault takes over every position at
            the mark and all remaining collateral; the trader keeps nothing. If the account's value
            is negative the vault covers the deficit, but only within its loss allowance.
    @dev Anyone may call once the account's value is below `backstop_ratio` x maintenance margin; a
         keeper may call below maintenance margin (a liquidation found no taker). The vault's
         risk limits (loss allowance, position per market, leverage) are checked on the state
         after the takeover; if one would break, nothing moves, `TakeoverRefused` names the limit,
         and a bankrupt account is flagged for ADL.
    @param account The failing account.
    @return True if the vault took the account over, False if it refused.
    """
    vault: address = self.insurance_account
    assert account != vault, "Clearinghouse: the vault cannot take itself over"
    self._check_no_adl_round(account)
    open_mask: uint256 = self.open_markets[account]
    assert open_mask != 0, "Clearinghouse: no position"
    health: AccountHealth = self._health(account, True)
    line: uint256 = health.maintenance_margin if keeper_roles.is_keeper[msg.sender] else health.maintenance_margin * self.backstop_ratio // fixed_point.WAD
    assert health.value < convert(line, int256), "Clearinghouse: account above the backstop line"

    refusal: String[48] = self._takeover_refusal(account, vault, health.value)
    if refusal != "":
        log TakeoverRefused(account=account, vault=vault, reason=refusal)
        if health.value < 0 and not self.bankrupt[account]:
            self.bankrupt[account] = True
            log BankruptcyFlagged(account=account, deficit=convert(-health.value, uint256))
        return False

    markets: uint256 = 0
    for market: uint256 in range(MAX_MARKETS):
        if open_mask & (1 << market) == 0:
            continue
        mark: uint256 = self._accrue_with_fresh_prices(market)
        size: int256 = self.positions[account][market].size
        self._trade(account, market, -size, mark, False, 0)
        self._trade(vault, market, size, mark, False, 0)
        markets += 1
    # Positions closed at the mark realise exactly their marked value, so the balance left is the
    # account's value: a buffer the vault keeps, or a deficit it pays.
    balance: int256 = staticcall pool.balance_of(account)
    if balance > 0:
        extcall pool.transfer_balance(account, vault, convert(balance, uint256))
    elif balance < 0:
        extcall pool.transfer_balance(vault, account, convert(-balance, uint256))
    extcall IInsuranceVault(vault).record_takeover(account, convert(max(-balance, 0), uint256))
    self.bankrupt[account] = False
    log Takeover(account=account, vault=vault, value=balance, markets=markets)
    return True


@external
def flag_bankruptcy(account: address):
    """
    @notice Marks an account with negative value as bankrupt: it can no longer trade, withdraw or be
            liquidated through the market; the backstop and ADL layers resolve it.
    @dev Anyone may call. Uses the latest prices (no freshness needed to recognise a loss).
    @param account The account.
    """
    assert not self.bankrupt[account], "Clearinghouse: already bankrupt"
    value: int256 = self._health(account, False).value
    assert value < 0, "Clearinghouse: account solvent"
    self.bankrupt[account] = True
    log BankruptcyFlagged(account=account, deficit=convert(-value, uint256))


@external
def clear_bankruptcy(account: address):
    """
    @notice Lifts the bankruptcy flag of an account whose value is no longer negative (prices
            recovered or it was topped up), so it can trade, withdraw and be liquidated again.
    @dev Anyone may call. Uses the latest prices, as `flag_bankruptcy` does.
    @param account The account.
    """
    assert self.bankrupt[account], "Clearinghouse: not bankrupt"
    self._check_no_adl_round(account)
    assert self._health(account, False).value >= 0, "Clearinghouse: account still in deficit"
    self.bankrupt[account] = False
    log BankruptcyCleared(account=account)


# ---------------------------------------------------------------- ADL hooks

@external
def adl_open(account: address) -> uint256:
    """
    @notice Opens an ADL round for a flagged account whose value is still negative; withdrawals
            wait until the round closes.
    @dev ADL engine only. Fresh prices: the deficit fixes the haircuts of the whole round.
    @param account The bankrupt account.
    @return The deficit D (collateral units).
    """
    self._check_adl_engine()
    assert self.bankrupt[account] and not self.in_adl_round[account], "Clearinghouse: not flagged or round open"
    value: int256 = self._health(account, True).value
    assert value < 0, "Clearinghouse: account solvent"
    self.in_adl_round[account] = True
    self.adl_rounds_open += 1
    return convert(-value, uint256)


@external
def adl_settle(account: address, market: uint256, price: uint256, settlements: DynArray[AdlSettlement, MAX_ADL_SETTLEMENTS]):
    """
    @notice Trades the bankrupt account against winners (and the vault) at the round's price and
            moves each winner's haircut to it.
    @dev ADL engine only; the engine has checked sides, sizes and haircuts. Each counterparty's
         realised PnL, funding and haircut settle in one pool call; the bankrupt account's trade
         is the sum of theirs.
    @param account The bankrupt account, in an open round.
    @param market The market.
    @param price The round's price for this market (the mark when the round opened).
    @param settlements Counterparties, their size changes and haircuts.
    """
    self._check_adl_engine()
    assert self.in_adl_round[account], "Clearinghouse: no ADL round open"
    self._accrue_funding(market)
    total_size: int256 = 0
    total_haircut: uint256 = 0
    for settlement: AdlSettlement in settlements:
        self._trade(settlement.account, market, settlement.size, price, False, -convert(settlement.haircut, int256))
        total_size += settlement.size
        total_haircut += settlement.haircut
    if total_size != 0:
        self._trade(account, market, -total_size, price, False, convert(total_haircut, int256))
    elif total_haircut > 0:
        extcall pool.settle(account, convert(total_haircut, int256))


@external
def adl_close(account: address) -> int256:
    """
    @notice Closes an ADL round once the account is flat: what is left in its balance (funding
            while the round ran, rounding of partial closes) goes to or comes from the insurance
            vault, so the account ends at exactly zero, and its bankruptcy flag is lifted.
    @dev ADL engine only.
    @param account The account whose round closes.
    @return The residual moved: positive to the vault, negative from it.
    """
    self._check_adl_engine()
    assert self.in_adl_round[account], "Clearinghouse: no ADL round open"
    assert self.open_markets[account] == 0, "Clearinghouse: ADL round leaves a position"
    residual: int256 = staticcall pool.balance_of(account)
    vault: address = self.insurance_account
    if account != vault and residual != 0:
        extcall pool.settle(account, -residual)
        extcall pool.settle(vault, residual)
    self.in_adl_round[account] = False
    self.adl_rounds_open -= 1
    self.bankrupt[account] = False
    log BankruptcyCleared(account=account)
    return residual


# ---------------------------------------------------------------- views

@external
@view
def withdrawal_allowed(account: address, amount: uint256) -> bool:
    """
    @notice Whether `account` may withdraw `amount`: no ADL round is open, it is not bankrupt and
            its value after the withdrawal is at least its initial margin (fresh prices).
    @param account The account.
    @param amount Token units to withdraw.
    @return True if the withdrawal is allowed.
    """
    if self.adl_rounds_open > 0 or self.bankrupt[account]:
        return False
    health: AccountHealth = self._health(account, True)
    return health.value - convert(amount, int256) >= convert(health.initial_margin, int256)


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
    buyer_grew: bool = self._trade(buy.account, market, traded, fill.price, buy.reduce_only, 0)
    seller_grew: bool = self._trade(sell.account, market, -traded, fill.price, sell.reduce_only, 0)
    # The cap stops growth only: a fill that shrinks open interest is always allowed.
    open_interest: uint256 = self.long_open_interest[market]
    assert open_interest <= open_interest_before or open_interest <= self.markets[market].max_open_interest, "Clearinghouse: open interest cap"
    self._check_margin_after_trade(buy.account, buyer_grew)
    self._check_margin_after_trade(sell.account, seller_grew)
    log Trade(market=market, buyer=buy.account, seller=sell.account, size=fill.size, price=fill.price, buy_order=buy_hash, sell_order=sell_hash)


@internal
def _use_order(signed: SignedOrder, size: uint256) -> bytes32:
    order: Order = signed.order
    assert not self.bankrupt[order.account], "Clearinghouse: account bankrupt"
    assert block.timestamp <= order.expiry, "Clearinghouse: order expired"
    order_hash: bytes32 = self._order_hash(order)
    signer: address = ecdsa._try_recover_vrs(order_hash, signed.v, signed.r, signed.s)
    assert signer == order.account, "Clearinghouse: bad signature"
    filled: uint256 = self.order_filled[order_hash] + size
    assert filled <= convert(abs(order.size), uint256), "Clearinghouse: fill exceeds order remaining"
    self.order_filled[order_hash] = filled
    return order_hash


@internal
def _trade(account: address, market: uint256, delta: int256, price: uint256, reduce_only: bool, adjustment: int256) -> bool:
    """
    @dev Applies a signed size change at `price`: settles the position's funding, realises PnL on
         the part closed, blends the entry price on the part added, and keeps open interest.
         `adjustment` (an ADL haircut) is credited in the same pool call. Returns whether the
         account's risk in this market grew (larger or flipped position).
    """
    position: Position = self.positions[account][market]
    old_size: int256 = position.size
    new_size: int256 = old_size + delta
    index: int256 = self.funding_index[market]
    settled: int256 = margin_math.funding_payment(old_size, index, position.funding_snapshot) + adjustment

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

    position.size = new_size
    position.funding_snapshot = index
    self.positions[account][market] = position
    self._update_open_interest(market, old_size, new_size)
    if new_size == 0:
        self.open_markets[account] &= ~(1 << market)
    else:
        self.open_markets[account] |= 1 << market
    if settled != 0:
        extcall pool.settle(account, settled)
    log PositionUpdate(account=account, market=market, size=new_size, entry_price=position.entry_price, settled=settled)
    return abs(new_size) > abs(old_size) or (old_size != 0 and new_size != 0 and (old_size > 0) != (new_size > 0))


@internal
def _update_open_interest(market: uint256, old_size: int256, new_size: int256):
    long_change: int256 = max(new_size, 0) - max(old_size, 0)
    short_change: int256 = max(-new_size, 0) - max(-old_size, 0)
    self.long_open_interest[market] = convert(convert(self.long_open_interest[market], int256) + long_change, uint256)
    self.short_open_interest[market] = convert(convert(self.short_open_interest[market], int256) + short_change, uint256)


@internal
@view
def _check_margin_after_trade(account: address, risk_grew: bool):
    health: AccountHealth = self._health(account, risk_grew)
    if risk_grew:
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


# ---------------------------------------------------------------- internals: funding and health

@internal
def _accrue_with_fresh_prices(market: uint256) -> uint256:
    """
    @dev Accrues funding with prices that must be fresh (the action opens or moves risk) and
         returns the mark.
    """
    index_price: uint256 = 0
    mark_price: uint256 = 0
    index_price, mark_price = staticcall oracle.fresh_prices(market)
    self._store_funding_index(market, self._funding_index_now(market, index_price, mark_price))
    return mark_price


@internal
def _accrue_funding(market: uint256):
    index_price: uint256 = 0
    mark_price: uint256 = 0
    index_price, mark_price = staticcall oracle.latest_prices(market)
    self._store_funding_index(market, self._funding_index_now(market, index_price, mark_price))


@internal
def _store_funding_index(market: uint256, index: int256):
    if self.funding_updated_at[market] == block.timestamp:
        return
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
def _health(account: address, fresh: bool) -> AccountHealth:
    """
    @dev Cross-margin health over the account's open markets. `fresh` demands fresh, unpaused
         prices (for checks that let risk grow); otherwise the latest prices are used.
    """
    health: AccountHealth = AccountHealth(value=staticcall pool.balance_of(account), initial_margin=0, maintenance_margin=0)
    open_mask: uint256 = self.open_markets[account]
    for market: uint256 in range(MAX_MARKETS):
        if open_mask == 0:
            break
        if open_mask & (1 << market) == 0:
            continue
        open_mask &= ~(1 << market)
        index_price: uint256 = 0
        mark_price: uint256 = 0
        if fresh:
            index_price, mark_price = staticcall oracle.fresh_prices(market)
        else:
            index_price, mark_price = staticcall oracle.latest_prices(market)
        position: Position = self.positions[account][market]
        funding_index: int256 = self._funding_index_now(market, index_price, mark_price)
        health.value += margin_math.pnl(position.size, position.entry_price, mark_price)
        health.value += margin_math.funding_payment(position.size, funding_index, position.funding_snapshot)
        health.initial_margin += margin_math.margin_requirement(position.size, mark_price, self.markets[market].initial_margin)
        health.maintenance_margin += margin_math.margin_requirement(position.size, mark_price, self.markets[market].maintenance_margin)
    return health


# ---------------------------------------------------------------- internals: backstop

@internal
@view
def _takeover_refusal(account: address, vault: address, account_value: int256) -> String[48]:
    """
    @dev The first of the vault's limits that taking `account` over would break, or "" if none:
         its loss allowance, its largest position per market, its leverage afterwards.
    """
    if self.bankrupt[vault]:
        return "vault flagged bankrupt"
    if account_value < 0 and convert(-account_value, uint256) > staticcall IInsuranceVault(vault).loss_allowance():
        return "loss above the vault's allowance"
    vault_health: AccountHealth = self._health(vault, True)
    equity_after: int256 = vault_health.value + account_value
    if equity_after <= 0:
        return "vault equity exhausted"
    notional_after: uint256 = 0
    both_mask: uint256 = self.open_markets[account] | self.open_markets[vault]
    for market: uint256 in range(MAX_MARKETS):
        if both_mask & (1 << market) == 0:
            continue
        index_price: uint256 = 0
        mark_price: uint256 = 0
        index_price, mark_price = staticcall oracle.fresh_prices(market)
        vault_size: int256 = self.positions[vault][market].size
        size_after: int256 = vault_size + self.positions[account][market].size
        if abs(size_after) > abs(vault_size) and convert(abs(size_after), uint256) > staticcall IInsuranceVault(vault).max_position(market):
            return "position above the vault's limit"
        # Ceiling: the limit check counts the larger notional.
        notional_after += fixed_point.ceil_div(convert(abs(size_after), uint256) * mark_price, fixed_point.NOTIONAL_SCALE)
    if notional_after * fixed_point.WAD > staticcall IInsuranceVault(vault).max_leverage() * convert(equity_after, uint256):
        return "leverage above the vault's limit"
    return ""


# ---------------------------------------------------------------- internals: parameters

@internal
@view
def _check_adl_engine():
    assert msg.sender == self.adl_engine, "Clearinghouse: caller is not the ADL engine"


@internal
@view
def _check_no_adl_round(account: address):
    assert not self.in_adl_round[account], "Clearinghouse: account in an ADL round"


@internal
@view
def _check_listed(market: uint256):
    assert market < self.market_count, "Clearinghouse: unknown market"


@internal
def _set_market(market: uint256, params: MarketParams):
    assert params.maintenance_margin > 0, "Clearinghouse: zero maintenance margin"
    assert params.initial_margin > params.maintenance_margin, "Clearinghouse: initial margin must exceed maintenance"
    assert params.initial_margin <= fixed_point.WAD, "Clearinghouse: initial margin above 100%"
    assert params.price_band > 0 and params.price_band < fixed_point.WAD, "Clearinghouse: price band out of range"
    assert params.max_open_interest > 0, "Clearinghouse: zero open interest cap"
    assert params.funding_premium_cap <= fixed_point.WAD, "Clearinghouse: funding cap above 100%"
    assert params.funding_period > 0, "Clearinghouse: zero funding period"
    self.markets[market] = params
    log UpdateMarket(market=market, params=params)


@internal
def _set_liquidation_params(discount: uint256, penalty: uint256):
    assert discount + penalty < fixed_point.WAD, "Clearinghouse: liquidation fees of 100% or more"
    self.liquidation_discount = discount
    self.liquidation_penalty = penalty
    log UpdateLiquidationParams(discount=discount, penalty=penalty)


@internal
def _set_backstop_ratio(ratio: uint256):
    assert ratio <= fixed_point.WAD, "Clearinghouse: backstop ratio above 100%"
    self.backstop_ratio = ratio
    log UpdateBackstopRatio(backstop_ratio=ratio)


@internal
def _set_insurance_account(insurance: address):
    assert insurance != empty(address), "Clearinghouse: zero insurance account"
    self.insurance_account = insurance
    log UpdateInsuranceAccount(insurance_account=insurance)
