# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title Oracle
@notice Index and mark price per market, pushed by keepers. Moves are limited per time, against
        reference prices: within one block a price moves by at most `max_block_move` from the
        price the block started with, however many updates the block holds; within a window of
        `move_window` seconds, by at most `max_window_move` from the price the window started
        with. A read for anything that opens or grows risk fails once the price is older than
        `staleness`; the owner can pause a market. Before the prices of a market the
        clearinghouse lists change, the clearinghouse accrues its funding at the prices that held
        until then.
@dev Prices are 1e18 fixed point, quote per base unit, at most MAX_PRICE. A market's first prices
     are set by the owner (`initialize_feed`); keepers can only move an initialised feed.
"""

from snekmate.auth import ownable
from interfaces import IFundingClearinghouse
from modules import fixed_point
from modules import keeper_roles

initializes: ownable
initializes: keeper_roles[ownable := ownable]

exports: (
    ownable.owner,
    ownable.transfer_ownership,
    keeper_roles.is_keeper,
    keeper_roles.set_keeper,
)


# ---------------------------------------------------------------- events

event PriceUpdate:
    market: indexed(uint256)
    index_price: uint256
    mark_price: uint256
    timestamp: uint256

event UpdateMarketPaused:
    market: indexed(uint256)
    paused: bool

event UpdateMaxBlockMove:
    max_block_move: uint256

event UpdateMoveWindow:
    move_window: uint256
    max_window_move: uint256

event UpdateStaleness:
    staleness: uint256

event UpdateClearinghouse:
    clearinghouse: address


# ---------------------------------------------------------------- structs

struct PriceFeed:
    index_price: uint256
    mark_price: uint256
    updated_at: uint256
    paused: bool

struct ReferencePrices:
    index_price: uint256
    mark_price: uint256
    # the block number (block reference) or the timestamp (window reference) they are the reference from
    since: uint256

struct PriceUpdateInput:
    market: uint256
    index_price: uint256
    mark_price: uint256


# ---------------------------------------------------------------- constants

# @dev Largest batch of updates in one `push_prices` call.
MAX_PRICE_UPDATES: constant(uint256) = 32
# @dev Largest price accepted: the clearinghouse keeps entry prices in 128 bits, and every product
#      in the move checks (a price times 1e18) stays far below 2**256.
MAX_PRICE: public(constant(uint256)) = 2**128 - 1
# @dev Longest move window: a longer one would hold a feed to one reference price longer than a day.
MAX_MOVE_WINDOW: public(constant(uint256)) = 86400


# ---------------------------------------------------------------- storage

# @dev Latest prices and status per market id.
feeds: public(HashMap[uint256, PriceFeed])
# @dev Per market, the prices block `since` started with (the last stored in an earlier block).
block_reference: public(HashMap[uint256, ReferencePrices])
# @dev Per market, the prices the current move window started with; it opened at `since`.
window_reference: public(HashMap[uint256, ReferencePrices])
# @dev Largest relative move within one block from the block's reference prices, 1e18 = 100%.
max_block_move: public(uint256)
# @dev Length of a move window in seconds.
move_window: public(uint256)
# @dev Largest relative move within one window from the window's reference prices, 1e18 = 100%.
max_window_move: public(uint256)
# @dev Age in seconds after which a price may not be used to open or grow risk.
staleness: public(uint256)
# @dev The clearinghouse that accrues funding before a listed market's prices change; empty: none.
clearinghouse: public(IFundingClearinghouse)


# ---------------------------------------------------------------- constructor

@deploy
def __init__(max_block_move: uint256, move_window: uint256, max_window_move: uint256, staleness: uint256):
    """
    @notice Deploys the oracle; the deployer becomes owner.
    @param max_block_move Largest relative move within one block (1e18 = 100%).
    @param move_window Length of a move window, seconds.
    @param max_window_move Largest relative move within one window (1e18 = 100%).
    @param staleness Seconds after which a price counts as stale.
    """
    ownable.__init__()
    self._set_max_block_move(max_block_move)
    self._set_move_window(move_window, max_window_move)
    self._set_staleness(staleness)


# ---------------------------------------------------------------- owner

@external
def initialize_feed(market: uint256, index_price: uint256, mark_price: uint256):
    """
    @notice Sets a market's first prices; no move limit applies to them.
    @dev Owner only; once per market. No funding accrues: no position can exist before a feed.
    @param market The market id.
    @param index_price The first index price (1e18), positive, at most MAX_PRICE.
    @param mark_price The first mark price (1e18), positive, at most MAX_PRICE.
    """
    ownable._check_owner()
    assert self.feeds[market].updated_at == 0, "Oracle: feed already initialised"
    self._check_prices(index_price, mark_price)
    self._store(market, index_price, mark_price)


@external
def set_paused(market: uint256, paused: bool):
    """
    @notice Pauses or resumes a market: no fresh read succeeds while it is paused.
    @dev Owner only.
    @param market The market id.
    @param paused True to pause, False to resume.
    """
    ownable._check_owner()
    assert self.feeds[market].updated_at != 0, "Oracle: unknown market"
    self.feeds[market].paused = paused
    log UpdateMarketPaused(market=market, paused=paused)


@external
def set_max_block_move(max_block_move: uint256):
    """
    @notice Sets the largest relative move within one block.
    @dev Owner only.
    @param max_block_move 1e18 = 100%; must be positive and below 100%.
    """
    ownable._check_owner()
    self._set_max_block_move(max_block_move)


@external
def set_move_window(move_window: uint256, max_window_move: uint256):
    """
    @notice Sets the move window's length and the largest relative move within one window.
    @dev Owner only. The windows open now keep their reference prices and end at their new length.
    @param move_window Seconds, between 1 and MAX_MOVE_WINDOW.
    @param max_window_move 1e18 = 100%; must be positive and below 100%.
    """
    ownable._check_owner()
    self._set_move_window(move_window, max_window_move)


@external
def set_staleness(staleness: uint256):
    """
    @notice Sets the age after which a price counts as stale.
    @dev Owner only.
    @param staleness Seconds, positive.
    """
    ownable._check_owner()
    self._set_staleness(staleness)


@external
def set_clearinghouse(new_clearinghouse: IFundingClearinghouse):
    """
    @notice Sets the clearinghouse whose funding accrues before each price update of a market it
            lists; empty to stop (a price update must never wait on a clearinghouse that fails).
    @dev Owner only.
    @param new_clearinghouse The clearinghouse, or empty(address).
    """
    ownable._check_owner()
    self.clearinghouse = new_clearinghouse
    log UpdateClearinghouse(clearinghouse=new_clearinghouse.address)


# ---------------------------------------------------------------- keepers

@external
def set_prices(market: uint256, index_price: uint256, mark_price: uint256):
    """
    @notice Pushes new index and mark prices for one market.
    @dev Keeper only. Reverts on a zero price, a price above MAX_PRICE, or a move above the
         block's or the window's limit. Accrues the market's funding first.
    @param market The market id.
    @param index_price The new index price (1e18).
    @param mark_price The new mark price (1e18).
    """
    keeper_roles._check_keeper()
    self._update(market, index_price, mark_price)


@external
def push_prices(updates: DynArray[PriceUpdateInput, MAX_PRICE_UPDATES]):
    """
    @notice Pushes new prices for several markets in one transaction; all or nothing.
    @dev Keeper only; the same checks as `set_prices` for each update. Updates of one market in
         one call are in one block: all are measured against the block's reference prices.
    @param updates One entry per market.
    """
    keeper_roles._check_keeper()
    for update: PriceUpdateInput in updates:
        self._update(update.market, update.index_price, update.mark_price)


# ---------------------------------------------------------------- views

@external
@view
def fresh_prices(market: uint256) -> (uint256, uint256):
    """
    @notice Index and mark price for an action that opens or grows risk.
    @dev Reverts if the market is unknown, paused or its prices are stale.
    @param market The market id.
    @return The index price and the mark price (1e18).
    """
    feed: PriceFeed = self.feeds[market]
    assert feed.updated_at != 0, "Oracle: unknown market"
    assert not feed.paused, "Oracle: market paused"
    assert block.timestamp <= feed.updated_at + self.staleness, "Oracle: stale price"
    return feed.index_price, feed.mark_price


@external
@view
@reentrant
def latest_prices(market: uint256) -> (uint256, uint256):
    """
    @notice Index and mark price without freshness checks, for marking to market and funding.
    @dev Reverts only if the market is unknown. Reentrant: the clearinghouse reads it while an
         update accrues funding, and gets the prices from before the update.
    @param market The market id.
    @return The index price and the mark price (1e18).
    """
    feed: PriceFeed = self.feeds[market]
    assert feed.updated_at != 0, "Oracle: unknown market"
    return feed.index_price, feed.mark_price


# ---------------------------------------------------------------- internals

@internal
def _update(market: uint256, index_price: uint256, mark_price: uint256):
    feed: PriceFeed = self.feeds[market]
    assert feed.updated_at != 0, "Oracle: unknown market"
    self._check_prices(index_price, mark_price)
    block_start: ReferencePrices = self.block_reference[market]
    if block_start.since != block.number:
        # This block's first update: the prices stored in an earlier block are its reference.
        block_start = ReferencePrices(index_price=feed.index_price, mark_price=feed.mark_price, since=block.number)
        self.block_reference[market] = block_start
    window_start: ReferencePrices = self.window_reference[market]
    if block.timestamp - window_start.since >= self.move_window:
        # The window has ended: the next one opens now, from the prices stored before this update.
        window_start = ReferencePrices(index_price=feed.index_price, mark_price=feed.mark_price, since=block.timestamp)
        self.window_reference[market] = window_start
    max_move: uint256 = self.max_block_move
    assert self._within_move(block_start.index_price, index_price, max_move), "Oracle: index move above block limit"
    assert self._within_move(block_start.mark_price, mark_price, max_move), "Oracle: mark move above block limit"
    max_move = self.max_window_move
    assert self._within_move(window_start.index_price, index_price, max_move), "Oracle: index move above window limit"
    assert self._within_move(window_start.mark_price, mark_price, max_move), "Oracle: mark move above window limit"
    self._accrue_funding(market)
    self._store(market, index_price, mark_price)


@internal
def _accrue_funding(market: uint256):
    """
    @dev Funding up to now accrues at the prices that held until now, before they change, so a
         premium is charged from the update that sets it on, never backwards. Skipped without a
         clearinghouse and for a market it has not listed (a feed may exist before its market).
         For a listed market it cannot fail: `accrue_funding` checks only the listing, reads
         `latest_prices` (no pause or staleness check) and its arithmetic is bounded by MAX_PRICE.
    """
    funding: IFundingClearinghouse = self.clearinghouse
    if funding.address == empty(address):
        return
    if market < staticcall funding.market_count():
        extcall funding.accrue_funding(market)


@internal
def _store(market: uint256, index_price: uint256, mark_price: uint256):
    self.feeds[market].index_price = index_price
    self.feeds[market].mark_price = mark_price
    self.feeds[market].updated_at = block.timestamp
    log PriceUpdate(market=market, index_price=index_price, mark_price=mark_price, timestamp=block.timestamp)


@internal
@pure
def _check_prices(index_price: uint256, mark_price: uint256):
    assert index_price > 0 and mark_price > 0, "Oracle: zero price"
    assert index_price <= MAX_PRICE and mark_price <= MAX_PRICE, "Oracle: price above maximum"


@internal
@pure
def _within_move(reference: uint256, price: uint256, max_move: uint256) -> bool:
    # reference, price <= MAX_PRICE and max_move < 1e18: both products stay below 2**188.
    move: uint256 = price - reference if price > reference else reference - price
    return move * fixed_point.WAD <= max_move * reference


@internal
def _set_max_block_move(max_block_move: uint256):
    assert max_block_move > 0 and max_block_move < fixed_point.WAD, "Oracle: max block move out of range"
    self.max_block_move = max_block_move
    log UpdateMaxBlockMove(max_block_move=max_block_move)


@internal
def _set_move_window(move_window: uint256, max_window_move: uint256):
    assert move_window > 0 and move_window <= MAX_MOVE_WINDOW, "Oracle: move window out of range"
    assert max_window_move > 0 and max_window_move < fixed_point.WAD, "Oracle: max window move out of range"
    self.move_window = move_window
    self.max_window_move = max_window_move
    log UpdateMoveWindow(move_window=move_window, max_window_move=max_window_move)


@internal
def _set_staleness(staleness: uint256):
    assert staleness > 0, "Oracle: zero staleness"
    self.staleness = staleness
    log UpdateStaleness(staleness=staleness)
