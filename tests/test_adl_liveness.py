"""ADL that always finishes and never freezes bystanders (issue 13), on the contracts and the model.

The five stories an audit reproduced, each with its numbers, plus one test per branch of the
fallback (`AdlEngine.finish_round`) and per case of the scoped withdrawal gate. Every action runs
through `AdlMirror` (tests/test_adl.py): chain and model agree after each, events included.

Units: collateral 1e6 (`usd`), sizes and prices 1e18 (`btc`, `K * WAD`). The deployed markets:
BTC at 100k (margin 10% / 5%), SOL at 200 (20% / 10%); the oracle moves at most 20% an update.
"""

from __future__ import annotations

import pytest

from backstop.model import adl
from backstop.model.adl import PRO_RATA
from conftest import BTC, SOL, WAD
from test_adl import (  # noqa: F401  (fixtures are found by name in this module)
    BELOW_MARGIN, EXTRAS, K, AdlMirror, balance, bankrupt_alice, btc, common_book, mirror, protocol_invariants, refuse_and_flag, size,
    usd, value, vault_in_deficit,
)
from test_insurance_vault import BTC_PRICE, dave, erin, fast  # noqa: F401

NOT_PAST = "AdlEngine: round before its deadline"
NO_ROUND = "AdlEngine: no open round"
SOL_PRICE = 200 * WAD


def can_withdraw(mirror, who, amount=usd(1)) -> bool:
    allowed = mirror.read(mirror.c.clearinghouse.withdrawable.call(_addr(who)))
    assert allowed == mirror.model.withdrawable(_addr(who), mirror.now())
    return amount <= allowed


def alice_refused_at_88k(mirror, alice, bob, stranger):
    """alice long 1 BTC at 100k on 10k against bob (20k); at 88k she is -2k, the empty vault refuses
    her, and her round opens."""
    mirror.fund(alice, usd(10 * K))
    mirror.fund(bob, usd(20 * K))
    mirror.trade((alice, bob, BTC, WAD, BTC_PRICE), sender=stranger)
    mirror.walk_mark(BTC, 88 * K * WAD)
    refuse_and_flag(mirror, alice, stranger)
    mirror.open_round(alice)


def _addr(who):
    return who if isinstance(who, str) else who.address


def waits(mirror, who, amount=usd(1)):
    """`who` may not withdraw `amount` now: refused on chain and in the model, nothing moves."""
    assert not can_withdraw(mirror, who, amount)
    mirror.reverts(BELOW_MARGIN, who, mirror.c.pool.withdraw.call(amount), lambda now: mirror.model.withdraw(_addr(who), amount, now))


# ---------------------------------------------------------------- story 1: a round one owner makes

@pytest.fixture
def user_made_round(mirror, alice, bob, carol, dave, stranger):
    """Three accounts of one owner: alice long 4 BTC at 10x against bob, and long 1 SOL against carol
    at the mark; 93k in all. dave holds 100k of vault shares. One legal -20% update: alice is 38k
    under water, above the vault's 25k per-event cap: refused, flagged."""
    mirror.deposit(dave, usd(100 * K))
    mirror.fund(alice, usd(42 * K))
    mirror.fund(bob, usd(42 * K))
    mirror.fund(carol, usd(9 * K))
    mirror.trade((alice, bob, BTC, 4 * WAD, BTC_PRICE), (alice, carol, SOL, WAD, SOL_PRICE), sender=stranger)
    mirror.walk_mark(BTC, 80 * K * WAD)
    assert value(mirror, alice) == -usd(38 * K)
    assert refuse_and_flag(mirror, alice, stranger) == "loss above the vault's allowance"
    mirror.open_round(alice)
    [batch] = mirror.plan(alice, BTC)
    mirror.execute(alice, BTC, batch.winners)  # bob pays the 38k, BTC is resolved
    assert mirror.plan(alice, SOL) == []  # carol, SOL's only short, has no profit at the round's price
    assert mirror.adl_model.round(alice.address).markets_left == 1 << SOL
    return mirror


def test_user_made_round_closes_and_bystander_withdraws(user_made_round, alice, bob, carol, dave, liquidator, stranger):
    mirror = user_made_round
    mirror.fund(liquidator, usd(10 * K))  # a bystander: no position at all
    mirror.withdraw(liquidator, usd(1))  # at once, while the round is open
    mirror.wait(30 * 86400)  # thirty days later
    mirror.refresh()
    mirror.withdraw(liquidator, usd(1))
    mirror.request(dave, mirror.shares(dave))
    mirror.wait(mirror.vault_model.withdrawal_delay)
    assert mirror.claim(dave) == usd(100 * K)  # the vault holds nothing the round can charge
    # Long past its deadline, anyone ends the round: the vault takes alice's 1 SOL at the mark.
    tx = mirror.finish_round(alice, stranger)
    closed = tx.one("AdlRoundClosed")
    assert (closed.deficit, closed.haircuts, closed.fallback) == (usd(38 * K), usd(38 * K), True)
    assert (size(mirror, alice, SOL), balance(mirror, alice), value(mirror, alice)) == (0, 0, 0)
    assert size(mirror, mirror.vault_address, SOL) == WAD
    assert not mirror.model.bankrupt[alice.address]
    mirror.refresh()
    mirror.withdraw(carol, usd(1 * K))  # the side the round could charge is free again


# ---------------------------------------------------------------- story 2: the price keeps falling

def test_round_closes_while_price_keeps_falling(mirror, alice, bob, carol, dave, erin, liquidator, stranger):
    # alice long 1 BTC at 100k on 10k against bob; at 88k she is -2k and the empty vault refuses her.
    mirror.fund(erin, usd(20 * K))
    mirror.fund(liquidator, usd(10 * K))
    alice_refused_at_88k(mirror, alice, bob, stranger)
    [batch] = mirror.plan(alice, BTC)
    assert batch.winners == [bob.address]
    # Before the keeper's call bob takes his profit: erin takes his short over at 87k, below the
    # round's price (88k), so she is not a winner there.
    mirror.trade((bob, erin, BTC, WAD, 87 * K * WAD), sender=stranger)
    tx = mirror.execute(alice, BTC, batch.winners)
    assert [(e.winner, e.reason) for e in tx.all("AdlSkipped")] == [(bob.address, adl.SKIP_SIDE)]
    assert mirror.plan(alice, BTC) == []
    mirror.walk_mark(BTC, 88 * K * WAD * 80 // 100)  # the crash goes on: 70.4k
    # Nobody but the shorts waits: bob (flat, his profit realised) and a bystander withdraw.
    mirror.withdraw(bob, usd(10 * K))
    mirror.withdraw(liquidator, usd(1 * K))
    waits(mirror, erin)
    mirror.wait_past(mirror.adl_model.round(alice.address).deadline)
    tx = mirror.finish_round(alice, stranger)
    # The vault takes the long at 70.4k: alice is 10k - 29.6k = -19.6k; all of it is spread over the
    # shorts, erin alone: her loss index rises by 19.6k per BTC.
    closed = tx.one("AdlRoundClosed")
    assert (closed.haircuts, closed.socialised, closed.residual, closed.fallback) == (0, usd(19_600), 0, True)
    spread = tx.one("LossSocialised")
    assert (spread.account, spread.market, spread.longs_pay, spread.amount) == (alice.address, BTC, False, usd(19_600))
    assert value(mirror, alice) == 0 and size(mirror, mirror.vault_address) == WAD
    assert value(mirror, erin) == usd(20 * K) + usd(16_600) - usd(19_600)  # 87k - 70.4k in profit, less the spread
    mirror.refresh()
    mirror.withdraw(erin, usd(1 * K))


# ---------------------------------------------------------------- story 3: a winner submitted twice

def test_resubmitted_winner_never_pays_twice(mirror, alice, bob, carol, dave, erin, stranger):
    # alice long 1 BTC at 95k on 9.5k (from carol); at 75k erin sells 2 BTC to dave; at 70k alice is
    # 15.5k under water. erin: short 2 at 75k, profit 10k at the round's price.
    mirror.fund(alice, usd(9_500))
    mirror.fund(carol, usd(40 * K))
    mirror.fund(dave, usd(100 * K))
    mirror.fund(erin, usd(20 * K))
    mirror.walk_mark(BTC, 95 * K * WAD)
    mirror.trade((alice, carol, BTC, WAD, 95 * K * WAD), sender=stranger)
    mirror.walk_mark(BTC, 75 * K * WAD)
    mirror.trade((dave, erin, BTC, 2 * WAD, 75 * K * WAD), sender=stranger)
    mirror.walk_mark(BTC, 70 * K * WAD)
    assert value(mirror, alice) == -usd(15_500)
    refuse_and_flag(mirror, alice, stranger)
    mirror.open_round(alice)
    tx = mirror.execute(alice, BTC, [erin])
    # The first call: erin closes the 1 BTC and pays her whole profit, 10k (capped).
    assert (tx.one("AdlHit").size_closed, tx.one("AdlHit").haircut) == (WAD, usd(10 * K))
    worth = value(mirror, erin)
    assert worth == usd(20 * K)  # her deposit: 10k of profit in, 10k out
    # Submitted again (today's code charged her the 5k her other BTC still showed at 75k):
    tx = mirror.execute(alice, BTC, [erin])
    assert [(e.winner, e.reason) for e in tx.all("AdlSkipped")] == [(erin.address, adl.SKIP_UNPROFITABLE)]
    assert not tx.all("AdlHit") and value(mirror, erin) == worth
    assert sum(h.haircut for h in mirror.adl_model.round_hits[alice.address] if h.winner == erin.address) == usd(10 * K)
    # carol, the other short (95k), pays the rest.
    tx = mirror.execute(alice, BTC, [carol])
    assert tx.one("AdlHit").haircut == usd(5_500) and tx.one("AdlRoundClosed").haircuts == usd(15_500)


# ---------------------------------------------------------------- story 4: a stale winner

def test_stale_winner_does_not_block_the_queue(bankrupt_alice, alice, bob, carol, dave, erin, stranger):
    mirror = bankrupt_alice
    mirror.open_round(alice)
    [batch] = mirror.plan(alice, BTC)
    assert batch.winners == [bob.address, erin.address]
    # erin reduces between the keeper's planning and its call: her key falls below carol's.
    mirror.trade((erin, dave, BTC, btc("0.2"), 86 * K * WAD), sender=stranger)
    tx = mirror.execute(alice, BTC, batch.winners)
    assert [(e.winner, e.size_closed) for e in tx.all("AdlHit")] == [(bob.address, btc("0.5")), (erin.address, btc("0.4"))]
    [rest] = mirror.plan(alice, BTC)
    assert rest.winners == [carol.address]  # next in line, though ranked above erin now
    tx = mirror.execute(alice, BTC, rest.winners)
    assert tx.one("AdlRoundClosed").haircuts == usd(2 * K)


def test_front_runner_cannot_make_a_keeper_batch_revert(bankrupt_alice, alice, bob, carol, dave, erin, stranger):
    """A winner that closes its position just before the keeper's batch is skipped; the rest of the
    batch goes through, every time."""
    mirror = bankrupt_alice
    mirror.open_round(alice)
    [batch] = mirror.plan(alice, BTC)
    mirror.trade((bob, dave, BTC, btc("0.5"), 86 * K * WAD), sender=stranger)  # bob closes his short
    tx = mirror.execute(alice, BTC, batch.winners)
    assert [(e.winner, e.reason) for e in tx.all("AdlSkipped")] == [(bob.address, adl.SKIP_SIDE)]
    assert [e.winner for e in tx.all("AdlHit")] == [erin.address]
    [rest] = mirror.plan(alice, BTC)
    tx = mirror.execute(alice, BTC, rest.winners)
    assert tx.one("AdlRoundClosed").haircuts == usd(2 * K)


# ---------------------------------------------------------------- story 5: dust on an empty vault

def test_dust_never_makes_the_vault_negative(mirror, alice, bob, carol, dave, erin, stranger):
    # The common book with erin short 0.7: pro-rata closes 1 BTC in three parts and alice realises
    # one unit more than her 14k loss. The vault holds nothing.
    common_book(mirror, alice, bob, carol, dave, erin, stranger, erin_short=btc("0.7"))
    refuse_and_flag(mirror, alice, stranger)
    mirror.set_policy(BTC, PRO_RATA)
    mirror.open_round(alice)
    for batch in mirror.plan(alice, BTC, batch_size=1):
        tx = mirror.execute(alice, BTC, batch.winners, batch.declaration)
    closed = tx.one("AdlRoundClosed")
    assert (closed.residual, closed.socialised) == (0, 1)  # the unit goes to the shorts still open
    assert value(mirror, mirror.vault_address) == 0
    mirror.deposit(erin, usd(1))  # the vault still takes deposits


# ---------------------------------------------------------------- the fallback, branch by branch

def test_finish_round__before_the_deadline_or_without_a_round_reverts(user_made_round, alice, bob, stranger):
    mirror = user_made_round
    finish = lambda who: mirror.engine_call("finish_round", _addr(who))  # noqa: E731
    model_finish = lambda who: (lambda now: mirror.adl_model.finish_round(_addr(who), now))  # noqa: E731
    mirror.reverts(NOT_PAST, stranger, finish(alice), model_finish(alice))
    mirror.wait(mirror.adl_model.round_duration - 2)
    mirror.reverts(NOT_PAST, stranger, finish(alice), model_finish(alice))  # at the deadline itself: not yet
    mirror.reverts(NO_ROUND, stranger, finish(bob), model_finish(bob))
    mirror.wait_past(mirror.adl_model.round(alice.address).deadline)
    mirror.finish_round(alice, stranger)
    mirror.reverts(NO_ROUND, stranger, finish(alice), model_finish(alice))  # once only


def test_finish_round__the_vault_takes_the_rest_of_the_position_at_the_mark(user_made_round, alice, carol, stranger):
    mirror = user_made_round
    mirror.walk_mark(SOL, 180 * WAD)  # SOL falls after the round opened: alice's long loses 20 more
    mirror.wait_past(mirror.adl_model.round(alice.address).deadline)
    tx = mirror.finish_round(alice, stranger)
    absorbed = tx.one("VaultAbsorption")
    assert (absorbed.market, absorbed.size, absorbed.price) == (SOL, WAD, 180 * WAD)
    assert mirror.model.position(mirror.vault_address, SOL).entry_price == 180 * WAD  # taken at the mark: no value moved
    # the 20 SOL lost since the round opened is spread over the shorts (carol), as the round's rest
    closed = tx.one("AdlRoundClosed")
    assert (closed.socialised, closed.residual) == (usd(20), 0)


def test_finish_round__deficit_spread_over_the_winners_side_in_proportion_to_size(mirror, alice, bob, carol, dave, erin, stranger):
    # alice long 1 BTC at 100k on 10k against bob; at 88k the empty vault refuses her (-2k). Before
    # the keeper acts bob buys back from dave at 87k, and erin sells carol 3 BTC at 87k: the shorts,
    # dave 1 and erin 3, entered below the round's price (88k) and are no winners.
    mirror.fund(carol, usd(100 * K))
    mirror.fund(dave, usd(20 * K))
    mirror.fund(erin, usd(40 * K))
    alice_refused_at_88k(mirror, alice, bob, stranger)
    mirror.trade((bob, dave, BTC, WAD, 87 * K * WAD), (carol, erin, BTC, 3 * WAD, 87 * K * WAD), sender=stranger)
    assert mirror.plan(alice, BTC) == []
    mirror.wait_past(mirror.adl_model.round(alice.address).deadline)
    tx = mirror.finish_round(alice, stranger)
    # The vault takes alice's long at 88k; her 2k goes over the 4 BTC short: 500 a BTC.
    spread = tx.one("LossSocialised")
    assert (spread.longs_pay, spread.amount, spread.per_unit) == (False, usd(2 * K), 500 * WAD)
    assert value(mirror, dave) == usd(20 * K) - usd(1 * K) - usd(500)  # 1 short at 87k, marked at 88k
    assert value(mirror, erin) == usd(40 * K) - usd(3 * K) - usd(1_500)
    assert value(mirror, alice) == 0 and tx.one("AdlRoundClosed").residual == 0


def test_finish_round__nobody_holds_the_winners_side_the_vault_covers(mirror, alice, bob, carol, dave, stranger):
    # alice long 1 BTC at 100k on 10k against carol; at 89k carol buys back from bob (short 1 at
    # 89k); at 88k alice is -2k and the vault (dave's 50k, 1k loss cap) refuses her. bob, the only
    # winner, closes the whole BTC and pays his 1k of profit: the market is empty and 1k is left.
    mirror.deposit(dave, usd(50 * K))
    mirror.set_risk_limits(5 * WAD, usd(1 * K), usd(5_000 * K))
    mirror.fund(alice, usd(10 * K))
    mirror.fund(bob, usd(20 * K))
    mirror.fund(carol, usd(20 * K))
    mirror.trade((alice, carol, BTC, WAD, BTC_PRICE), sender=stranger)
    mirror.walk_mark(BTC, 89 * K * WAD)
    mirror.trade((carol, bob, BTC, WAD, 89 * K * WAD), sender=stranger)
    mirror.walk_mark(BTC, 88 * K * WAD)
    assert refuse_and_flag(mirror, alice, stranger) == "loss above the vault's allowance"
    mirror.open_round(alice)
    tx = mirror.execute(alice, BTC, [bob])
    assert (tx.one("AdlHit").size_closed, tx.one("AdlHit").haircut) == (WAD, usd(1 * K))
    assert mirror.read(mirror.c.clearinghouse.short_open_interest.call(BTC)) == 0
    mirror.wait_past(mirror.adl_model.round(alice.address).deadline)
    tx = mirror.finish_round(alice, stranger)
    # No one holds the winners' side of any market of the round: the vault, the insurer, covers it.
    closed = tx.one("AdlRoundClosed")
    assert (closed.haircuts, closed.socialised, closed.residual, closed.fallback) == (usd(1 * K), 0, -usd(1 * K), True)
    assert not tx.all("LossSocialised")
    assert value(mirror, mirror.vault_address) == usd(49 * K) and value(mirror, alice) == 0


def test_finish_round__the_vaults_own_round_keeps_its_position(mirror, alice, bob, dave, erin, stranger):
    # dave's 10k in the vault; the vault takes alice's 0.5 BTC long over at 91k (worth 11.5k); at 65k
    # the vault is -1.5k and flagged. bob, the only short, closes his 0.5 against erin at 64k before
    # the keeper acts: erin is no winner at the round's price (65k), and nobody can take the vault's
    # own position. At the deadline the vault keeps it and the 1.5k goes over the shorts (erin).
    mirror.fund(erin, usd(100 * K))
    vault = vault_in_deficit(mirror, alice, bob, dave, stranger)
    mirror.flag_bankruptcy(vault, sender=stranger)
    mirror.open_round(vault)
    mirror.trade((bob, erin, BTC, WAD // 2, 64 * K * WAD), sender=stranger)
    assert mirror.plan(vault, BTC) == []
    mirror.wait_past(mirror.adl_model.round(vault.address).deadline)
    tx = mirror.finish_round(vault, stranger)
    closed = tx.one("AdlRoundClosed")
    assert (closed.socialised, closed.residual, closed.fallback) == (usd(1_500), 0, True)
    assert not tx.all("VaultAbsorption") and size(mirror, vault) == WAD // 2
    assert value(mirror, vault) == 0 and not mirror.model.bankrupt[vault.address]


# ---------------------------------------------------------------- the scoped gate, case by case

def test_gate__bystander_withdraws_while_a_round_is_open(user_made_round, liquidator, dave):
    mirror = user_made_round
    mirror.fund(liquidator, usd(5 * K))
    assert can_withdraw(mirror, liquidator, usd(5 * K))
    mirror.withdraw(liquidator, usd(5 * K))
    mirror.fund(dave, usd(1 * K))  # dave holds vault shares and no position: free as well
    mirror.withdraw(dave, usd(1 * K))


def test_gate__a_winner_exposed_to_the_round_waits_until_its_market_resolves(user_made_round, alice, bob, carol, stranger):
    mirror = user_made_round
    # BTC is resolved: bob (short BTC, charged already) withdraws; carol (short SOL, which the round
    # can still charge) waits until the round ends.
    mirror.withdraw(bob, usd(1 * K))
    waits(mirror, carol)
    assert mirror.read(mirror.c.clearinghouse.adl_exposure.call(SOL, 1)) == 1
    mirror.wait_past(mirror.adl_model.round(alice.address).deadline)
    mirror.refresh()
    waits(mirror, carol)  # past the deadline, until someone finishes the round
    mirror.finish_round(alice, stranger)
    mirror.withdraw(carol, usd(1 * K))


def test_gate__vault_depositor_claims_while_a_round_is_open(user_made_round, alice, dave):
    mirror = user_made_round
    mirror.wait(mirror.vault_model.lockup_period)
    recorded = mirror.request(dave, mirror.shares(dave))
    mirror.wait(mirror.vault_model.withdrawal_delay)
    assert mirror.adl_model.round(alice.address).markets_left  # the round is still open
    assert mirror.claim(dave) == recorded == usd(100 * K)


def test_gate__the_vault_waits_only_while_it_holds_a_side_a_round_can_charge(mirror, alice, bob, carol, dave, erin, stranger):
    """The vault's own exposure is the only reason its claims wait: it took over a BTC short, and a
    round opened for a bankrupt BTC long charges the shorts."""
    mirror.deposit(dave, usd(100 * K))
    mirror.fund(alice, usd(10 * K))
    mirror.fund(bob, usd(20 * K))
    mirror.fund(carol, usd(20 * K))
    mirror.fund(erin, usd(6 * K))
    mirror.trade((alice, bob, BTC, WAD, BTC_PRICE), (carol, erin, BTC, WAD // 2, BTC_PRICE), sender=stranger)
    mirror.walk_mark(BTC, 110 * K * WAD)
    assert mirror.backstop(stranger, erin)[1] == ""  # the vault now holds erin's 0.5 BTC short
    assert can_withdraw(mirror, mirror.vault_address)
    mirror.walk_mark(BTC, 88 * K * WAD)
    mirror.set_risk_limits(5 * WAD, usd(1 * K), usd(5_000 * K))
    assert refuse_and_flag(mirror, alice, stranger) == "loss above the vault's allowance"
    mirror.open_round(alice)
    assert not can_withdraw(mirror, mirror.vault_address)  # its short is on the side the round charges
    [batch] = mirror.plan(alice, BTC)
    mirror.execute(alice, BTC, batch.winners, batch.declaration)
    assert mirror.adl_model.round(alice.address).markets_left == 0
    assert can_withdraw(mirror, mirror.vault_address)


# ---------------------------------------------------------------- the owner's bound

def test_set_round_duration__bounds_and_owner_only(mirror, stranger):
    call = mirror.engine_call
    mirror.reverts("ownable: caller is not the owner", stranger, call("set_round_duration", 600))
    for duration in (59, 7 * 86400 + 1, 0):
        mirror.reverts("AdlEngine: round duration out of range", mirror.owner, call("set_round_duration", duration),
                       lambda now, d=duration: mirror.adl_model.set_round_duration(d))
    tx = mirror.send(mirror.owner, call("set_round_duration", 600))
    mirror.adl_model.set_round_duration(600)
    assert tx.one("UpdateRoundDuration").round_duration == 600
    mirror.compare()
