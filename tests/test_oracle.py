"""Oracle: feed initialisation, keeper updates, move limit, staleness, pause and owner setters."""

import ape

from conftest import BTC, ETH, SOL, WAD

NEW_MARKET = 3
UNKNOWN_MARKET = 9
NOT_OWNER = "ownable: caller is not the owner"
NOT_KEEPER = "keeper_roles: caller is not a keeper"


def feed(oracle, market):
    """The stored feed as a plain tuple (index, mark, updated_at, paused)."""
    f = oracle.feeds(market)
    return (f.index_price, f.mark_price, f.updated_at, f.paused)


def at_limit(price, max_move, up=True):
    """The furthest price one update may reach from `price` (move * WAD <= max_move * price)."""
    move = max_move * price // WAD
    return price + move if up else price - move


# ---------------------------------------------------------------- initialize_feed

def test_initialize_feed__owner_sets_first_prices(oracle, owner):
    receipt = oracle.initialize_feed(NEW_MARKET, 50 * WAD, 51 * WAD, sender=owner)
    assert oracle.latest_prices(NEW_MARKET) == (50 * WAD, 51 * WAD)
    assert oracle.fresh_prices(NEW_MARKET) == (50 * WAD, 51 * WAD)
    assert feed(oracle, NEW_MARKET) == (50 * WAD, 51 * WAD, receipt.timestamp, False)
    assert oracle.PriceUpdate(market=NEW_MARKET, index_price=50 * WAD, mark_price=51 * WAD, timestamp=receipt.timestamp) in receipt.events


def test_initialize_feed__no_move_limit_on_first_prices(oracle, owner):
    # the first prices may be anything positive; the limit applies from the first keeper update on
    oracle.initialize_feed(NEW_MARKET, 1, 10**40, sender=owner)
    assert oracle.latest_prices(NEW_MARKET) == (1, 10**40)


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
    updates = [(BTC, 110_000 * WAD, 111_000 * WAD), (ETH, 3_900 * WAD, 3_950 * WAD), (SOL, 180 * WAD, 181 * WAD)]
    receipt = oracle.push_prices(updates, sender=keeper)
    for market, index_price, mark_price in updates:
        assert oracle.latest_prices(market) == (index_price, mark_price)
        assert oracle.feeds(market).updated_at == receipt.timestamp
    logs = list(receipt.events.filter(oracle.PriceUpdate))
    assert [(log.market, log.index_price, log.mark_price, log.timestamp) for log in logs] == [
        (market, index_price, mark_price, receipt.timestamp) for market, index_price, mark_price in updates
    ]


def test_push_prices__all_or_nothing(oracle, keeper):
    before = [feed(oracle, m) for m in (BTC, ETH)]
    with ape.reverts("Oracle: index move above limit"):
        oracle.push_prices([(BTC, 101_000 * WAD, 101_000 * WAD), (ETH, 8_000 * WAD, 4_000 * WAD)], sender=keeper)
    assert [feed(oracle, m) for m in (BTC, ETH)] == before


def test_push_prices__empty_batch(oracle, keeper):
    before = feed(oracle, BTC)
    receipt = oracle.push_prices([], sender=keeper)
    assert list(receipt.events.filter(oracle.PriceUpdate)) == []
    assert feed(oracle, BTC) == before


def test_set_prices__move_exactly_at_limit(oracle, keeper):
    max_move = oracle.max_move()
    for up in (True, False, False, True):
        index_price, mark_price = oracle.latest_prices(BTC)
        new_index, new_mark = at_limit(index_price, max_move, up), at_limit(mark_price, max_move, up)
        oracle.set_prices(BTC, new_index, new_mark, sender=keeper)
        assert oracle.latest_prices(BTC) == (new_index, new_mark)


def test_set_prices__index_move_above_limit(oracle, keeper):
    max_move = oracle.max_move()
    index_price, mark_price = oracle.latest_prices(BTC)
    before = feed(oracle, BTC)
    for up in (True, False):
        too_far = at_limit(index_price, max_move, up) + (1 if up else -1)
        with ape.reverts("Oracle: index move above limit"):
            oracle.set_prices(BTC, too_far, mark_price, sender=keeper)
    assert feed(oracle, BTC) == before


def test_set_prices__mark_move_above_limit(oracle, keeper):
    max_move = oracle.max_move()
    index_price, mark_price = oracle.latest_prices(BTC)
    before = feed(oracle, BTC)
    for up in (True, False):
        too_far = at_limit(mark_price, max_move, up) + (1 if up else -1)
        with ape.reverts("Oracle: mark move above limit"):
            oracle.set_prices(BTC, index_price, too_far, sender=keeper)
    assert feed(oracle, BTC) == before


def test_push_prices__move_above_limit(oracle, keeper):
    index_price, mark_price = oracle.latest_prices(ETH)
    before = feed(oracle, ETH)
    with ape.reverts("Oracle: mark move above limit"):
        oracle.push_prices([(ETH, index_price, mark_price * 2)], sender=keeper)
    assert feed(oracle, ETH) == before


def test_set_prices__limit_is_relative_to_last_update(oracle, keeper):
    # two updates at the limit compound: a 20% move, then another 20% from the new price
    oracle.set_prices(BTC, 120_000 * WAD, 120_000 * WAD, sender=keeper)
    oracle.set_prices(BTC, 144_000 * WAD, 144_000 * WAD, sender=keeper)
    assert oracle.latest_prices(BTC) == (144_000 * WAD, 144_000 * WAD)


def test_set_prices__zero_price(oracle, keeper):
    before = feed(oracle, BTC)
    for index_price, mark_price in [(0, 100_000 * WAD), (100_000 * WAD, 0), (0, 0)]:
        with ape.reverts("Oracle: zero price"):
            oracle.set_prices(BTC, index_price, mark_price, sender=keeper)
        with ape.reverts("Oracle: zero price"):
            oracle.push_prices([(BTC, index_price, mark_price)], sender=keeper)
    assert feed(oracle, BTC) == before


def test_set_prices__unknown_market(oracle, keeper):
    with ape.reverts("Oracle: unknown market"):
        oracle.set_prices(UNKNOWN_MARKET, WAD, WAD, sender=keeper)
    with ape.reverts("Oracle: unknown market"):
        oracle.push_prices([(UNKNOWN_MARKET, WAD, WAD)], sender=keeper)
    assert feed(oracle, UNKNOWN_MARKET) == (0, 0, 0, False)


def test_set_prices__caller_not_keeper(oracle, owner, stranger, alice):
    before = feed(oracle, BTC)
    for sender in (owner, stranger, alice):
        with ape.reverts(NOT_KEEPER):
            oracle.set_prices(BTC, 100_001 * WAD, 100_001 * WAD, sender=sender)
        with ape.reverts(NOT_KEEPER):
            oracle.push_prices([(BTC, 100_001 * WAD, 100_001 * WAD)], sender=sender)
    assert feed(oracle, BTC) == before


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


# ---------------------------------------------------------------- set_max_move / set_staleness

def test_set_max_move__owner_updates_and_logs(oracle, owner, keeper):
    receipt = oracle.set_max_move(WAD // 100, sender=owner)
    assert oracle.max_move() == WAD // 100
    assert oracle.UpdateMaxMove(max_move=WAD // 100) in receipt.events
    # the new limit applies: 1% passes, 1% + 1 wei does not
    oracle.set_prices(BTC, 101_000 * WAD, 101_000 * WAD, sender=keeper)
    with ape.reverts("Oracle: index move above limit"):
        oracle.set_prices(BTC, 102_010 * WAD + 1, 101_000 * WAD, sender=keeper)


def test_set_max_move__out_of_range(oracle, owner):
    before = oracle.max_move()
    for max_move in (0, WAD, WAD + 1, 2**256 - 1):
        with ape.reverts("Oracle: max move out of range"):
            oracle.set_max_move(max_move, sender=owner)
    assert oracle.max_move() == before


def test_set_max_move__bounds_accepted(oracle, owner):
    for max_move in (1, WAD - 1):
        oracle.set_max_move(max_move, sender=owner)
        assert oracle.max_move() == max_move


def test_set_max_move__not_owner(oracle, keeper, stranger):
    before = oracle.max_move()
    for sender in (keeper, stranger):
        with ape.reverts(NOT_OWNER):
            oracle.set_max_move(WAD // 2, sender=sender)
    assert oracle.max_move() == before


def test_set_staleness__owner_updates_and_logs(oracle, owner, chain):
    receipt = oracle.set_staleness(60, sender=owner)
    assert oracle.staleness() == 60
    assert oracle.UpdateStaleness(staleness=60) in receipt.events
    updated_at = oracle.feeds(BTC).updated_at
    chain.mine(timestamp=max(updated_at + 61, chain.pending_timestamp))
    with ape.reverts("Oracle: stale price"):
        oracle.fresh_prices(BTC)


def test_set_staleness__zero(oracle, owner):
    before = oracle.staleness()
    with ape.reverts("Oracle: zero staleness"):
        oracle.set_staleness(0, sender=owner)
    assert oracle.staleness() == before


def test_set_staleness__not_owner(oracle, keeper, stranger):
    before = oracle.staleness()
    for sender in (keeper, stranger):
        with ape.reverts(NOT_OWNER):
            oracle.set_staleness(1, sender=sender)
    assert oracle.staleness() == before


def test_init__validates_parameters(project, owner):
    with ape.reverts("Oracle: max move out of range"):
        owner.deploy(project.Oracle, 0, 3600)
    with ape.reverts("Oracle: zero staleness"):
        owner.deploy(project.Oracle, WAD // 5, 0)


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
