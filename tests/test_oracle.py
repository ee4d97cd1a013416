"""Oracle: feed initialisation, keeper updates, the move limits per block and per window against
their reference prices, the price bound, staleness, pause, the owner's setters and the funding the
clearinghouse accrues before each update.

Defaults (backstop/chain/deployment.py): at most 3% within a block, 25% within a 60-second window.
Every transaction here is a block of its own; a test that needs a window's exact timing sets the
next block's timestamp (`chain.pending_timestamp`)."""

import ape
import pytest

from conftest import BTC, ETH, SOL, WAD

NEW_MARKET = 3  # a feed the clearinghouse has not listed
UNKNOWN_MARKET = 9
MAX_PRICE = 2**128 - 1
NOT_OWNER = "ownable: caller is not the owner"
NOT_KEEPER = "keeper_roles: caller is not a keeper"
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


def feed(oracle, market):
    """The stored feed as a plain tuple (index, mark, updated_at, paused)."""
    f = oracle.feeds(market)
    return (f.index_price, f.mark_price, f.updated_at, f.paused)


def references(oracle, market):
    """The block's and the window's reference prices, each (index, mark, since)."""
    return tuple(oracle.block_reference(market)), tuple(oracle.window_reference(market))


def oracle_state(oracle, market):
    """Everything an update of `market` may change."""
    return feed(oracle, market), references(oracle, market)


def limits(oracle):
    return oracle.max_block_move(), oracle.move_window(), oracle.max_window_move(), oracle.staleness(), oracle.clearinghouse()


def at_limit(price, max_move, up=True):
    """The furthest price within `max_move` of `price` (move * WAD <= max_move * price)."""
    move = max_move * price // WAD
    return price + move if up else price - move


def funding_logs(receipt, clearinghouse):
    return [(log.market, log.funding_index, log.timestamp) for log in receipt.decode_logs(clearinghouse.FundingAccrued)]


# ---------------------------------------------------------------- initialize_feed

def test_initialize_feed__owner_sets_first_prices(oracle, owner):
    receipt = oracle.initialize_feed(NEW_MARKET, 50 * WAD, 51 * WAD, sender=owner)
    assert oracle.latest_prices(NEW_MARKET) == (50 * WAD, 51 * WAD)
    assert oracle.fresh_prices(NEW_MARKET) == (50 * WAD, 51 * WAD)
    assert feed(oracle, NEW_MARKET) == (50 * WAD, 51 * WAD, receipt.timestamp, False)
    assert oracle.PriceUpdate(market=NEW_MARKET, index_price=50 * WAD, mark_price=51 * WAD, timestamp=receipt.timestamp) in receipt.events


def test_initialize_feed__no_move_limit_on_first_prices_up_to_max_price(oracle, owner):
    # the first prices may be anything from 1 to MAX_PRICE; the limits apply from the first keeper update on
    oracle.initialize_feed(NEW_MARKET, 1, MAX_PRICE, sender=owner)
    assert oracle.latest_prices(NEW_MARKET) == (1, MAX_PRICE)
    assert oracle.MAX_PRICE() == MAX_PRICE


def test_initialize_feed__price_above_maximum(oracle, owner):
    for index_price, mark_price in [(MAX_PRICE + 1, WAD), (WAD, MAX_PRICE + 1), (2**256 - 1, 2**256 - 1)]:
        with ape.reverts("Oracle: price above maximum"):
            oracle.initialize_feed(NEW_MARKET, index_price, mark_price, sender=owner)
    assert feed(oracle, NEW_MARKET) == (0, 0, 0, False)


def test_initialize_feed__not_owner(oracle, keeper, stranger):
    for sender in (keeper, stranger):
        with ape.reverts(NOT_OWNER):
            oracle.initialize_feed(NEW_MARKET, WAD, WAD, sender=sender)
    assert feed(oracle, NEW_MARKET) == (0, 0, 0, False)


def test_initialize_feed__only_once(oracle, owner):
    before = feed(oracle, BTC)
    with ape.reverts("Oracle: feed already initialised"):
        oracle.initialize_feed(BTC, 1 * WAD, 1 * WAD, sender=owner)
    assert feed(oracle, BTC) == before

    oracle.initialize_feed(NEW_MARKET, WAD, WAD, sender=owner)
    with ape.reverts("Oracle: feed already initialised"):
        oracle.initialize_feed(NEW_MARKET, 2 * WAD, 2 * WAD, sender=owner)
    assert oracle.latest_prices(NEW_MARKET) == (WAD, WAD)


def test_initialize_feed__zero_price(oracle, owner):
    for index_price, mark_price in [(0, WAD), (WAD, 0), (0, 0)]:
        with ape.reverts("Oracle: zero price"):
            oracle.initialize_feed(NEW_MARKET, index_price, mark_price, sender=owner)
    assert feed(oracle, NEW_MARKET) == (0, 0, 0, False)


# ---------------------------------------------------------------- set_prices / push_prices

def test_set_prices__keeper_updates_and_logs(oracle, keeper):
    receipt = oracle.set_prices(BTC, 101_000 * WAD, 100_500 * WAD, sender=keeper)
    assert oracle.latest_prices(BTC) == (101_000 * WAD, 100_500 * WAD)
    assert feed(oracle, BTC) == (101_000 * WAD, 100_500 * WAD, receipt.timestamp, False)
    logs = list(receipt.events.filter(oracle.PriceUpdate))
    assert len(logs) == 1
    assert logs[0].market == BTC
    assert logs[0].index_price == 101_000 * WAD
    assert logs[0].mark_price == 100_500 * WAD
    assert logs[0].timestamp == receipt.timestamp
    # other markets untouched
    assert oracle.latest_prices(ETH) == (4_000 * WAD, 4_000 * WAD)


def test_push_prices__keeper_updates_several_markets(oracle, keeper):
    updates = [(BTC, 102_000 * WAD, 102_500 * WAD), (ETH, 3_900 * WAD, 3_950 * WAD), (SOL, 195 * WAD, 196 * WAD)]
    receipt = oracle.push_prices(updates, sender=keeper)
    for market, index_price, mark_price in updates:
        assert oracle.latest_prices(market) == (index_price, mark_price)
        assert oracle.feeds(market).updated_at == receipt.timestamp
    logs = list(receipt.events.filter(oracle.PriceUpdate))
    assert [(log.market, log.index_price, log.mark_price, log.timestamp) for log in logs] == [
        (market, index_price, mark_price, receipt.timestamp) for market, index_price, mark_price in updates
    ]


def test_push_prices__all_or_nothing(oracle, keeper):
    before = [oracle_state(oracle, m) for m in (BTC, ETH)]
    with ape.reverts("Oracle: index move above block limit"):
        oracle.push_prices([(BTC, 101_000 * WAD, 101_000 * WAD), (ETH, 8_000 * WAD, 4_000 * WAD)], sender=keeper)
    assert [oracle_state(oracle, m) for m in (BTC, ETH)] == before


def test_push_prices__empty_batch(oracle, keeper):
    before = oracle_state(oracle, BTC)
    receipt = oracle.push_prices([], sender=keeper)
    assert list(receipt.events.filter(oracle.PriceUpdate)) == []
    assert oracle_state(oracle, BTC) == before


def test_set_prices__zero_price(oracle, keeper):
    before = oracle_state(oracle, BTC)
    for index_price, mark_price in [(0, 100_000 * WAD), (100_000 * WAD, 0), (0, 0)]:
        with ape.reverts("Oracle: zero price"):
            oracle.set_prices(BTC, index_price, mark_price, sender=keeper)
        with ape.reverts("Oracle: zero price"):
            oracle.push_prices([(BTC, index_price, mark_price)], sender=keeper)
    assert oracle_state(oracle, BTC) == before


def test_set_prices__unknown_market(oracle, keeper):
    with ape.reverts("Oracle: unknown market"):
        oracle.set_prices(UNKNOWN_MARKET, WAD, WAD, sender=keeper)
    with ape.reverts("Oracle: unknown market"):
        oracle.push_prices([(UNKNOWN_MARKET, WAD, WAD)], sender=keeper)
    assert oracle_state(oracle, UNKNOWN_MARKET) == ((0, 0, 0, False), ((0, 0, 0), (0, 0, 0)))


def test_set_prices__caller_not_keeper(oracle, owner, stranger, alice):
    before = oracle_state(oracle, BTC)
    for sender in (owner, stranger, alice):
        with ape.reverts(NOT_KEEPER):
            oracle.set_prices(BTC, 100_001 * WAD, 100_001 * WAD, sender=sender)
        with ape.reverts(NOT_KEEPER):
            oracle.push_prices([(BTC, 100_001 * WAD, 100_001 * WAD)], sender=sender)
    assert oracle_state(oracle, BTC) == before


# ---------------------------------------------------------------- the limit per block

def test_set_prices__block_move_exactly_at_limit(oracle, keeper):
    max_move = oracle.max_block_move()
    for up in (True, False, False, True):
        index_price, mark_price = oracle.latest_prices(BTC)
        new_index, new_mark = at_limit(index_price, max_move, up), at_limit(mark_price, max_move, up)
        oracle.set_prices(BTC, new_index, new_mark, sender=keeper)
        assert oracle.latest_prices(BTC) == (new_index, new_mark)


@pytest.mark.parametrize("moved", ["index", "mark"])
def test_set_prices__move_above_block_limit(oracle, keeper, moved):
    max_move = oracle.max_block_move()
    prices = dict(zip(("index", "mark"), oracle.latest_prices(BTC)))
    before = oracle_state(oracle, BTC)
    for up in (True, False):
        too_far = {**prices, moved: at_limit(prices[moved], max_move, up) + (1 if up else -1)}
        with ape.reverts(f"Oracle: {moved} move above block limit"):
            oracle.set_prices(BTC, too_far["index"], too_far["mark"], sender=keeper)
    assert oracle_state(oracle, BTC) == before


def test_push_prices__block_limit_counts_from_the_price_the_block_started_with(oracle, keeper, chain):
    """Three updates of BTC in one block: +2% then +3% of 100k pass (each measured against 100k,
    the price the block started with), +3% and one wei do not, however the block gets there."""
    before = oracle_state(oracle, BTC)
    with ape.reverts("Oracle: index move above block limit"):
        oracle.push_prices([(BTC, 102_000 * WAD, 102_000 * WAD), (BTC, 103_000 * WAD, 103_000 * WAD),
                            (BTC, 103_000 * WAD + 1, 103_000 * WAD)], sender=keeper)
    assert oracle_state(oracle, BTC) == before
    receipt = oracle.push_prices([(BTC, 102_000 * WAD, 102_000 * WAD), (BTC, 103_000 * WAD, 103_000 * WAD)], sender=keeper)
    assert oracle.latest_prices(BTC) == (103_000 * WAD, 103_000 * WAD)
    assert tuple(oracle.block_reference(BTC)) == (100_000 * WAD, 100_000 * WAD, receipt.block_number)
    # The next block starts from 103k: another 3% of it.
    receipt = oracle.set_prices(BTC, 106_090 * WAD, 106_090 * WAD, sender=keeper)
    assert tuple(oracle.block_reference(BTC)) == (103_000 * WAD, 103_000 * WAD, receipt.block_number)


def test_push_prices__down_and_back_up_within_a_block_is_measured_from_its_start(oracle, keeper):
    """-3% then back to +3% of the block's first price in one block: each update within 3% of
    100k passes, though the second moves 6.2% from the first."""
    oracle.push_prices([(BTC, 97_000 * WAD, 97_000 * WAD), (BTC, 103_000 * WAD, 103_000 * WAD)], sender=keeper)
    assert oracle.latest_prices(BTC) == (103_000 * WAD, 103_000 * WAD)


# ---------------------------------------------------------------- the limit per window

def test_set_prices__window_limit_counts_from_the_price_the_window_started_with(oracle, owner, keeper, chain):
    """Window 600 s and 5%: +3% in one block, +1.94% in the next (105k) pass; one wei more is 5%
    above the window's 100k; at the window's end 105k is the new reference."""
    oracle.set_move_window(600, 5 * WAD // 100, sender=owner)
    first = oracle.set_prices(BTC, 103_000 * WAD, 103_000 * WAD, sender=keeper)
    assert tuple(oracle.window_reference(BTC)) == (100_000 * WAD, 100_000 * WAD, first.timestamp)
    oracle.set_prices(BTC, 105_000 * WAD, 105_000 * WAD, sender=keeper)
    before = oracle_state(oracle, BTC)
    with ape.reverts("Oracle: index move above window limit"):
        oracle.set_prices(BTC, 105_000 * WAD + 1, 105_000 * WAD, sender=keeper)
    with ape.reverts("Oracle: mark move above window limit"):
        oracle.set_prices(BTC, 105_000 * WAD, 105_000 * WAD + 1, sender=keeper)
    assert oracle_state(oracle, BTC) == before
    # Down is limited alike: 95k passes in two blocks, one wei less does not.
    oracle.set_prices(BTC, 102_000 * WAD, 102_000 * WAD, sender=keeper)
    oracle.set_prices(BTC, 99_000 * WAD, 99_000 * WAD, sender=keeper)
    oracle.set_prices(BTC, 96_030 * WAD, 96_030 * WAD, sender=keeper)
    with ape.reverts("Oracle: index move above window limit"):
        oracle.set_prices(BTC, 95_000 * WAD - 1, 95_000 * WAD, sender=keeper)
    oracle.set_prices(BTC, 95_000 * WAD, 95_000 * WAD, sender=keeper)
    chain.pending_timestamp = first.timestamp + 600
    receipt = oracle.set_prices(BTC, 97_850 * WAD, 97_850 * WAD, sender=keeper)
    assert tuple(oracle.window_reference(BTC)) == (95_000 * WAD, 95_000 * WAD, receipt.timestamp)


def test_set_prices__window_rolls_over_exactly_at_its_end(oracle, owner, keeper, chain):
    """A window opened at t ends at t + move_window: an update one second before is still
    measured against the window's first price; one at the end opens the next window from the
    latest price."""
    oracle.set_move_window(120, 4 * WAD // 100, sender=owner)
    first = oracle.set_prices(BTC, 103_000 * WAD, 103_000 * WAD, sender=keeper)
    opened = first.timestamp
    chain.pending_timestamp = opened + 118
    with ape.reverts("Oracle: index move above window limit"):
        oracle.set_prices(BTC, 104_000 * WAD + 1, 104_000 * WAD, sender=keeper)
    chain.pending_timestamp = opened + 119
    oracle.set_prices(BTC, 104_000 * WAD, 104_000 * WAD, sender=keeper)
    assert tuple(oracle.window_reference(BTC)) == (100_000 * WAD, 100_000 * WAD, opened)
    chain.pending_timestamp = opened + 120
    receipt = oracle.set_prices(BTC, 104_000 * WAD + 1, 104_000 * WAD, sender=keeper)
    assert tuple(oracle.window_reference(BTC)) == (104_000 * WAD, 104_000 * WAD, opened + 120) and receipt.timestamp == opened + 120


def test_set_prices__a_window_caps_many_blocks_at_the_block_limit(oracle, keeper, chain):
    """Defaults (3% a block, 25% a minute): nine blocks of -3% in one minute take BTC to 76k; the
    tenth, 3% lower again, would be 26.3% below the window's 100k and is refused."""
    start = chain.blocks.head.timestamp + 1
    price = 100_000 * WAD
    for block in range(9):
        price = at_limit(price, oracle.max_block_move(), up=False)
        chain.pending_timestamp = start + block
        oracle.set_prices(BTC, price, price, sender=keeper)
    assert 75_000 * WAD < price < 76_100 * WAD
    chain.pending_timestamp = start + 9
    lower = at_limit(price, oracle.max_block_move(), up=False)
    with ape.reverts("Oracle: index move above window limit"):
        oracle.set_prices(BTC, lower, lower, sender=keeper)
    assert tuple(oracle.window_reference(BTC)) == (100_000 * WAD, 100_000 * WAD, start)


# ---------------------------------------------------------------- the price bound: no overflow anywhere

def test_set_prices__price_above_maximum(oracle, owner, keeper):
    oracle.initialize_feed(NEW_MARKET, MAX_PRICE, MAX_PRICE, sender=owner)
    before = oracle_state(oracle, NEW_MARKET)
    for index_price, mark_price in [(MAX_PRICE + 1, MAX_PRICE), (MAX_PRICE, MAX_PRICE + 1), (2**256 - 1, 2**256 - 1)]:
        with ape.reverts("Oracle: price above maximum"):
            oracle.set_prices(NEW_MARKET, index_price, mark_price, sender=keeper)
    assert oracle_state(oracle, NEW_MARKET) == before


def test_set_prices__extremes_at_max_price_and_one_wei_never_overflow(oracle, owner, keeper):
    """With both limits just under 100% every product of the checks is at its largest (below
    2**188): a feed at MAX_PRICE falls as far as the limit allows in one update, and not one wei
    further; a feed at 1 wei cannot move at all, not even to MAX_PRICE (refused with its reason,
    never an arithmetic overflow)."""
    oracle.set_max_block_move(WAD - 1, sender=owner)
    oracle.set_move_window(60, WAD - 1, sender=owner)
    oracle.initialize_feed(NEW_MARKET, MAX_PRICE, MAX_PRICE, sender=owner)
    lowest = at_limit(MAX_PRICE, WAD - 1, up=False)
    with ape.reverts("Oracle: index move above block limit"):
        oracle.set_prices(NEW_MARKET, lowest - 1, lowest, sender=keeper)
    oracle.set_prices(NEW_MARKET, lowest, lowest, sender=keeper)
    assert oracle.latest_prices(NEW_MARKET) == (lowest, lowest)
    oracle.initialize_feed(NEW_MARKET + 1, 1, 1, sender=owner)
    for index_price, mark_price, which in [(MAX_PRICE, 1, "index"), (2, 1, "index"), (1, MAX_PRICE, "mark")]:
        with ape.reverts(f"Oracle: {which} move above block limit"):
            oracle.set_prices(NEW_MARKET + 1, index_price, mark_price, sender=keeper)
    oracle.set_prices(NEW_MARKET + 1, 1, 1, sender=keeper)


# ---------------------------------------------------------------- funding accrued before the prices change

def test_set_prices__accrues_funding_at_the_old_prices_before_the_change(oracle, clearinghouse, keeper, chain):
    """BTC has had no premium for an hour; the update that sets one accrues that hour first, at
    no premium (FundingAccrued before PriceUpdate, index unchanged), so the premium is charged
    from the update on: one second later the index has grown by one second of it."""
    chain.mine(deltatime=3600)
    index_before = clearinghouse.funding_index(BTC)
    receipt = oracle.set_prices(BTC, 100_000 * WAD, 101_000 * WAD, sender=keeper)
    assert funding_logs(receipt, clearinghouse) == [(BTC, index_before, receipt.timestamp)]
    names = [log.event_name for log in receipt.events]
    assert names.index("FundingAccrued") < names.index("PriceUpdate")
    assert clearinghouse.funding_updated_at(BTC) == receipt.timestamp
    chain.pending_timestamp = receipt.timestamp + 1
    accrued = clearinghouse.accrue_funding(BTC, sender=keeper)
    assert funding_logs(accrued, clearinghouse) == [(BTC, index_before + 1_000 * WAD // (8 * 3600), receipt.timestamp + 1)]


def test_push_prices__accrues_each_listed_market_once_per_block(oracle, clearinghouse, keeper, chain):
    chain.mine(deltatime=60)
    receipt = oracle.push_prices([(BTC, 100_500 * WAD, 100_500 * WAD), (ETH, 4_010 * WAD, 4_010 * WAD),
                                  (BTC, 101_000 * WAD, 101_000 * WAD)], sender=keeper)
    assert [log[0] for log in funding_logs(receipt, clearinghouse)] == [BTC, ETH]  # the second BTC update: accrued already


def test_set_prices__unlisted_market_updates_without_calling_the_clearinghouse(oracle, clearinghouse, owner, keeper):
    # The clearinghouse would refuse to accrue a market it has not listed ("Clearinghouse: unknown market").
    assert clearinghouse.market_count() == NEW_MARKET
    oracle.initialize_feed(NEW_MARKET, 50 * WAD, 50 * WAD, sender=owner)
    receipt = oracle.set_prices(NEW_MARKET, 51 * WAD, 51 * WAD, sender=keeper)
    assert funding_logs(receipt, clearinghouse) == [] and oracle.latest_prices(NEW_MARKET) == (51 * WAD, 51 * WAD)


def test_set_prices__paused_or_stale_market_still_takes_a_valid_update(oracle, clearinghouse, owner, keeper, chain):
    """The accrual reads the latest prices, which a pause or staleness does not block: the keeper's
    update goes through, accrual included, and after it the stale market is fresh again."""
    oracle.set_paused(BTC, True, sender=owner)
    chain.pending_timestamp += 12  # time passes, so the accrual has something to log
    receipt = oracle.set_prices(BTC, 99_000 * WAD, 99_000 * WAD, sender=keeper)
    assert [log[0] for log in funding_logs(receipt, clearinghouse)] == [BTC]
    chain.mine(deltatime=oracle.staleness() + 1)
    with ape.reverts("Oracle: stale price"):
        oracle.fresh_prices(ETH)
    receipt = oracle.set_prices(ETH, 3_900 * WAD, 3_900 * WAD, sender=keeper)
    assert [log[0] for log in funding_logs(receipt, clearinghouse)] == [ETH]
    assert oracle.fresh_prices(ETH) == (3_900 * WAD, 3_900 * WAD)


def test_set_prices__without_a_clearinghouse_no_funding_accrues(oracle, clearinghouse, owner, keeper):
    oracle.set_clearinghouse(ZERO_ADDRESS, sender=owner)
    receipt = oracle.set_prices(BTC, 101_000 * WAD, 101_000 * WAD, sender=keeper)
    assert funding_logs(receipt, clearinghouse) == []


# ---------------------------------------------------------------- views and staleness

def test_fresh_prices__unknown_market(oracle):
    with ape.reverts("Oracle: unknown market"):
        oracle.fresh_prices(UNKNOWN_MARKET)
    with ape.reverts("Oracle: unknown market"):
        oracle.latest_prices(UNKNOWN_MARKET)


def test_fresh_prices__stale_after_staleness(oracle, keeper, chain):
    receipt = oracle.set_prices(BTC, 100_100 * WAD, 100_200 * WAD, sender=keeper)
    updated_at = receipt.timestamp
    staleness = oracle.staleness()

    # still fresh at exactly updated_at + staleness
    chain.mine(timestamp=updated_at + staleness)
    assert chain.blocks.head.timestamp == updated_at + staleness
    assert oracle.fresh_prices(BTC) == (100_100 * WAD, 100_200 * WAD)

    # one second later it is stale, but latest_prices still answers
    chain.mine(timestamp=updated_at + staleness + 1)
    with ape.reverts("Oracle: stale price"):
        oracle.fresh_prices(BTC)
    assert oracle.latest_prices(BTC) == (100_100 * WAD, 100_200 * WAD)

    # a keeper update makes it fresh again
    oracle.set_prices(BTC, 100_000 * WAD, 100_000 * WAD, sender=keeper)
    assert oracle.fresh_prices(BTC) == (100_000 * WAD, 100_000 * WAD)


def test_fresh_prices__stale_when_keeper_stops(oracle, chain):
    chain.mine(deltatime=oracle.staleness() + 10)
    for market in (BTC, ETH, SOL):
        with ape.reverts("Oracle: stale price"):
            oracle.fresh_prices(market)
        oracle.latest_prices(market)


# ---------------------------------------------------------------- pause

def test_set_paused__owner_pauses_and_resumes(oracle, owner, keeper):
    receipt = oracle.set_paused(BTC, True, sender=owner)
    assert oracle.UpdateMarketPaused(market=BTC, paused=True) in receipt.events
    assert oracle.feeds(BTC).paused
    with ape.reverts("Oracle: market paused"):
        oracle.fresh_prices(BTC)
    # marking to market still works, other markets are not affected
    assert oracle.latest_prices(BTC) == (100_000 * WAD, 100_000 * WAD)
    assert oracle.fresh_prices(ETH) == (4_000 * WAD, 4_000 * WAD)
    # keepers keep the feed moving while it is paused
    oracle.set_prices(BTC, 99_000 * WAD, 99_000 * WAD, sender=keeper)
    with ape.reverts("Oracle: market paused"):
        oracle.fresh_prices(BTC)

    receipt = oracle.set_paused(BTC, False, sender=owner)
    assert oracle.UpdateMarketPaused(market=BTC, paused=False) in receipt.events
    assert not oracle.feeds(BTC).paused
    assert oracle.fresh_prices(BTC) == (99_000 * WAD, 99_000 * WAD)


def test_set_paused__not_owner(oracle, owner, keeper, stranger):
    oracle.set_paused(ETH, True, sender=owner)
    for sender in (keeper, stranger):
        with ape.reverts(NOT_OWNER):
            oracle.set_paused(BTC, True, sender=sender)
        with ape.reverts(NOT_OWNER):
            oracle.set_paused(ETH, False, sender=sender)
    assert not oracle.feeds(BTC).paused
    assert oracle.feeds(ETH).paused


def test_set_paused__unknown_market(oracle, owner):
    with ape.reverts("Oracle: unknown market"):
        oracle.set_paused(UNKNOWN_MARKET, True, sender=owner)
    assert feed(oracle, UNKNOWN_MARKET) == (0, 0, 0, False)


# ---------------------------------------------------------------- owner setters

def test_set_max_block_move__owner_updates_and_logs(oracle, owner, keeper):
    receipt = oracle.set_max_block_move(WAD // 100, sender=owner)
    assert oracle.max_block_move() == WAD // 100
    assert oracle.UpdateMaxBlockMove(max_block_move=WAD // 100) in receipt.events
    # the new limit applies: 1% passes, then 1% of 101k + 1 wei does not
    oracle.set_prices(BTC, 101_000 * WAD, 101_000 * WAD, sender=keeper)
    with ape.reverts("Oracle: index move above block limit"):
        oracle.set_prices(BTC, 102_010 * WAD + 1, 101_000 * WAD, sender=keeper)
    oracle.set_prices(BTC, 102_010 * WAD, 101_000 * WAD, sender=keeper)


def test_set_max_block_move__out_of_range(oracle, owner):
    before = limits(oracle)
    for max_move in (0, WAD, WAD + 1, 2**256 - 1):
        with ape.reverts("Oracle: max block move out of range"):
            oracle.set_max_block_move(max_move, sender=owner)
    assert limits(oracle) == before


def test_set_max_block_move__bounds_accepted(oracle, owner):
    for max_move in (1, WAD - 1):
        oracle.set_max_block_move(max_move, sender=owner)
        assert oracle.max_block_move() == max_move


def test_set_max_block_move__not_owner(oracle, keeper, stranger):
    before = limits(oracle)
    for sender in (keeper, stranger):
        with ape.reverts(NOT_OWNER):
            oracle.set_max_block_move(WAD // 2, sender=sender)
    assert limits(oracle) == before


def test_set_move_window__owner_updates_and_logs(oracle, owner, keeper):
    receipt = oracle.set_move_window(300, WAD // 10, sender=owner)
    assert (oracle.move_window(), oracle.max_window_move()) == (300, WAD // 10)
    assert oracle.UpdateMoveWindow(move_window=300, max_window_move=WAD // 10) in receipt.events
    for move_window, max_window_move in ((1, 1), (86_400, WAD - 1)):
        oracle.set_move_window(move_window, max_window_move, sender=owner)
        assert (oracle.move_window(), oracle.max_window_move()) == (move_window, max_window_move)
    assert oracle.MAX_MOVE_WINDOW() == 86_400


@pytest.mark.parametrize("move_window, max_window_move, reason", [
    (0, WAD // 4, "Oracle: move window out of range"),
    (86_401, WAD // 4, "Oracle: move window out of range"),
    (2**256 - 1, WAD // 4, "Oracle: move window out of range"),
    (60, 0, "Oracle: max window move out of range"),
    (60, WAD, "Oracle: max window move out of range"),
    (60, 2**256 - 1, "Oracle: max window move out of range"),
])
def test_set_move_window__out_of_range(oracle, owner, move_window, max_window_move, reason):
    before = limits(oracle)
    with ape.reverts(reason):
        oracle.set_move_window(move_window, max_window_move, sender=owner)
    assert limits(oracle) == before


def test_set_move_window__not_owner(oracle, keeper, stranger):
    before = limits(oracle)
    for sender in (keeper, stranger):
        with ape.reverts(NOT_OWNER):
            oracle.set_move_window(3_600, WAD // 2, sender=sender)
    assert limits(oracle) == before


def test_set_clearinghouse__owner_updates_and_logs(oracle, clearinghouse, owner):
    assert oracle.clearinghouse() == clearinghouse.address  # wired by the deployment
    receipt = oracle.set_clearinghouse(ZERO_ADDRESS, sender=owner)
    assert oracle.UpdateClearinghouse(clearinghouse=ZERO_ADDRESS) in receipt.events and oracle.clearinghouse() == ZERO_ADDRESS
    receipt = oracle.set_clearinghouse(clearinghouse, sender=owner)
    assert oracle.UpdateClearinghouse(clearinghouse=clearinghouse.address) in receipt.events
    assert oracle.clearinghouse() == clearinghouse.address


def test_set_clearinghouse__not_owner(oracle, keeper, stranger):
    before = limits(oracle)
    for sender in (keeper, stranger):
        with ape.reverts(NOT_OWNER):
            oracle.set_clearinghouse(ZERO_ADDRESS, sender=sender)
    assert limits(oracle) == before


def test_set_staleness__owner_updates_and_logs(oracle, owner, chain):
    receipt = oracle.set_staleness(60, sender=owner)
    assert oracle.staleness() == 60
    assert oracle.UpdateStaleness(staleness=60) in receipt.events
    updated_at = oracle.feeds(BTC).updated_at
    chain.mine(timestamp=max(updated_at + 61, chain.pending_timestamp))
    with ape.reverts("Oracle: stale price"):
        oracle.fresh_prices(BTC)


def test_set_staleness__zero(oracle, owner):
    before = limits(oracle)
    with ape.reverts("Oracle: zero staleness"):
        oracle.set_staleness(0, sender=owner)
    assert limits(oracle) == before


def test_set_staleness__not_owner(oracle, keeper, stranger):
    before = limits(oracle)
    for sender in (keeper, stranger):
        with ape.reverts(NOT_OWNER):
            oracle.set_staleness(1, sender=sender)
    assert limits(oracle) == before


def test_init__validates_parameters(project, owner):
    with ape.reverts("Oracle: max block move out of range"):
        owner.deploy(project.Oracle, 0, 60, WAD // 4, 3600)
    with ape.reverts("Oracle: move window out of range"):
        owner.deploy(project.Oracle, WAD // 100, 0, WAD // 4, 3600)
    with ape.reverts("Oracle: max window move out of range"):
        owner.deploy(project.Oracle, WAD // 100, 60, WAD, 3600)
    with ape.reverts("Oracle: zero staleness"):
        owner.deploy(project.Oracle, WAD // 100, 60, WAD // 4, 0)
    oracle = owner.deploy(project.Oracle, WAD // 100, 60, WAD // 4, 3600)
    assert limits(oracle) == (WAD // 100, 60, WAD // 4, 3600, ZERO_ADDRESS)


# ---------------------------------------------------------------- keepers

def test_set_keeper__owner_grants_and_revokes(oracle, owner, stranger):
    assert not oracle.is_keeper(stranger)
    receipt = oracle.set_keeper(stranger, True, sender=owner)
    assert oracle.UpdateKeeper(keeper=stranger, status=True) in receipt.events
    assert oracle.is_keeper(stranger)
    oracle.set_prices(BTC, 100_001 * WAD, 100_001 * WAD, sender=stranger)
    assert oracle.latest_prices(BTC) == (100_001 * WAD, 100_001 * WAD)

    receipt = oracle.set_keeper(stranger, False, sender=owner)
    assert oracle.UpdateKeeper(keeper=stranger, status=False) in receipt.events
    assert not oracle.is_keeper(stranger)
    with ape.reverts(NOT_KEEPER):
        oracle.set_prices(BTC, 100_002 * WAD, 100_002 * WAD, sender=stranger)


def test_set_keeper__not_owner(oracle, stranger, keeper):
    for sender in (keeper, stranger):
        with ape.reverts(NOT_OWNER):
            oracle.set_keeper(stranger, True, sender=sender)
        with ape.reverts(NOT_OWNER):
            oracle.set_keeper(keeper, False, sender=sender)
    assert not oracle.is_keeper(stranger)
    assert oracle.is_keeper(keeper)


def test_set_keeper__zero_address(oracle, owner):
    with ape.reverts("keeper_roles: zero address"):
        oracle.set_keeper("0x0000000000000000000000000000000000000000", True, sender=owner)
