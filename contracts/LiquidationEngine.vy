# pragma version ~=0.4.3
# pragma nonreentrancy on
# pragma optimize codesize
# (codesize: liquidation, takeover and the auctions fit the 19,660-byte budget for about 300 gas a call)
"""
@title LiquidationEngine
@notice The first two layers of the waterfall for an account that can no longer carry its risk,
        the bankruptcy flags that hand the rest to ADL, and the auctions that let volunteers take
        positions over before anyone is forced to:
        1. below maintenance margin anyone may `liquidate` it: a liquidator takes (part of) a
           position over at the mark, for a discount; a penalty goes to the insurance vault;
        2. below `backstop_ratio` x maintenance margin (or below maintenance when a keeper found no
           liquidator) anyone may `backstop` it: the insurance vault takes over every position and
           all remaining collateral, covering a deficit within its loss cap, if its risk limits allow;
        3. an account with negative value that the vault refuses is flagged bankrupt and frozen;
           the ADL engine (contracts/AdlEngine.vy) then resolves it in a round, which (when
           `volunteer_auctions` is on) opens with a volunteer auction of its positions here;
        4. the vault's positions can be auctioned too (`start_unwind`): by anyone when the vault
           is above its risk limits or cannot pay a claimable redemption, by a keeper at any time.
        An auction (a descending-price auction, after MakerDAO's Clipper) offers a position at the
        fresh mark and moves its price in the taker's favour at a fixed rate up to a capped
        premium; anyone may `take` any part at the current price, within a price limit.
@dev Positions and balances move only through the clearinghouse's waterfall hooks, which accept
     this contract and the ADL engine. Every fee is a floor of the notional and is bounded by what
     the account has left, so a liquidation never makes an account's value negative.
"""

from snekmate.auth import ownable
from interfaces import IInsuranceVault
from interfaces import IMarginPool
from interfaces import IOracle
from interfaces import IWaterfallClearinghouse
from modules import fixed_point
from modules import keeper_roles
from modules import margin_math

initializes: ownable
initializes: keeper_roles[ownable := ownable]

exports: (
    ownable.owner,
    ownable.transfer_ownership,
    keeper_roles.is_keeper,
    keeper_roles.set_keeper,
)


# ---------------------------------------------------------------- events

event Liquidation:
    account: indexed(address)
    liquidator: indexed(address)
    market: indexed(uint256)
    size: uint256
    price: uint256
    discount: uint256
    penalty: uint256

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

event BankruptcyFlagged:
    account: indexed(address)
    deficit: uint256

event BankruptcyCleared:
    account: indexed(address)

event UpdateLiquidationParams:
    discount: uint256
    penalty: uint256

event UpdateBackstopRatio:
    backstop_ratio: uint256

event AuctionStarted:
    account: indexed(address)
    market: indexed(uint256)
    # @dev the part of the position offered, signed as the position (long > 0)
    size: int256
    # @dev the fresh mark at the start: the price of a take in the first second
    mark: uint256
    # @dev no take at or after this time
    end: uint256
    # @dev True for a bankrupt account's auction in its ADL round, False for a vault unwind
    volunteer: bool

event AuctionTaken:
    account: indexed(address)
    taker: indexed(address)
    market: indexed(uint256)
    size: uint256
    price: uint256
    # @dev what the taker gained against the fresh mark: size x |mark - price| (floor)
    premium: uint256
    # @dev the size still offered
    remaining: uint256

event AuctionEnded:
    # @dev sold out: the last take left nothing
    account: indexed(address)
    market: indexed(uint256)

event AuctionCancelled:
    account: indexed(address)
    market: indexed(uint256)
    # @dev the size that was still offered
    remaining: uint256

event UpdateAuctionParams:
    premium: uint256
    ramp: uint256
    duration: uint256
    min_notional: uint256
    volunteers: bool


# ---------------------------------------------------------------- structs

struct Auction:
    # @dev the part of the position still offered, signed as the position; 0 when none runs
    lot: int256
    # @dev when it started: the premium grows from here
    start: uint256
    # @dev no take at or after this time
    end: uint256
    # @dev True for a bankrupt account's auction in its ADL round (its takes are the round's)
    volunteer: bool

# @dev What the vault's `claim_preview` returns (contracts/InsuranceVault.vy).
struct ClaimPreview:
    shares: uint256
    claimable_at: uint256
    owed: uint256
    payable_now: uint256


# ---------------------------------------------------------------- interfaces

interface IVaultClaims:
    def claim_preview(controller: address) -> ClaimPreview: view

# @dev The clearinghouse's `transfer_positions` as this engine calls it: one transfer at a time. The
#      ABI is the same for any bound; a bound of 1 keeps the call's buffer (and memory gas) small.
interface ISingleTransfer:
    def transfer_positions(account: address, market: uint256, price: uint256, transfers: DynArray[IWaterfallClearinghouse.PositionTransfer, 1]): nonpayable


# ---------------------------------------------------------------- constants

MAX_MARKETS: constant(uint256) = 16
# @dev Hard bounds of the auction parameters: the premium a taker can earn is a loss to the winners
#      (a volunteer auction) or to the vault's depositors (an unwind), so the owner can tune it,
#      not confiscate with it; an auction lasts at least its ramp and at most a day, so that a
#      round's deadline stays near its own duration.
MAX_AUCTION_PREMIUM: constant(uint256) = 2 * 10**17
MIN_AUCTION_RAMP: constant(uint256) = 60
MAX_AUCTION_DURATION: constant(uint256) = 86400
MAX_AUCTION_MIN_NOTIONAL: constant(uint256) = 10**11


# ---------------------------------------------------------------- storage

# @dev Positions, account values and the waterfall hooks.
clearinghouse: public(immutable(IWaterfallClearinghouse))
# @dev Prices: every move of risk here needs fresh ones.
oracle: public(immutable(IOracle))
# @dev Collateral balances (read only; they move through the clearinghouse).
pool: public(immutable(IMarginPool))
# @dev Liquidator's discount as a fraction of the notional liquidated (1e18 = 100%).
liquidation_discount: public(uint256)
# @dev Insurance penalty as a fraction of the notional liquidated.
liquidation_penalty: public(uint256)
# @dev Fraction of maintenance margin (1e18 = 100%) below which anyone may hand an account to the vault.
backstop_ratio: public(uint256)
# @dev The largest premium over the mark an auction reaches (1e18 = 100%).
auction_premium: public(uint256)
# @dev Seconds an auction takes to reach `auction_premium`, at a constant rate.
auction_ramp: public(uint256)
# @dev Seconds an auction lasts (at least `auction_ramp`); a volunteer auction's time is part of its ADL round's.
auction_duration: public(uint256)
# @dev The smallest notional (collateral units) a partial take may leave (MakerDAO's `chost`): no unsellable dust.
auction_min_notional: public(uint256)
# @dev Whether an ADL round opens with a volunteer auction of the bankrupt account's positions.
volunteer_auctions: public(bool)
# @dev The auction of each account's position per market, packed in one word (`auctions` unpacks
#      it) so that a take reads one slot: the lot (128-bit two's complement) above the end (64
#      bits), the start (63 bits) and the volunteer flag (bit 0); zero when none ever ran.
_auctions: HashMap[address, HashMap[uint256, uint256]]
# @dev 1 + the premiums volunteers earned in an account's volunteer auction per market that the
#      ADL engine has not yet settled into the round (`settle_volunteer_premium`); set to 1 when
#      the auction starts so that a take writes a slot already in use (5,000 gas, not 22,100).
_volunteer_premiums: HashMap[address, HashMap[uint256, uint256]]


# ---------------------------------------------------------------- constructor

@deploy
def __init__(
    clearing: IWaterfallClearinghouse,
    price_oracle: IOracle,
    discount: uint256,
    penalty: uint256,
    ratio: uint256,
    premium: uint256,
    ramp: uint256,
    duration: uint256,
    min_notional: uint256,
    volunteers: bool,
):
    """
    @notice Deploys the engine; the deployer becomes owner. Wire it with
            `Clearinghouse.set_liquidation_engine`.
    @param clearing The clearinghouse.
    @param price_oracle The oracle the clearinghouse uses.
    @param discount Liquidator's discount, fraction of notional (1e18 = 100%).
    @param penalty Insurance penalty, fraction of notional.
    @param ratio Backstop ratio, fraction of maintenance margin (Hyperliquid uses 2/3).
    @param premium Largest premium over the mark an auction reaches (1e18 = 100%).
    @param ramp Seconds an auction takes to reach it.
    @param duration Seconds an auction lasts.
    @param min_notional Smallest notional a partial take may leave (collateral units).
    @param volunteers Whether ADL rounds open with a volunteer auction.
    """
    ownable.__init__()
    clearinghouse = clearing
    oracle = price_oracle
    pool = IMarginPool(staticcall clearing.pool())
    self._set_liquidation_params(discount, penalty)
    self._set_backstop_ratio(ratio)
    self._set_auction_params(premium, ramp, duration, min_notional, volunteers)


# ---------------------------------------------------------------- owner

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
def set_backstop_ratio(ratio: uint256):
    """
    @notice Sets the fraction of maintenance margin below which anyone may hand an account to the vault.
    @dev Owner only; at most 100%.
    @param ratio 1e18 = 100%.
    """
    ownable._check_owner()
    self._set_backstop_ratio(ratio)


@external
def set_auction_params(premium: uint256, ramp: uint256, duration: uint256, min_notional: uint256, volunteers: bool):
    """
    @notice Sets the auctions' price schedule, their dust rule and whether ADL rounds begin with a
            volunteer auction (the volunteer step). Auctions already running keep their start
            and end but price by the new schedule; rounds already open keep their deadline.
    @dev Owner only. Hard bounds: 0 < premium <= 20%, 60 s <= ramp <= duration <= 1 day,
         min_notional <= $100,000.
    @param premium Largest premium over the mark (1e18 = 100%).
    @param ramp Seconds to reach it, at a constant rate.
    @param duration Seconds an auction lasts.
    @param min_notional Smallest notional (collateral units) a partial take may leave.
    @param volunteers True: an ADL round first auctions the bankrupt positions to volunteers.
    """
    ownable._check_owner()
    self._set_auction_params(premium, ramp, duration, min_notional, volunteers)


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
    assert account != msg.sender, "LiquidationEngine: cannot liquidate yourself"
    assert market < staticcall clearinghouse.market_count(), "LiquidationEngine: unknown market"
    assert not self._is_bankrupt(account), "LiquidationEngine: account bankrupt"
    assert not self._is_bankrupt(msg.sender), "LiquidationEngine: liquidator bankrupt"
    position_size: int256 = (staticcall clearinghouse.positions(account, market)).size
    assert position_size != 0, "LiquidationEngine: no position"
    mark: uint256 = self._fresh_mark(market)

    before: IWaterfallClearinghouse.AccountHealth = staticcall clearinghouse.account_health(account)
    assert before.value >= 0, "LiquidationEngine: account bankrupt"
    assert before.value < convert(before.maintenance_margin, int256), "LiquidationEngine: account healthy"

    taken: uint256 = min(size, convert(abs(position_size), uint256))
    assert taken > 0, "LiquidationEngine: zero size"
    account_delta: int256 = -convert(taken, int256) if position_size > 0 else convert(taken, int256)
    extcall ISingleTransfer(clearinghouse.address).transfer_positions(
        account, market, mark, [IWaterfallClearinghouse.PositionTransfer(counterparty=msg.sender, size=-account_delta, payment=0)]
    )

    after: IWaterfallClearinghouse.AccountHealth = staticcall clearinghouse.account_health(account)
    # Fees come out of what the account has left, discount first: a liquidation never bankrupts.
    # Floor on both: they move balance between accounts, never out of the pool.
    available: uint256 = convert(max(after.value, 0), uint256)
    taken_notional: uint256 = margin_math.notional(account_delta, mark)
    discount: uint256 = min(taken_notional * self.liquidation_discount // fixed_point.WAD, available)
    penalty: uint256 = min(taken_notional * self.liquidation_penalty // fixed_point.WAD, available - discount)
    if discount > 0:
        extcall clearinghouse.transfer_balance(account, msg.sender, discount)
    if penalty > 0:
        extcall clearinghouse.transfer_balance(account, staticcall clearinghouse.insurance_account(), penalty)
    value_after: int256 = after.value - convert(discount + penalty, int256)

    # A position taken over in full always passes: below (discount + penalty) / maintenance fraction
    # of its margin no partial take-over can raise an account's margin ratio, and such an account
    # must still be liquidatable market by market.
    if taken < convert(abs(position_size), uint256):
        assert value_after * convert(before.maintenance_margin, int256) > before.value * convert(after.maintenance_margin, int256), "LiquidationEngine: partial liquidation must leave the account healthier"
    liquidator: IWaterfallClearinghouse.AccountHealth = staticcall clearinghouse.fresh_account_health(msg.sender)
    assert liquidator.value >= convert(liquidator.initial_margin, int256), "LiquidationEngine: liquidator below initial margin"

    log Liquidation(account=account, liquidator=msg.sender, market=market, size=taken, price=mark, discount=discount, penalty=penalty)
    return taken


# ---------------------------------------------------------------- insurance vault

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
    vault: address = staticcall clearinghouse.insurance_account()
    assert account != vault, "LiquidationEngine: the vault cannot take itself over"
    flags: IWaterfallClearinghouse.AccountFlag = staticcall clearinghouse.account_flags(account)
    assert IWaterfallClearinghouse.AccountFlag.IN_ADL_ROUND not in flags, "LiquidationEngine: account in an ADL round"
    open_mask: uint256 = staticcall clearinghouse.open_markets(account)
    assert open_mask != 0, "LiquidationEngine: no position"
    health: IWaterfallClearinghouse.AccountHealth = staticcall clearinghouse.fresh_account_health(account)
    line: uint256 = health.maintenance_margin if keeper_roles.is_keeper[msg.sender] else health.maintenance_margin * self.backstop_ratio // fixed_point.WAD
    assert health.value < convert(line, int256), "LiquidationEngine: account above the backstop line"

    refusal: String[48] = self._takeover_refusal(account, vault, health.value)
    if refusal != "":
        log TakeoverRefused(account=account, vault=vault, reason=refusal)
        if health.value < 0 and IWaterfallClearinghouse.AccountFlag.BANKRUPT not in flags:
            extcall clearinghouse.set_account_flags(account, flags | IWaterfallClearinghouse.AccountFlag.BANKRUPT)
            log BankruptcyFlagged(account=account, deficit=convert(-health.value, uint256))
        return False

    markets: uint256 = 0
    for market: uint256 in range(MAX_MARKETS):
        if open_mask & (1 << market) == 0:
            continue
        size: int256 = (staticcall clearinghouse.positions(account, market)).size
        extcall ISingleTransfer(clearinghouse.address).transfer_positions(
            account, market, self._fresh_mark(market), [IWaterfallClearinghouse.PositionTransfer(counterparty=vault, size=size, payment=0)]
        )
        markets += 1
    # Positions closed at the mark realise exactly their marked value, so the balance left is the
    # account's value: a buffer the vault keeps, or a deficit it pays.
    balance: int256 = staticcall pool.balance_of(account)
    if balance > 0:
        extcall clearinghouse.transfer_balance(account, vault, convert(balance, uint256))
    elif balance < 0:
        extcall clearinghouse.transfer_balance(vault, account, convert(-balance, uint256))
    extcall IInsuranceVault(vault).record_takeover(account, convert(max(-balance, 0), uint256))
    if IWaterfallClearinghouse.AccountFlag.BANKRUPT in flags:
        extcall clearinghouse.set_account_flags(account, flags & ~IWaterfallClearinghouse.AccountFlag.BANKRUPT)
    log Takeover(account=account, vault=vault, value=balance, markets=markets)
    return True


# ---------------------------------------------------------------- bankruptcy flags

@external
def flag_bankruptcy(account: address):
    """
    @notice Marks an account with negative value as bankrupt: it can no longer trade, withdraw or be
            liquidated through the market; the backstop and ADL layers resolve it.
    @dev Anyone may call. Uses the latest prices (no freshness needed to recognise a loss).
    @param account The account.
    """
    flags: IWaterfallClearinghouse.AccountFlag = staticcall clearinghouse.account_flags(account)
    assert IWaterfallClearinghouse.AccountFlag.BANKRUPT not in flags, "LiquidationEngine: already bankrupt"
    value: int256 = (staticcall clearinghouse.account_health(account)).value
    assert value < 0, "LiquidationEngine: account solvent"
    extcall clearinghouse.set_account_flags(account, flags | IWaterfallClearinghouse.AccountFlag.BANKRUPT)
    log BankruptcyFlagged(account=account, deficit=convert(-value, uint256))


@external
def clear_bankruptcy(account: address):
    """
    @notice Lifts the bankruptcy flag of an account whose value is no longer negative (prices
            recovered or it was topped up), so it can trade, withdraw and be liquidated again.
    @dev Anyone may call. Uses the latest prices, as `flag_bankruptcy` does.
    @param account The account.
    """
    flags: IWaterfallClearinghouse.AccountFlag = staticcall clearinghouse.account_flags(account)
    assert IWaterfallClearinghouse.AccountFlag.BANKRUPT in flags, "LiquidationEngine: not bankrupt"
    assert IWaterfallClearinghouse.AccountFlag.IN_ADL_ROUND not in flags, "LiquidationEngine: account in an ADL round"
    assert (staticcall clearinghouse.account_health(account)).value >= 0, "LiquidationEngine: account still in deficit"
    extcall clearinghouse.set_account_flags(account, flags & ~IWaterfallClearinghouse.AccountFlag.BANKRUPT)
    log BankruptcyCleared(account=account)


# ---------------------------------------------------------------- auctions

@external
def take(account: address, market: uint256, size: uint256, limit_price: uint256) -> uint256:
    """
    @notice Takes `size` of an auctioned position at the auction's current price: the mark moved
            in the taker's favour by the premium reached (`auction_price` tells it in advance).
            The taker must be at or above initial margin afterwards. In a volunteer auction the
            premium becomes part of the deficit the account's ADL round charges to the winners;
            in a vault unwind the vault's realised loss or gain reaches its share price by its
            own rules (a loss at once, a gain as it unlocks).
    @dev Anyone but the account itself, not bankrupt. Needs the market's fresh mark (a stale or
         paused oracle refuses). A take may not leave a remainder worth less than
         `auction_min_notional` at its price (all of a smaller remainder must go at once), nor
         make the vault's value negative. For a vault whose position shrank since the auction
         started, the size offered is what it still holds.
    @param account The account whose position is auctioned (bankrupt, or the vault).
    @param market The market.
    @param size Base units to take, at most what is offered.
    @param limit_price The most the taker pays per base unit (a long lot) or the least it receives
           (a short lot), as MakerDAO's `max`.
    @return The price of the take.
    """
    auction: Auction = self._running(account, market)
    # A running volunteer auction's account is in its round; a vault flagged bankrupt waits for its
    # own round, whose volunteer auction replaces its unwind.
    assert auction.volunteer or not self._is_bankrupt(account), "LiquidationEngine: account bankrupt"
    assert not self._is_bankrupt(msg.sender), "LiquidationEngine: taker bankrupt"
    assert size > 0, "LiquidationEngine: zero size"
    offered: uint256 = self._offered(auction.lot, (staticcall clearinghouse.positions(account, market)).size)
    assert size <= offered, "LiquidationEngine: take above the auction's size"
    mark: uint256 = self._fresh_mark(market)
    price: uint256 = self._auction_price(auction.lot, auction.start, mark)
    assert (price <= limit_price) if auction.lot > 0 else (price >= limit_price), "LiquidationEngine: price beyond the taker's limit"
    left: uint256 = offered - size
    assert left == 0 or margin_math.notional(convert(left, int256), price) >= self.auction_min_notional, "LiquidationEngine: take leaves less than the minimum"

    taken: int256 = convert(size, int256) if auction.lot > 0 else -convert(size, int256)
    extcall ISingleTransfer(clearinghouse.address).transfer_positions(
        account, market, price, [IWaterfallClearinghouse.PositionTransfer(counterparty=msg.sender, size=taken, payment=0)]
    )
    # The pnl of the size taken from its price to the mark: the taker's gain, never negative.
    # Floor: D grows by at most what the volunteer gained; the unit it may miss stays owed in the
    # bankrupt balance and is settled with the round's residual, so no unit leaves the pool.
    premium: uint256 = convert(margin_math.pnl(taken, price, mark), uint256)
    if auction.volunteer:
        self._volunteer_premiums[account][market] += premium
    else:
        assert (staticcall clearinghouse.account_health(account)).value >= 0, "LiquidationEngine: take would bankrupt the account"
    taker: IWaterfallClearinghouse.AccountHealth = staticcall clearinghouse.fresh_account_health(msg.sender)
    assert taker.value >= convert(taker.initial_margin, int256), "LiquidationEngine: taker below initial margin"

    auction.lot = auction.lot - taken if left > 0 else 0
    self._store(account, market, auction)
    log AuctionTaken(account=account, taker=msg.sender, market=market, size=size, price=price, premium=premium, remaining=left)
    if left == 0:
        log AuctionEnded(account=account, market=market)
    return price


@external
def start_volunteer_auctions(account: address, end: uint256):
    """
    @notice Opens the volunteer auction of every position a bankrupt account still holds when its
            ADL round opens (after the vault absorbed what it could): each ends at `end`, and
            until then the round force-closes nothing in a market with size left.
    @dev The ADL engine only, from `open_round`; it reads `volunteer_window` first. Overwrites an
         unwind auction of the vault's own position when the vault is the bankrupt account.
    @param account The bankrupt account.
    @param end When the auctions end (the round's deadline is `round_duration` later).
    """
    self._check_adl_engine()
    open_mask: uint256 = staticcall clearinghouse.open_markets(account)
    for market: uint256 in range(MAX_MARKETS):
        if open_mask & (1 << market) == 0:
            continue
        self._start(account, market, (staticcall clearinghouse.positions(account, market)).size, end, True)


@external
def settle_volunteer_premium(account: address, market: uint256) -> uint256:
    """
    @notice Hands the premiums volunteers earned in `account`'s auction in `market` since the last
            call to the ADL engine, which adds them to the deficit its round charges the winners.
    @dev The ADL engine only, when it acts in the market (a take does not call it: that keeps a
         take within 200,000 gas).
    @param account The bankrupt account.
    @param market The market.
    @return The premiums (collateral units).
    """
    self._check_adl_engine()
    premium: uint256 = self._volunteer_premium(account, market)
    self._volunteer_premiums[account][market] = 1
    return premium


@external
def start_unwind(market: uint256, size: uint256, controller: address) -> uint256:
    """
    @notice Auctions (part of) the insurance vault's position in a market. A keeper may offer any
            part of it at any time; anyone else may offer what `unwind_need` allows: the part
            above the vault's position limit, the part whose notional puts it above its leverage
            limit, or, for a `controller` whose claimable redemption the vault's margin cannot pay,
            about the part that frees the margin the claim needs.
    @dev One auction per position: refused while one runs (a keeper may `cancel_unwind` it).
         Needs fresh prices in every market the vault holds. Refused while the vault is flagged.
    @param market The market.
    @param size Base units to offer; a non-keeper's offer is cut to `unwind_need`.
    @param controller A controller with a claimable request the vault cannot pay, or empty.
    @return The base units offered.
    """
    vault: address = staticcall clearinghouse.insurance_account()
    assert not self._is_bankrupt(vault), "LiquidationEngine: vault flagged bankrupt"
    held: int256 = (staticcall clearinghouse.positions(vault, market)).size
    assert held != 0, "LiquidationEngine: no position"
    current: Auction = self._auction(vault, market)
    assert current.lot == 0 or block.timestamp >= current.end, "LiquidationEngine: auction already running"
    assert size > 0, "LiquidationEngine: zero size"
    offered: uint256 = min(size, convert(abs(held), uint256))
    if not keeper_roles.is_keeper[msg.sender]:
        need: uint256 = self._unwind_need(vault, market, held, controller)
        assert need > 0, "LiquidationEngine: vault within its targets"
        offered = min(offered, need)
    self._start(vault, market, convert(offered, int256) if held > 0 else -convert(offered, int256), block.timestamp + self.auction_duration, False)
    return offered


@external
def cancel_unwind(market: uint256):
    """
    @notice Ends the vault's unwind auction in a market before its time (the vault is back within
            its targets, or a dust auction someone started is in the way of a larger one).
    @dev Keeper only. A volunteer auction belongs to an ADL round and cannot be cancelled.
    @param market The market.
    """
    keeper_roles._check_keeper()
    vault: address = staticcall clearinghouse.insurance_account()
    auction: Auction = self._running(vault, market)
    assert not auction.volunteer, "LiquidationEngine: a volunteer auction cannot be cancelled"
    log AuctionCancelled(account=vault, market=market, remaining=convert(abs(auction.lot), uint256))
    auction.lot = 0
    self._store(vault, market, auction)


@external
@view
def auction_price(account: address, market: uint256) -> uint256:
    """
    @notice The price a take of `account`'s auction in `market` gets now: what it pays per base
            unit of a long lot, or receives per base unit of a short lot. With `auctions` (the
            lot, its end) and the position still held, all a taker needs to size its take.
    @dev Reverts as a take would: no auction running, auction ended, stale or paused price.
    @param account The auctioned account.
    @param market The market.
    @return Price (1e18).
    """
    auction: Auction = self._running(account, market)
    return self._auction_price(auction.lot, auction.start, self._fresh_mark(market))


@external
@view
def auctions(account: address, market: uint256) -> Auction:
    """
    @notice `account`'s auction in `market`: the lot still offered (signed as the position; 0 when
            none runs), its start and end, and whether it is a volunteer auction.
    @param account The auctioned account.
    @param market The market.
    @return lot, start, end, volunteer (all zero when none ever ran).
    """
    return self._auction(account, market)


@external
@view
def volunteer_premium(account: address, market: uint256) -> uint256:
    """
    @notice The premiums volunteers earned in `account`'s auction in `market` that its ADL round
            has not yet added to its deficit (AdlRanking.market_round includes them).
    @param account The bankrupt account.
    @param market The market.
    @return Collateral units.
    """
    return self._volunteer_premium(account, market)


@external
@view
def volunteer_window() -> uint256:
    """
    @notice Seconds the volunteer auction of an ADL round opened now would last: 0 when the
            volunteer step is off. The ADL engine adds it to the round's deadline.
    @return Seconds.
    """
    return self.auction_duration if self.volunteer_auctions else 0


# ---------------------------------------------------------------- internals

@internal
@view
def _takeover_refusal(account: address, vault: address, account_value: int256) -> String[48]:
    """
    @dev The first of the vault's limits that taking `account` over would break, or "" if none:
         its loss allowance, its largest position per market, its leverage afterwards.
    """
    if self._is_bankrupt(vault):
        return "vault flagged bankrupt"
    if account_value < 0 and convert(-account_value, uint256) > staticcall IInsuranceVault(vault).loss_allowance():
        return "loss above the vault's allowance"
    equity_after: int256 = (staticcall clearinghouse.fresh_account_health(vault)).value + account_value
    if equity_after <= 0:
        return "vault equity exhausted"
    notional_after: uint256 = 0
    both_mask: uint256 = staticcall clearinghouse.open_markets(account) | staticcall clearinghouse.open_markets(vault)
    for market: uint256 in range(MAX_MARKETS):
        if both_mask & (1 << market) == 0:
            continue
        mark_price: uint256 = self._fresh_mark(market)
        vault_size: int256 = (staticcall clearinghouse.positions(vault, market)).size
        size_after: int256 = vault_size + (staticcall clearinghouse.positions(account, market)).size
        if abs(size_after) > abs(vault_size) and convert(abs(size_after), uint256) > staticcall IInsuranceVault(vault).max_position(market):
            return "position above the vault's limit"
        # Ceiling: the limit check counts the larger notional.
        notional_after += fixed_point.ceil_div(convert(abs(size_after), uint256) * mark_price, fixed_point.NOTIONAL_SCALE)
    if notional_after * fixed_point.WAD > staticcall IInsuranceVault(vault).max_leverage() * convert(equity_after, uint256):
        return "leverage above the vault's limit"
    return ""


@internal
def _start(account: address, market: uint256, lot: int256, end: uint256, volunteer: bool):
    self._store(account, market, Auction(lot=lot, start=block.timestamp, end=end, volunteer=volunteer))
    if volunteer:
        self._volunteer_premiums[account][market] = 1
    log AuctionStarted(account=account, market=market, size=lot, mark=self._fresh_mark(market), end=end, volunteer=volunteer)


@internal
@view
def _auction(account: address, market: uint256) -> Auction:
    word: uint256 = self._auctions[account][market]
    lot: int256 = convert(word >> 128, int256)
    if lot >= 2**127:
        lot -= 2**128
    return Auction(lot=lot, start=(word >> 1) & (2**63 - 1), end=(word >> 64) & (2**64 - 1), volunteer=word & 1 == 1)


@internal
def _store(account: address, market: uint256, auction: Auction):
    # |lot| < 2**127: positions are bounded so (Clearinghouse: position out of range).
    lot: uint256 = convert(auction.lot, uint256) if auction.lot >= 0 else convert(auction.lot + 2**128, uint256)
    self._auctions[account][market] = lot << 128 | auction.end << 64 | auction.start << 1 | convert(auction.volunteer, uint256)


@internal
@view
def _check_adl_engine():
    assert msg.sender == staticcall clearinghouse.adl_engine(), "LiquidationEngine: caller is not the ADL engine"


@internal
@view
def _volunteer_premium(account: address, market: uint256) -> uint256:
    return max(self._volunteer_premiums[account][market], 1) - 1


@internal
@view
def _running(account: address, market: uint256) -> Auction:
    """
    @dev `account`'s auction in `market`, which must be running: started, not sold out or
         cancelled, before its end.
    """
    auction: Auction = self._auction(account, market)
    assert auction.lot != 0, "LiquidationEngine: no auction running"
    assert block.timestamp < auction.end, "LiquidationEngine: auction ended"
    return auction


@internal
@view
def _auction_price(lot: int256, start: uint256, mark: uint256) -> uint256:
    """
    @dev The mark moved in the taker's favour by the premium reached: `auction_premium` x elapsed
         / `auction_ramp`, at most `auction_premium`. Against the taker, so that the auctioned
         account gives up no more than the schedule: the premium floors, the price of a long lot
         (the taker buys) rounds up, of a short lot (the taker sells) down.
    """
    cap: uint256 = self.auction_premium
    premium: uint256 = min(cap * (block.timestamp - start) // self.auction_ramp, cap)
    if lot > 0:
        return fixed_point.ceil_div(mark * (fixed_point.WAD - premium), fixed_point.WAD)
    return mark * (fixed_point.WAD + premium) // fixed_point.WAD


@internal
@pure
def _offered(lot: int256, held: int256) -> uint256:
    """
    @dev What an auction of `lot` offers of a position of `held`: the lot, at most the position,
         nothing once the position is on the other side or flat.
    """
    if held == 0 or (held > 0) != (lot > 0):
        return 0
    return min(convert(abs(lot), uint256), convert(abs(held), uint256))


@internal
@view
def _unwind_need(vault: address, market: uint256, held: int256, controller: address) -> uint256:
    """
    @dev The part of the vault's position (`held`) in `market` anyone may auction: the largest of
         the part above its position limit, the base units whose notional at the mark is above
         its leverage limit (ceiling), and, for a claimable request of `controller` that the
         vault's margin cannot pay, the base units whose initial margin, less the premium cap,
         frees the shortfall (ceiling; an estimate at the vault's average margin fraction, which
         ignores price moves during the auction: a keeper or a later auction tops it up). At most
         the position.
    """
    held_abs: uint256 = convert(abs(held), uint256)
    need: uint256 = 0
    limit: uint256 = staticcall IInsuranceVault(vault).max_position(market)
    if held_abs > limit:
        need = held_abs - limit
    mark: uint256 = self._fresh_mark(market)
    health: IWaterfallClearinghouse.AccountHealth = staticcall clearinghouse.fresh_account_health(vault)
    gross: uint256 = 0
    open_mask: uint256 = staticcall clearinghouse.open_markets(vault)
    for other: uint256 in range(MAX_MARKETS):
        if open_mask & (1 << other) == 0:
            continue
        # Ceiling: the limit check counts the larger notional.
        gross += fixed_point.ceil_div(convert(abs((staticcall clearinghouse.positions(vault, other)).size), uint256) * self._fresh_mark(other), fixed_point.NOTIONAL_SCALE)
    allowed: uint256 = staticcall IInsuranceVault(vault).max_leverage() * convert(max(health.value, 0), uint256) // fixed_point.WAD
    if gross > allowed:
        need = max(need, fixed_point.ceil_div((gross - allowed) * fixed_point.NOTIONAL_SCALE, mark))
    if controller != empty(address):
        preview: ClaimPreview = staticcall IVaultClaims(vault).claim_preview(controller)
        # What the vault's margin lets it withdraw, as the clearinghouse's `withdrawable` counts
        # it without the ADL gate (selling cannot open a gate).
        headroom: int256 = max(min(staticcall pool.balance_of(vault), health.value - convert(health.initial_margin, int256)), 0)
        if preview.shares > 0 and block.timestamp >= preview.claimable_at and convert(preview.owed, int256) > headroom:
            # A unit sold frees its initial margin and costs at most the premium cap: at the
            # vault's average margin per unit of notional, the shortfall is freed even if every
            # take comes at the cap (ceiling); if the cap eats the margin, all of it.
            shortfall: uint256 = preview.owed - convert(headroom, uint256)
            premium_cost: uint256 = fixed_point.ceil_div(self.auction_premium * gross, fixed_point.WAD)
            if health.initial_margin > premium_cost:
                need = max(need, fixed_point.ceil_div(shortfall * gross * fixed_point.NOTIONAL_SCALE, (health.initial_margin - premium_cost) * mark))
            else:
                need = held_abs
    return min(need, held_abs)


@internal
@view
def _is_bankrupt(account: address) -> bool:
    return IWaterfallClearinghouse.AccountFlag.BANKRUPT in staticcall clearinghouse.account_flags(account)


@internal
@view
def _fresh_mark(market: uint256) -> uint256:
    index_price: uint256 = 0
    mark_price: uint256 = 0
    index_price, mark_price = staticcall oracle.fresh_prices(market)
    return mark_price


@internal
def _set_liquidation_params(discount: uint256, penalty: uint256):
    assert discount + penalty < fixed_point.WAD, "LiquidationEngine: liquidation fees of 100% or more"
    self.liquidation_discount = discount
    self.liquidation_penalty = penalty
    log UpdateLiquidationParams(discount=discount, penalty=penalty)


@internal
def _set_auction_params(premium: uint256, ramp: uint256, duration: uint256, min_notional: uint256, volunteers: bool):
    assert premium > 0 and premium <= MAX_AUCTION_PREMIUM and ramp >= MIN_AUCTION_RAMP and ramp <= duration and duration <= MAX_AUCTION_DURATION and min_notional <= MAX_AUCTION_MIN_NOTIONAL, "LiquidationEngine: auction params out of range"
    self.auction_premium = premium
    self.auction_ramp = ramp
    self.auction_duration = duration
    self.auction_min_notional = min_notional
    self.volunteer_auctions = volunteers
    log UpdateAuctionParams(premium=premium, ramp=ramp, duration=duration, min_notional=min_notional, volunteers=volunteers)


@internal
def _set_backstop_ratio(ratio: uint256):
    assert ratio <= fixed_point.WAD, "LiquidationEngine: backstop ratio above 100%"
    self.backstop_ratio = ratio
    log UpdateBackstopRatio(backstop_ratio=ratio)
