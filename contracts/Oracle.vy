# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title Oracle
@notice Index and mark price per market, pushed by keepers. A single update may move a price by at
        most `max_move`; a read for anything that opens or grows risk fails once the price is older
        than `staleness`; the owner can pause a market.
@dev Prices are 1e18 fixed point, quote per base unit. A market's first prices are set by the owner
     (`initialize_feed`); keepers can only move an initialised feed.
"""

from snekmate.auth import ownable
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

event UpdateMaxMove:
    max_move: uint256

event UpdateStaleness:
    staleness: uint256


# ---------------------------------------------------------------- structs

struct PriceFeed:
    index_price: uint256
    mark_price: uint256
    updated_at: uint256
    paused: bool

struct PriceUpdateInput:
    market: uint256
    index_price: uint256
    mark_price: uint256


# ---------------------------------------------------------------- constants

# @dev Largest batch of updates in one `push_prices` call.
MAX_PRICE_UPDATES: constant(uint256) = 32


# ---------------------------------------------------------------- storage

# @dev Latest prices and status per market id.
feeds: public(HashMap[uint256, PriceFeed])
# @dev Largest relative move of one update, 1e18 = 100%.
max_move: public(uint256)
# @dev Age in seconds after which a price may not be used to open or grow risk.
staleness: public(uint256)


# ---------------------------------------------------------------- constructor

@deploy
def __init__(max_move: uint256, staleness: uint256):
    """
    @notice Deploys the oracle; the deployer becomes owner.
    @param max_move Largest relative move of one update (1e18 = 100%).
    @param staleness Seconds after which a price counts as stale.
    """
    ownable.__init__()
    self._set_max_move(max_move)
    self._set_staleness(staleness)


# ---------------------------------------------------------------- owner

@external
def initialize_feed(market: uint256, index_price: uint256, mark_price: uint256):
    """
    @notice Sets a market's first prices; no move limit applies to them.
    @dev Owner only; once per market.
    @param market The market id.
    @param index_price The first index price (1e18).
    @param mark_price The first mark price (1e18).
    """
    ownable._check_owner()
    assert self.feeds[market].updated_at == 0, "Oracle: feed already initialised"
    assert index_price > 0 and mark_price > 0, "Oracle: zero price"
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
def set_max_move(max_move: uint256):
    """
    @notice Sets the largest relative move of one update.
    @dev Owner only.
    @param max_move 1e18 = 100%; must be positive and below 100%.
    """
    ownable._check_owner()
    self._set_max_move(max_move)


@external
def set_staleness(staleness: uint256):
    """
    @notice Sets the age after which a price counts as stale.
    @dev Owner only.
    @param staleness Seconds, positive.
    """
    ownable._check_owner()
    self._set_staleness(staleness)


# ---------------------------------------------------------------- keepers

@external
def set_prices(market: uint256, index_price: uint256, mark_price: uint256):
    """
    @notice Pushes new index and mark prices for one market.
    @dev Keeper only. Reverts on a zero price or a move above `max_move`.
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
    @dev Keeper only; the same checks as `set_prices` for each update.
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
def latest_prices(market: uint256) -> (uint256, uint256):
    """
    @notice Index and mark price without freshness checks, for marking to market and funding.
    @dev Reverts only if the market is unknown.
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
    assert index_price > 0 and mark_price > 0, "Oracle: zero price"
    assert self._within_move(feed.index_price, index_price), "Oracle: index move above limit"
    assert self._within_move(feed.mark_price, mark_price), "Oracle: mark move above limit"
    self._store(market, index_price, mark_price)


@internal
def _store(market: uint256, index_price: uint256, mark_price: uint256):
    self.feeds[market].index_price = index_price
    self.feeds[market].mark_price = mark_price
    self.feeds[market].updated_at = block.timestamp
    log PriceUpdate(market=market, index_price=index_price, mark_price=mark_price, timestamp=block.timestamp)


@internal
@view
def _within_move(old_price: uint256, new_price: uint256) -> bool:
    move: uint256 = new_price - old_price if new_price > old_price else old_price - new_price
    return move * fixed_point.WAD <= self.max_move * old_price


@internal
def _set_max_move(max_move: uint256):
    assert max_move > 0 and max_move < fixed_point.WAD, "Oracle: max move out of range"
    self.max_move = max_move
    log UpdateMaxMove(max_move=max_move)


@internal
def _set_staleness(staleness: uint256):
    assert staleness > 0, "Oracle: zero staleness"
    self.staleness = staleness
    log UpdateStaleness(staleness=staleness)
