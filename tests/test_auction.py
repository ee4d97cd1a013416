"""Descending-price auctions (issue 15): the volunteer step before forced ADL, and the vault's unwind,
on the contracts (contracts/LiquidationEngine.vy, contracts/AdlEngine.vy) against the reference
model (backstop/model/liquidation.py, backstop/model/adl.py).

Every story runs through `AuctionMirror`, an `AdlMirror` (tests/test_adl.py) that also drives the
auctions: after each action chain and model agree on every balance, position, flag, vault counter,
ADL round and auction (`LiquidationEngine.auctions`, the auction parameters), and each transaction's
auction events (AuctionStarted, AuctionTaken, AuctionEnded, AuctionCancelled) are exactly the ones
the model predicts, as are its ADL events.

The auction (defaults): a position is offered at the fresh mark; its price moves in the taker's
favour by 5% x elapsed / 600 s, at most 5%, for 900 s; no partial take may leave less than $100.

The volunteer book is test_adl.py's common book: alice long 1 BTC at 100k on 12k (0.5 from bob,
0.5 from carol), erin short 0.6 BTC at 90k to dave, BTC at 86k: alice is worth -2,000 and the empty
vault refuses her, so D = 2,000 and the shorts are the winners.
"""

from __future__ import annotations

import pytest

from backstop.model.liquidation import (
    AUCTION_DURATION, AUCTION_MIN_NOTIONAL, AUCTION_PREMIUM, AUCTION_RAMP, MAX_AUCTION_DURATION, MAX_AUCTION_MIN_NOTIONAL,
    MAX_AUCTION_PREMIUM,
)
from backstop.model.adl import PRO_RATA, Declaration
from backstop.model.protocol import ZERO_ADDRESS, notional
from conftest import BTC, ETH, WAD
from test_adl import (  # noqa: F401  (fixtures are found by name in this module)
    BELOW_MARGIN, EXTRAS, K, KEEPER_ONLY, OWNER_ONLY, AdlMirror, _address, balance, btc, common_book, protocol_invariants,
    refuse_and_flag, size, usd, value,
)
from test_insurance_vault import BTC_PRICE, dave, erin, fast, open_long, take_over_alice  # noqa: F401

MAX_UINT = 2**256 - 1
NO_AUCTION = "LiquidationEngine: no auction running"
ENDED = "LiquidationEngine: auction ended"
ABOVE_SIZE = "LiquidationEngine: take above the auction's size"
BEYOND_LIMIT = "LiquidationEngine: price beyond the taker's limit"
DUST = "LiquidationEngine: take leaves less than the minimum"
TAKER_MARGIN = "LiquidationEngine: taker below initial margin"
TAKER_BANKRUPT = "LiquidationEngine: taker bankrupt"
RUNNING = "LiquidationEngine: auction already running"
WITHIN_TARGETS = "LiquidationEngine: vault within its targets"
OUT_OF_RANGE = "LiquidationEngine: auction params out of range"
ROUND_WAITS = "AdlEngine: volunteer auction running"
AUCTION_EVENTS = ("AuctionStarted", "AuctionTaken", "AuctionEnded", "AuctionCancelled")


# ---------------------------------------------------------------- the mirror with auctions

class AuctionMirror(AdlMirror):
    """`AdlMirror` plus the LiquidationEngine's auctions: takes, unwinds and cancels on both sides,
    the auctions and their parameters compared after every action, every auction event checked."""

    # ------------------------------------------------------------ owner

    def set_auction_params(self, premium=AUCTION_PREMIUM, ramp=AUCTION_RAMP, duration=AUCTION_DURATION,
                           min_notional=AUCTION_MIN_NOTIONAL, volunteers=True):
        tx = self.send(self.owner, self.c.liquidation.set_auction_params.call(premium, ramp, duration, min_notional, volunteers))
        self.model.liquidation.set_auction_params(premium, ramp, duration, min_notional, volunteers)
        event = tx.one("UpdateAuctionParams")
        assert (event.premium, event.ramp, event.duration, event.min_notional, event.volunteers) == (
            premium, ramp, duration, min_notional, volunteers
        )
        self.compare()
        return tx

    # ------------------------------------------------------------ rounds (auction events checked too)

    def open_round(self, account):
        before = len(self.model.liquidation.auction_events)
        tx = super().open_round(account)
        self._check_auction_events(tx, before)
        return tx

    def execute(self, account, market, winners, declaration=Declaration()):
        tx = super().execute(account, market, winners, declaration)
        self._check_auction_events(tx, len(self.model.liquidation.auction_events))
        return tx

    def finish_round(self, account, sender):
        tx = super().finish_round(account, sender)
        self._check_auction_events(tx, len(self.model.liquidation.auction_events))
        return tx

    # ------------------------------------------------------------ auctions

    def take(self, taker, account, market, amount, limit=None, at=None):
        """`taker` takes `amount` of `account`'s auction in `market` (at timestamp `at` if given);
        returns (tx, price)."""
        address = _address(account)
        if limit is None:
            limit = MAX_UINT if self.model.liquidation.auction(address, market).lot > 0 else 0
        if at is not None:
            self.fast.request("evm_setNextBlockTimestamp", [at])
        before, adl_before = len(self.model.liquidation.auction_events), self._marks()
        volunteer_before = len(self.adl_model.volunteer_takes)
        tx = self.send(taker, self.c.liquidation.take.call(address, market, amount, limit))
        price = self.model.liquidation.take(taker.address, address, market, amount, limit, tx.timestamp)
        self._check_auction_events(tx, before)
        self._check_events(tx, address, adl_before)
        # A take does not call the ADL engine: the round settles volunteers' takes when it next acts.
        assert not tx.all("AdlVolunteerTakes", self.engine_address) and len(self.adl_model.volunteer_takes) == volunteer_before
        assert tx.one("AuctionTaken").price == price
        self.compare()
        return tx, price

    def start_unwind(self, caller, market, amount, controller=ZERO_ADDRESS):
        """`caller` offers `amount` of the vault's position in `market`; returns (tx, size offered)."""
        before = len(self.model.liquidation.auction_events)
        tx = self.send(caller, self.c.liquidation.start_unwind.call(market, amount, _address(controller)))
        offered = self.model.liquidation.start_unwind(
            caller.address == self.keeper.address, market, amount, _address(controller), tx.timestamp
        )
        self._check_auction_events(tx, before)
        self.compare()
        return tx, offered

    def cancel_unwind(self, market):
        before = len(self.model.liquidation.auction_events)
        tx = self.send(self.keeper, self.c.liquidation.cancel_unwind.call(market))
        self.model.liquidation.cancel_unwind(market, tx.timestamp)
        self._check_auction_events(tx, before)
        self.compare()
        return tx

    def price_now(self, account, market):
        """The `auction_price` view, equal to the model's."""
        price = self.read(self.c.liquidation.auction_price.call(_address(account), market))
        assert price == self.model.liquidation.auction_price(_address(account), market, self.now())
        return price

    def mine_at(self, timestamp):
        self.fast.mine_at(timestamp)
        self.compare()

    def take_call(self, account, market, amount, limit=MAX_UINT):
        return self.c.liquidation.take.call(_address(account), market, amount, limit)

    def model_take(self, taker, account, market, amount, limit=MAX_UINT):
        return lambda now: self.model.liquidation.take(_address(taker), _address(account), market, amount, limit, now)

    def _check_auction_events(self, tx, before):
        """The auction events of `tx` are exactly the model's since `before`."""
        at = self.c.liquidation.address
        got = [
            (e.event, *[v for k, v in vars(e).items() if k not in ("event", "address")])
            for e in tx.events if e.event in AUCTION_EVENTS and e.address.lower() == at.lower()
        ]
        assert got == self.model.liquidation.auction_events[before:]

    # ------------------------------------------------------------ the comparison

    def compare(self):
        super().compare()
        if getattr(self, "adl_model", None) is None:
            return
        engine, liq = self.model.liquidation, self.c.liquidation
        people = [person.address for person in self.people if not hasattr(person, "private_key")]
        calls = [liq.auction_premium.call(), liq.auction_ramp.call(), liq.auction_duration.call(), liq.auction_min_notional.call()]
        calls += [liq.volunteer_auctions.call()]
        calls += [liq.auctions.call(a, m) for a in people for m in self.markets]
        calls += [liq.volunteer_premium.call(a, m) for a in people for m in self.markets]
        calls += [self.c.adl_ranking.market_round.call(a, m) for a in people for m in self.markets]
        got = iter(self.read(*calls))
        assert [next(got) for _ in range(5)] == [
            engine.auction_premium, engine.auction_ramp, engine.auction_duration, engine.auction_min_notional, engine.volunteer_auctions
        ], "auction params"
        for account in people:
            for market in self.markets:
                assert next(got) == tuple(vars(engine.auction(account, market)).values()), f"auction of {account} in {market}"
        for account in people:
            for market in self.markets:
                assert next(got) == engine.volunteer_premium(account, market), f"volunteer premium of {account} in {market}"
        for account in people:
            for market in self.markets:
                settled = self.adl_model.settled_market_round(account, market)
                assert next(got) == tuple(vars(settled).values()), f"market round of {account} in {market} as execute sees it"


@pytest.fixture
def mirror(chain, fast, protocol, config, owner, keeper, signer, fund, expiry, alice, bob, carol, dave, erin, liquidator, stranger):
    return AuctionMirror(
        chain, fast, protocol, config, owner, keeper, signer, fund, expiry,
        [alice, bob, carol, dave, erin, liquidator, stranger, protocol.vault, *EXTRAS],
    )


@pytest.fixture
def volunteer_round(mirror, alice, bob, carol, dave, erin, liquidator, stranger):
    """The volunteer step on, the common book, alice refused and flagged, her round opened: her
    1 BTC long is auctioned for 900 s from the round's opening, at 86k falling 5% over 600 s. A
    volunteer (the liquidator) has 20k."""
    mirror.set_auction_params()
    common_book(mirror, alice, bob, carol, dave, erin, stranger)
    mirror.fund(liquidator, usd(20 * K))
    refuse_and_flag(mirror, alice, stranger)
    mirror.open_round(alice)
    return mirror


def opened_at(mirror, account):
    """When `account`'s auction (in BTC) started."""
    return mirror.model.liquidation.auction(_address(account), BTC).start


def price_after(mark, seconds, long_lot=True, premium=AUCTION_PREMIUM, ramp=AUCTION_RAMP):
    """The auction price `seconds` after the start, written out from the schedule (not the model)."""
    reached = min(premium * seconds // ramp, premium)
    return -(-mark * (WAD - reached) // WAD) if long_lot else mark * (WAD + reached) // WAD


# ---------------------------------------------------------------- the volunteer step

def test_open_round__with_volunteers_auctions_the_positions_and_moves_the_deadline(volunteer_round, alice, bob, carol, dave):
    mirror = volunteer_round
    start = opened_at(mirror, alice)
    auction = mirror.model.liquidation.auction(alice.address, BTC)
    assert (auction.lot, auction.end, auction.volunteer) == (WAD, start + AUCTION_DURATION, True)
    started = mirror.model.liquidation.auction_events[-1]
    assert started == ("AuctionStarted", alice.address, BTC, WAD, 86 * K * WAD, start + AUCTION_DURATION, True)
    # The round's own hour follows the auction: the fallback is 900 + 3,600 s away.
    state = mirror.adl_model.round(alice.address)
    assert (state.deficit, state.auction_end, state.deadline) == (usd(2 * K), start + 900, start + 900 + 3600)
    # Nothing is force-closed while volunteers may still take the position.
    plan = mirror.plan(alice, BTC)[0]
    call = mirror.engine_call("execute", alice.address, BTC, plan.winners, plan.declaration.as_tuple())
    mirror.reverts(ROUND_WAITS, mirror.keeper, call, lambda now: mirror.adl_model.execute(alice.address, BTC, plan.winners, plan.declaration, now))
    # The scoped gate is the round's, no wider: the shorts wait, the longs withdraw.
    assert mirror.model.withdrawable(bob.address, mirror.now()) == 0
    assert mirror.model.withdrawable(carol.address, mirror.now()) == 0
    assert mirror.model.withdrawable(dave.address, mirror.now()) > 0


def test_take__volunteer_premium_joins_the_deficit_the_winners_pay(volunteer_round, alice, bob, carol, erin, liquidator):
    mirror = volunteer_round
    start = opened_at(mirror, alice)
    # Halfway up the ramp (300 s) the premium is 2.5%: 86k x 0.975 = 83,850 per BTC.
    tx, price = mirror.take(liquidator, alice, BTC, btc("0.4"), at=start + 300)
    assert price == 83_850 * WAD == price_after(86 * K * WAD, 300)
    taken = tx.one("AuctionTaken")
    assert (taken.taker, taken.size, taken.premium, taken.remaining) == (liquidator.address, btc("0.4"), usd(860), btc("0.6"))
    # The volunteer holds 0.4 long bought 2,150 below the mark: 860 up at once.
    assert (size(mirror, liquidator), value(mirror, liquidator)) == (btc("0.4"), usd(20 * K) + usd(860))
    # The take does not touch the round: its premium waits in the LiquidationEngine, and the round
    # as the next execute sees it (AdlRanking.market_round) has it in its deficit, 0.6 to offset.
    stored, settled = mirror.adl_model.market_round(alice.address, BTC), mirror.adl_model.settled_market_round(alice.address, BTC)
    assert (mirror.adl_model.round(alice.address).deficit, stored.deficit_left, stored.size_left) == (usd(2_000), usd(2_000), btc("1"))
    assert mirror.read(mirror.c.liquidation.volunteer_premium.call(alice.address, BTC)) == usd(860)
    assert (settled.deficit_left, settled.deficit_share, settled.size_left) == (usd(2_860), usd(2_000), btc("0.6"))

    mirror.wait_past(start + AUCTION_DURATION - 1)
    [batch] = mirror.plan(alice, BTC)
    tx = mirror.execute(alice, BTC, batch.winners)
    # The execute settles the take first: the premium joins D.
    settle = tx.one("AdlVolunteerTakes")
    assert (settle.account, settle.market, settle.size, settle.premium, settle.size_left, settle.deficit) == (
        alice.address, BTC, btc("0.4"), usd(860), btc("0.6"), usd(2_860)
    )
    # The queue closes bob's 0.5 and 0.1 of erin's at the round's price, 86k; each closed BTC
    # carries 2,860 / 0.6 of the deficit: the winners pay the volunteer's premium.
    hits = [(e.winner, e.size_closed, e.price, e.haircut) for e in tx.all("AdlHit")]
    assert hits == [(bob.address, btc("0.5"), 86 * K * WAD, 2_383_333_333), (erin.address, btc("0.1"), 86 * K * WAD, 476_666_667)]
    closed = tx.one("AdlRoundClosed")
    assert (closed.deficit, closed.haircuts, closed.notional_closed, closed.residual, closed.socialised) == (
        usd(2_860), usd(2_860), usd(51_600), 0, 0
    )
    # alice: 12k - 0.4 x 16,150 - 0.6 x 14k + 2,860 = 0. carol, last in the queue, is untouched.
    assert (size(mirror, alice), balance(mirror, alice)) == (0, 0)
    assert (size(mirror, carol), value(mirror, carol)) == (-btc("0.5"), usd(27 * K))


def test_take__volunteers_take_it_all_and_the_winners_pay_without_a_close(volunteer_round, alice, bob, carol, erin, liquidator):
    mirror = volunteer_round
    start = opened_at(mirror, alice)
    # At the cap (600 s and after) the premium is 5%: 81,700 per BTC.
    tx, price = mirror.take(liquidator, alice, BTC, btc("0.5"), at=start + 600)
    assert price == 81_700 * WAD and tx.one("AuctionTaken").premium == usd(2_150)
    # bob, a winner first in the queue, volunteers too: buying 0.5 closes his short at 81,700,
    # 2,150 better than at the mark, and takes him out of the line.
    tx, price = mirror.take(bob, alice, BTC, btc("0.5"), at=start + 700)
    assert price == 81_700 * WAD and tx.one("AuctionTaken").premium == usd(2_150)
    assert tx.one("AuctionEnded").account == alice.address
    assert (size(mirror, bob), value(mirror, bob)) == (0, usd(8 * K) + usd(9_150))
    assert mirror.model.liquidation.auction(alice.address, BTC).lot == 0
    # Sold out: the round may charge before the auction's end, and only charges.
    assert mirror.adl_model.settled_market_round(alice.address, BTC).deficit_left == usd(2 * K + 2_150 + 2_150)
    [batch] = mirror.plan(alice, BTC)
    assert batch.winners == [erin.address, carol.address]
    tx = mirror.execute(alice, BTC, batch.winners)
    # erin, now first, pays all her profit at the round's price (2,400), carol the rest; nobody
    # is force-closed.
    hits = [(e.winner, e.size_closed, e.haircut) for e in tx.all("AdlHit")]
    assert hits == [(erin.address, 0, usd(2_400)), (carol.address, 0, usd(3_900))]
    closed = tx.one("AdlRoundClosed")
    assert (closed.deficit, closed.haircuts, closed.notional_closed, closed.residual) == (usd(6_300), usd(6_300), 0, 0)
    assert (size(mirror, carol), size(mirror, erin)) == (-btc("0.5"), -btc("0.6"))
    assert (size(mirror, alice), balance(mirror, alice)) == (0, 0)


def test_open_round__pro_rata_vault_absorbs_first_then_volunteers_bid_for_the_rest(mirror, alice, bob, carol, dave, erin, liquidator, stranger):
    # test_adl.py's pro-rata story: the vault (dave's 50k) may hold 1/3 BTC and refuses alice's
    # 2,000 loss; under pro-rata it absorbs 1/3 at the mark first (which costs nobody anything),
    # and only the rest is auctioned.
    mirror.set_auction_params()
    common_book(mirror, alice, bob, carol, dave, erin, stranger)
    mirror.deposit(dave, usd(50 * K))
    mirror.set_risk_limits(5 * WAD, usd(1_000), usd(5_000 * K))
    mirror.set_max_position(BTC, WAD // 3)
    refuse_and_flag(mirror, alice, stranger)
    mirror.set_policy(BTC, PRO_RATA)
    mirror.fund(liquidator, usd(20 * K))
    tx = mirror.open_round(alice)
    assert tx.one("VaultAbsorption").size == WAD // 3
    started = tx.one("AuctionStarted")
    assert (started.size, started.volunteer) == (WAD - WAD // 3, True)
    start = started.end - AUCTION_DURATION
    mirror.take(liquidator, alice, BTC, WAD - WAD // 3, at=start + 60)
    # 0.5% after a minute: the premium on 2/3 BTC, and the winners pay it pro rata to profit.
    [batch] = mirror.plan(alice, BTC)
    tx = mirror.execute(alice, BTC, batch.winners, batch.declaration)
    deficit = mirror.adl_model.closed_rounds[-1].deficit
    assert deficit == usd(2 * K) + notional(WAD - WAD // 3, 86 * K * WAD - price_after(86 * K * WAD, 60))
    hits = [(e.winner, e.size_closed, e.haircut) for e in tx.all("AdlHit")]
    assert [w for w, *_ in hits] == [bob.address, carol.address, erin.address] and all(closed == 0 for _, closed, _ in hits)
    assert sum(h for *_, h in hits) == deficit
    assert (size(mirror, alice), balance(mirror, alice)) == (0, 0)


def test_take__price_follows_the_fresh_mark_and_the_move_is_settled_at_the_close(volunteer_round, alice, bob, erin, liquidator):
    mirror = volunteer_round
    start = opened_at(mirror, alice)
    mirror.fast.request("evm_setNextBlockTimestamp", [start + 299])
    mirror.set_prices(BTC, 84 * K * WAD, 84 * K * WAD)  # the crash goes on during the auction
    tx, price = mirror.take(liquidator, alice, BTC, btc("0.4"), at=start + 300)
    # 2.5% below the mark now, not the round's price: ceil(84k x 0.975) = 81,900.
    assert price == 81_900 * WAD and tx.one("AuctionTaken").premium == usd(840)
    assert mirror.adl_model.settled_market_round(alice.address, BTC).deficit_left == usd(2_840)  # the premium only
    mirror.wait_past(start + AUCTION_DURATION - 1)
    mirror.refresh()
    [batch] = mirror.plan(alice, BTC)
    tx = mirror.execute(alice, BTC, batch.winners)
    closed = tx.one("AdlRoundClosed")
    # The 0.4 sold at 84k rather than 86k left alice 800 short after the haircuts: spread over the
    # shorts by the loss index when the round closes, like funding while it runs.
    assert (closed.deficit, closed.haircuts, closed.residual, closed.socialised) == (usd(2_840), usd(2_840), 0, usd(800))
    assert (size(mirror, alice), balance(mirror, alice)) == (0, 0)


def test_finish_round__deadline_holds_with_an_auction_nobody_takes(volunteer_round, alice, bob, carol, stranger):
    mirror = volunteer_round
    start = opened_at(mirror, alice)
    deadline = mirror.adl_model.round(alice.address).deadline
    assert deadline == start + AUCTION_DURATION + 3600
    mirror.wait_past(start + AUCTION_DURATION)
    mirror.reverts(ENDED, stranger, mirror.take_call(alice, BTC, WAD), mirror.model_take(stranger, alice, BTC, WAD))
    mirror.mine_at(deadline - 30)
    finish = mirror.engine_call("finish_round", alice.address)
    mirror.reverts("AdlEngine: round before its deadline", stranger, finish, lambda now: mirror.adl_model.finish_round(alice.address, now))
    mirror.wait_past(deadline)
    tx = mirror.finish_round(alice, stranger)
    # The fallback ends it as without volunteers: the vault takes the 1 BTC at the mark, the
    # deficit is spread over the shorts, and the shorts withdraw again.
    assert tx.one("VaultAbsorption").size == WAD and tx.one("AdlRoundClosed").fallback
    assert (size(mirror, alice), balance(mirror, alice)) == (0, 0)
    mirror.refresh()
    assert mirror.model.withdrawable(bob.address, mirror.now()) > 0 and not mirror.model.in_adl_round.get(alice.address)


def test_take__costs_at_most_200k_gas(volunteer_round, alice, dave, liquidator):
    mirror = volunteer_round
    start = opened_at(mirror, alice)

    def gas_of_take(taker, amount, at):
        mirror.take(taker, alice, BTC, amount, at=at)
        return int(mirror.fast.last_receipt["gasUsed"], 16)

    first = gas_of_take(liquidator, btc("0.3"), start + 300)  # its first position: fresh slots
    again = gas_of_take(liquidator, btc("0.3"), start + 400)
    adding = gas_of_take(dave, btc("0.2"), start + 500)  # dave is long already
    sells_out = gas_of_take(dave, btc("0.2"), start + 600)
    print(f"\nauction take gas: first position {first:,}, adding {again:,} and {adding:,}, selling out {sells_out:,}")
    assert max(first, again, adding, sells_out) <= 200_000


# ---------------------------------------------------------------- the price schedule

def short_bankrupt(mirror, alice, bob, stranger):
    """alice short 1 BTC at 100k on 12k against bob; BTC at 114k: alice is worth -2,000."""
    mirror.fund(alice, usd(12 * K))
    mirror.fund(bob, usd(30 * K))
    mirror.trade((bob, alice, BTC, WAD, BTC_PRICE), sender=stranger)
    mirror.walk_mark(BTC, 114 * K * WAD)
    refuse_and_flag(mirror, alice, stranger)


@pytest.mark.parametrize("side", ["long", "short"])
def test_auction_price__starts_at_the_mark_moves_at_a_fixed_rate_and_stops_at_the_cap(
    mirror, alice, bob, carol, dave, erin, stranger, side
):
    mirror.set_auction_params()
    if side == "long":
        common_book(mirror, alice, bob, carol, dave, erin, stranger)
        refuse_and_flag(mirror, alice, stranger)
    else:
        short_bankrupt(mirror, alice, bob, stranger)
    mark = mirror.model.latest_prices(BTC)[1]
    mirror.open_round(alice)
    start, long_lot = opened_at(mirror, alice), side == "long"
    seen = []
    for seconds in (0, 150, 300, 599, 600, 601, 899):
        if seconds:
            mirror.mine_at(start + seconds)
        seen.append(mirror.price_now(alice, BTC))
        assert seen[-1] == price_after(mark, seconds, long_lot)
    if long_lot:  # the taker buys: the price falls from the mark to 5% below it, never further
        assert seen[:3] == [86 * K * WAD, 84_925 * WAD, 83_850 * WAD] and seen[4:] == [81_700 * WAD] * 3
        assert seen == sorted(seen, reverse=True)
    else:  # the taker sells: the price rises from the mark to 5% above it, never further
        assert seen[:3] == [114 * K * WAD, 115_425 * WAD, 116_850 * WAD] and seen[4:] == [119_700 * WAD] * 3
        assert seen == sorted(seen)
    mirror.mine_at(start + AUCTION_DURATION)
    mirror.reverts(ENDED, mirror.owner, mirror.c.liquidation.auction_price.call(alice.address, BTC))


def test_set_auction_params__out_of_bounds_or_by_a_stranger_reverts(mirror, stranger):
    liq = mirror.c.liquidation
    good = (AUCTION_PREMIUM, AUCTION_RAMP, AUCTION_DURATION, AUCTION_MIN_NOTIONAL, True)
    mirror.reverts(OWNER_ONLY, stranger, liq.set_auction_params.call(*good))
    mirror.reverts(OWNER_ONLY, mirror.keeper, liq.set_auction_params.call(*good))
    for bad in (
        (0, 600, 900, 0, True),  # no premium: nobody would take
        (MAX_AUCTION_PREMIUM + 1, 600, 900, 0, True),  # above 20%
        (AUCTION_PREMIUM, 59, 900, 0, True),  # a ramp under a minute
        (AUCTION_PREMIUM, 600, 599, 0, True),  # ends before the cap
        (AUCTION_PREMIUM, 600, MAX_AUCTION_DURATION + 1, 0, True),  # longer than a day
        (AUCTION_PREMIUM, 600, 900, MAX_AUCTION_MIN_NOTIONAL + 1, True),  # a dust rule above $100k
    ):
        mirror.reverts(OUT_OF_RANGE, mirror.owner, liq.set_auction_params.call(*bad), lambda now, bad=bad: mirror.model.liquidation.set_auction_params(*bad))
    mirror.set_auction_params(MAX_AUCTION_PREMIUM, 60, MAX_AUCTION_DURATION, MAX_AUCTION_MIN_NOTIONAL, False)  # the bounds themselves


# ---------------------------------------------------------------- bad input to a take, each its own test

def test_take__above_the_remaining_size_reverts(volunteer_round, alice, liquidator):
    mirror = volunteer_round
    mirror.reverts(ABOVE_SIZE, liquidator, mirror.take_call(alice, BTC, WAD + 1), mirror.model_take(liquidator, alice, BTC, WAD + 1))
    mirror.take(liquidator, alice, BTC, btc("0.2"))
    mirror.reverts(ABOVE_SIZE, liquidator, mirror.take_call(alice, BTC, btc("0.8") + 1), mirror.model_take(liquidator, alice, BTC, btc("0.8") + 1))


def test_take__at_a_stale_price_reverts(mirror, alice, bob, carol, dave, erin, liquidator, stranger):
    mirror.set_auction_params()
    common_book(mirror, alice, bob, carol, dave, erin, stranger)
    mirror.fund(liquidator, usd(20 * K))
    refuse_and_flag(mirror, alice, stranger)
    pushed = mirror.model.feeds[BTC].updated_at
    mirror.fast.mine_at(pushed + 3000)  # still fresh when the round opens
    mirror.open_round(alice)
    mirror.fast.mine_at(pushed + 3600 + 10)  # the auction runs; the price is stale now
    mirror.reverts("Oracle: stale price", liquidator, mirror.take_call(alice, BTC, btc("0.5")), mirror.model_take(liquidator, alice, BTC, btc("0.5")))
    mirror.refresh()
    mirror.take(liquidator, alice, BTC, btc("0.5"))


def test_take__on_a_paused_market_reverts(volunteer_round, alice, liquidator):
    mirror = volunteer_round
    mirror.send(mirror.owner, mirror.c.oracle.set_paused.call(BTC, True))
    mirror.model.set_paused(BTC, True)
    mirror.reverts("Oracle: market paused", liquidator, mirror.take_call(alice, BTC, btc("0.5")), mirror.model_take(liquidator, alice, BTC, btc("0.5")))


def test_take__after_the_auction_ended_reverts(volunteer_round, alice, liquidator):
    mirror = volunteer_round
    mirror.wait_past(opened_at(mirror, alice) + AUCTION_DURATION)
    mirror.reverts(ENDED, liquidator, mirror.take_call(alice, BTC, btc("0.5")), mirror.model_take(liquidator, alice, BTC, btc("0.5")))


def test_take__by_an_account_that_would_fall_below_initial_margin_reverts(volunteer_round, alice, stranger):
    mirror = volunteer_round
    mirror.fund(stranger, usd(4 * K))  # 0.5 BTC at 86k needs 4,300 of initial margin
    mirror.reverts(TAKER_MARGIN, stranger, mirror.take_call(alice, BTC, btc("0.5")), mirror.model_take(stranger, alice, BTC, btc("0.5")))
    mirror.take(stranger, alice, BTC, btc("0.4"))  # 3,440 needed: fits


def test_take__beyond_the_takers_limit_price_reverts(volunteer_round, alice, liquidator):
    mirror = volunteer_round
    start = opened_at(mirror, alice)
    mirror.fast.mine_at(start + 299)
    call = mirror.take_call(alice, BTC, btc("0.5"), 83_850 * WAD - 1)  # the price will be 83,850 at start + 300
    mirror.reverts(BEYOND_LIMIT, liquidator, call, mirror.model_take(liquidator, alice, BTC, btc("0.5"), 83_850 * WAD - 1))
    mirror.take(liquidator, alice, BTC, btc("0.5"), limit=83_850 * WAD, at=start + 300)


def test_take__leaving_less_than_the_minimum_reverts(volunteer_round, alice, liquidator):
    mirror = volunteer_round
    dust = WAD - 10**15  # leaves 0.001 BTC, about $86: under the $100 minimum
    mirror.reverts(DUST, liquidator, mirror.take_call(alice, BTC, dust), mirror.model_take(liquidator, alice, BTC, dust))
    mirror.take(liquidator, alice, BTC, WAD - 2 * 10**15)  # leaves 0.002 BTC, $172


def test_take__by_the_bankrupt_account_itself_reverts(volunteer_round, alice):
    mirror = volunteer_round
    mirror.reverts(TAKER_BANKRUPT, alice, mirror.take_call(alice, BTC, btc("0.5")), mirror.model_take(alice, alice, BTC, btc("0.5")))


def test_take__zero_size_or_without_an_auction_reverts(volunteer_round, alice, bob, liquidator):
    mirror = volunteer_round
    mirror.reverts("LiquidationEngine: zero size", liquidator, mirror.take_call(alice, BTC, 0), mirror.model_take(liquidator, alice, BTC, 0))
    mirror.reverts(NO_AUCTION, liquidator, mirror.take_call(alice, ETH, WAD), mirror.model_take(liquidator, alice, ETH, WAD))
    mirror.reverts(NO_AUCTION, liquidator, mirror.take_call(bob, BTC, WAD), mirror.model_take(liquidator, bob, BTC, WAD))


def test_auction_hooks__called_by_anyone_but_the_other_engine_revert(volunteer_round, alice, stranger):
    mirror = volunteer_round
    for caller in (stranger, mirror.keeper, mirror.owner):
        mirror.reverts("LiquidationEngine: caller is not the ADL engine", caller,
                       mirror.c.liquidation.settle_volunteer_premium.call(alice.address, BTC))
        mirror.reverts("LiquidationEngine: caller is not the ADL engine", caller,
                       mirror.c.liquidation.start_volunteer_auctions.call(alice.address, mirror.now() + 900))


# ---------------------------------------------------------------- the vault's unwind

@pytest.fixture
def vault_long(mirror, alice, bob, dave, liquidator, stranger):
    """dave's 10k in the vault; it took alice over at 91k: it holds 0.5 BTC long at 91k and 11.5k
    (45,500 of notional: 3.96x). A taker (the liquidator) has 20k."""
    take_over_alice(mirror, alice, bob, dave, stranger)
    mirror.fund(liquidator, usd(20 * K))
    return mirror


def test_start_unwind__vault_above_its_leverage_target_anyone_offers_the_excess(vault_long, liquidator, stranger):
    mirror, vault = vault_long, vault_long.vault_address
    mirror.reverts(WITHIN_TARGETS, stranger, mirror.c.liquidation.start_unwind.call(BTC, WAD, ZERO_ADDRESS),
                   lambda now: mirror.model.liquidation.start_unwind(False, BTC, WAD, ZERO_ADDRESS, now))
    mirror.set_risk_limits(2 * WAD, usd(25 * K), usd(100 * K))  # 2x of 11.5k: 23k of notional allowed
    # 45,500 - 23,000 = 22,500 of notional too much: ceil(22,500 / 91,000) BTC, whatever was asked.
    tx, offered = mirror.start_unwind(stranger, BTC, WAD)
    assert offered == 247_252_747_252_747_253
    started = tx.one("AuctionStarted")
    assert (started.account, started.size, started.mark, started.volunteer) == (vault, offered, 91 * K * WAD, False)
    tx, price = mirror.take(liquidator, vault, BTC, offered, at=started.end - AUCTION_DURATION + 300)
    premium = tx.one("AuctionTaken").premium
    assert price == 88_725 * WAD and premium == notional(offered, 91 * K * WAD - price) == 562_500_000
    assert tx.one("AuctionEnded").account == vault
    # The vault's loss is the premium (its realised loss rounds up: one unit more), at once: its
    # value drops by it; totalAssets, min(value, value at the last report - income still locked),
    # takes it out of the takeover's 1.5k buffer it still holds back first.
    vault_model, now = mirror.vault_model, mirror.now()
    assert mirror.vault_value() == usd(11_500) - premium - 1 < vault_model.last_report_value == usd(11_500)
    assert vault_model.total_assets(now) == min(mirror.vault_value(), usd(11_500) - vault_model.profit_locked(now))
    assert size(mirror, vault) == btc("0.5") - offered and size(mirror, liquidator) == offered
    # Its notional is at 2x of its value before the premium: a little above 2x after it.
    assert notional(size(mirror, vault), 91 * K * WAD) <= 2 * usd(11_500)


def test_start_unwind__vault_above_its_position_limit(vault_long, stranger):
    mirror = vault_long
    mirror.set_max_position(BTC, btc("0.3"))
    tx, offered = mirror.start_unwind(stranger, BTC, WAD)
    assert offered == btc("0.2")
    # A smaller offer is the caller's choice.
    mirror.cancel_unwind(BTC)
    assert mirror.start_unwind(stranger, BTC, btc("0.1"))[1] == btc("0.1")


def test_start_unwind__keeper_at_any_time_and_any_size(vault_long, liquidator):
    mirror, vault = vault_long, vault_long.vault_address
    tx, offered = mirror.start_unwind(mirror.keeper, BTC, btc("0.3"))
    assert offered == btc("0.3")
    mirror.take(liquidator, vault, BTC, btc("0.1"))
    # The keeper can end it early, and start another.
    tx = mirror.cancel_unwind(BTC)
    assert tx.one("AuctionCancelled").remaining == btc("0.2")
    assert mirror.start_unwind(mirror.keeper, BTC, WAD)[1] == btc("0.4")  # at most the position


def test_start_unwind__a_claim_the_vault_cannot_pay_starts_an_unwind(vault_long, dave, liquidator, stranger):
    mirror, vault = vault_long, vault_long.vault_address
    vault_model = mirror.vault_model
    mirror.wait(vault_model.lockup_period)
    mirror.refresh()
    mirror.request(dave, mirror.shares(dave) * 8 // 10)
    start_call = mirror.c.liquidation.start_unwind.call(BTC, WAD, dave.address)
    model_start = lambda now: mirror.model.liquidation.start_unwind(False, BTC, WAD, dave.address, now)  # noqa: E731
    mirror.reverts(WITHIN_TARGETS, stranger, start_call, model_start)  # not claimable yet
    mirror.wait(vault_model.withdrawal_delay)
    mirror.refresh()
    preview = vault_model.claim_preview(dave.address, mirror.now())
    health = mirror.model.account_health(vault, mirror.now())
    headroom = health.value - health.initial_margin
    assert preview.payable_now == headroom < preview.owed  # the margin holds the claim back
    tx, offered = mirror.start_unwind(stranger, BTC, WAD, controller=dave)
    # Each BTC sold frees 9,100 of initial margin and costs at most 4,550 of premium (5%): the
    # shortfall over 4,550 per BTC, rounded up, so the claim is payable whenever the takes come.
    shortfall = preview.owed - headroom
    assert health.initial_margin == usd(4_550)
    assert offered == -(-(shortfall * usd(45_500) * 10**30) // ((usd(4_550) - usd(2_275)) * 91 * K * WAD)) < btc("0.5")
    mirror.take(liquidator, vault, BTC, offered, at=tx.timestamp + 600)  # at the cap
    # Payable in full now. The premium (5% of what was sold) is the vault's loss: what the
    # takeover's buffer still held back absorbs most of it, the rest lowers the share price at
    # once, and dave's escrowed shares bear it (a claim pays min(value at request, value now)).
    after = vault_model.claim_preview(dave.address, mirror.now())
    assert after.payable_now == after.owed < preview.owed
    assert mirror.claim(dave) == after.owed


def test_start_unwind__a_second_auction_for_the_same_position_reverts(vault_long, stranger):
    mirror = vault_long
    mirror.start_unwind(mirror.keeper, BTC, btc("0.2"))
    again = mirror.c.liquidation.start_unwind.call(BTC, btc("0.1"), ZERO_ADDRESS)
    mirror.reverts(RUNNING, mirror.keeper, again, lambda now: mirror.model.liquidation.start_unwind(True, BTC, btc("0.1"), ZERO_ADDRESS, now))
    mirror.set_max_position(BTC, 0)
    mirror.reverts(RUNNING, stranger, again, lambda now: mirror.model.liquidation.start_unwind(False, BTC, btc("0.1"), ZERO_ADDRESS, now))
    # Once it has ended, a new one may start (MakerDAO's `redo`).
    mirror.wait(AUCTION_DURATION)
    mirror.refresh()
    assert mirror.start_unwind(stranger, BTC, WAD)[1] == btc("0.5")


def test_take__on_a_cancelled_auction_reverts(vault_long, liquidator):
    mirror, vault = vault_long, vault_long.vault_address
    mirror.start_unwind(mirror.keeper, BTC, btc("0.2"))
    mirror.cancel_unwind(BTC)
    mirror.reverts(NO_AUCTION, liquidator, mirror.take_call(vault, BTC, btc("0.1")), mirror.model_take(liquidator, vault, BTC, btc("0.1")))


def test_take__an_unwind_that_would_make_the_vault_negative_reverts(vault_long, liquidator):
    mirror, vault = vault_long, vault_long.vault_address
    mirror.set_auction_params(MAX_AUCTION_PREMIUM, 60, 120, AUCTION_MIN_NOTIONAL, False)
    mirror.walk_mark(BTC, 80 * K * WAD)  # the vault is worth 6k on 40k of notional
    tx, offered = mirror.start_unwind(mirror.keeper, BTC, WAD)
    mirror.fast.mine_at(tx.timestamp + 60)  # 20% off: 64k, a 13.5k loss on the 0.5
    reason = "LiquidationEngine: take would bankrupt the account"
    mirror.reverts(reason, liquidator, mirror.take_call(vault, BTC, offered), mirror.model_take(liquidator, vault, BTC, offered))


def test_cancel_unwind__by_a_non_keeper_or_of_a_volunteer_auction_reverts(mirror, alice, bob, dave, stranger):
    from test_adl import vault_in_deficit
    vault = vault_in_deficit(mirror, alice, bob, dave, stranger)
    mirror.set_auction_params()
    mirror.flag_bankruptcy(vault, sender=stranger)
    mirror.open_round(vault)  # the vault's own round auctions its long to volunteers
    assert mirror.model.liquidation.auction(vault.address, BTC).volunteer
    cancel = mirror.c.liquidation.cancel_unwind.call(BTC)
    mirror.reverts(KEEPER_ONLY, stranger, cancel)
    mirror.reverts("LiquidationEngine: a volunteer auction cannot be cancelled", mirror.keeper, cancel,
                   lambda now: mirror.model.liquidation.cancel_unwind(BTC, now))
    mirror.reverts("LiquidationEngine: vault flagged bankrupt", mirror.keeper, mirror.c.liquidation.start_unwind.call(BTC, WAD, ZERO_ADDRESS),
                   lambda now: mirror.model.liquidation.start_unwind(True, BTC, WAD, ZERO_ADDRESS, now))
