"""Netting (`AdlEngine.join_round`): accounts bankrupt at the same time resolved by one ADL round,
on the contract against the reference model (`AdlModel.join_round`), through test_adl.py's mirror
(every balance, position, flag and round compared after each action, the engine's events checked).

The netting book is test_adl.py's common book plus fran (an extra trader) long 0.5 BTC at 100k on
6k from liquidator: at 86k alice is worth -2,000 and fran 6,000 - 7,000 = -1,000, the empty vault
refuses both, and the shorts (bob, carol, erin, liquidator) are the winners of both.
"""

from __future__ import annotations

import pytest

from backstop.model.adl import PRO_RATA
from conftest import BTC, ETH, WAD
from test_adl import (  # noqa: F401  (fixtures are found by name in this module)
    EXTRAS, K, KEEPER_ONLY, NOT_FLAGGED, AdlMirror, _address, balance, btc, common_book, mirror, protocol_invariants, refuse_and_flag, size,
    usd,
)
from test_auction import AuctionMirror
from test_insurance_vault import BTC_PRICE, dave, erin, fast  # noqa: F401

FRAN = EXTRAS[0]
NOT_JOINABLE = "AdlEngine: host round not joinable"
OTHER_MARKETS = "AdlEngine: markets differ from the host round"
OTHER_SIDE = "AdlEngine: side differs from the host round"
VAULT_NOT_NETTED = "AdlEngine: the vault is not netted"


def join_round(mirror: AdlMirror, account, host):
    """The keeper nets `account` into `host`'s round: the same on chain and in the model, the
    engine's events exactly those the model implies (AdlRoundJoined, then any absorption)."""
    address, host_address = _address(account), _address(host)
    mirror.watched.add(address)
    before = mirror._marks()
    joins = len(mirror.adl_model.joins)
    tx = mirror.send(mirror.keeper, mirror.engine_call("join_round", address, host_address))
    mirror.adl_model.join_round(address, host_address, tx.timestamp)
    mirror._check_events(tx, host_address, before)
    got = [(e.account, e.host, e.deficit) for e in tx.all("AdlRoundJoined", mirror.engine_address)]
    assert got == mirror.adl_model.joins[joins:] and len(got) == 1
    mirror.compare()
    return tx


def refused_join(mirror: AdlMirror, reason, account, host, sender=None):
    """`join_round` is refused with `reason` on chain and in the model, at the clock's time; nothing moves."""
    address, host_address = _address(account), _address(host)
    if mirror.stopped_at is not None:
        mirror.fast.request("evm_setNextBlockTimestamp", [mirror.stopped_at])
    call = mirror.engine_call("join_round", address, host_address)
    model_call = lambda now: mirror.adl_model.join_round(address, host_address, now)  # noqa: E731
    mirror.reverts(reason, sender or mirror.keeper, call, None if reason == KEEPER_ONLY else model_call)


def netting_book(mirror, alice, bob, carol, dave, erin, liquidator, stranger, fran_collateral=usd(6 * K), fran_eth=0):
    """The module docstring's book, alice flagged at 86k, fran too if she is worth less than zero
    there (`fran_eth`: she is also long that much ETH at 4,000 from liquidator)."""
    mirror.fund_for(FRAN, fran_collateral)
    mirror.fund(liquidator, usd(20 * K))
    mirror.trade((FRAN, liquidator, BTC, btc("0.5"), BTC_PRICE), sender=stranger)
    if fran_eth:
        mirror.trade((FRAN, liquidator, ETH, fran_eth, 4 * K * WAD), sender=stranger)
    common_book(mirror, alice, bob, carol, dave, erin, stranger)
    for account in (alice, FRAN):
        if mirror.model.account_value(account.address, mirror.now()) < 0:
            refuse_and_flag(mirror, account, stranger)
    return mirror


@pytest.fixture
def two_bankrupt(mirror, alice, bob, carol, dave, erin, liquidator, stranger):
    return netting_book(mirror, alice, bob, carol, dave, erin, liquidator, stranger)


def test_join_round__one_round_charges_both_deficits_to_the_queue(two_bankrupt, alice, bob, carol, erin, liquidator):
    mirror = two_bankrupt
    with mirror.clock_stopped():
        mirror.open_round(alice)
        tx = join_round(mirror, FRAN, alice)

    event = tx.one("AdlRoundJoined")
    assert (event.account, event.host, event.deficit) == (FRAN.address, alice.address, usd(1 * K))
    # fran is flat at exactly zero and free; alice's round carries both accounts.
    assert (size(mirror, FRAN), balance(mirror, FRAN)) == (0, 0)
    assert not mirror.model.bankrupt.get(FRAN.address, False)
    assert size(mirror, alice) == btc("1.5")
    state = mirror.adl_model.market_round(alice.address, BTC)
    assert (state.bankrupt_size, state.size_left, state.deficit_left, state.deficit_share) == (btc("1.5"), btc("1.5"), usd(3 * K), usd(3 * K))
    assert mirror.adl_model.round(alice.address).deficit == usd(3 * K)

    # One ranking for both: 1.5 BTC closed at 86k carrying 3,000 (2,000 per BTC, as each alone).
    txs = [mirror.execute(alice, BTC, batch.winners, batch.declaration) for batch in mirror.plan(alice, BTC)]
    closed = txs[-1].one("AdlRoundClosed")
    assert (closed.deficit, closed.haircuts, closed.residual) == (usd(3 * K), usd(3 * K), 0)
    hits = [(e.winner, e.size_closed) for tx in txs for e in tx.all("AdlHit")]
    assert sum(closed for _, closed in hits) == btc("1.5")
    assert {winner for winner, _ in hits} <= {bob.address, carol.address, erin.address, liquidator.address}
    assert (size(mirror, alice), balance(mirror, alice)) == (0, 0)


@pytest.mark.parametrize("limit, at_open, at_join", [("0.8", "0.8", "0"), ("1.2", "1", "0.2")])
def test_join_round__pro_rata_vault_absorbs_the_added_size_up_to_its_limit(
    mirror, alice, bob, carol, dave, erin, liquidator, stranger, limit, at_open, at_join
):
    # The vault (50k of dave's) may hold `limit` BTC: at the open it takes what that allows of
    # alice's 1 BTC, at the join what is left of it from fran's 0.5.
    netting_book(mirror, alice, bob, carol, dave, erin, liquidator, stranger)
    mirror.deposit(dave, usd(50 * K))
    mirror.set_max_position(BTC, btc(limit))
    mirror.set_policy(BTC, PRO_RATA)
    with mirror.clock_stopped():
        opened = mirror.open_round(alice)
        tx = join_round(mirror, FRAN, alice)

    assert opened.one("VaultAbsorption").size == btc(at_open)
    assert [e.size for e in tx.all("VaultAbsorption")] == ([btc(at_join)] if btc(at_join) else [])
    state = mirror.adl_model.market_round(alice.address, BTC)
    assert (state.size_absorbed, state.size_left) == (btc(limit), btc("1.5") - btc(limit))


def test_join_round__later_block_time_executed_or_vault_host_refused(two_bankrupt, alice, bob, liquidator):
    mirror = two_bankrupt
    mirror.open_round(alice)
    mirror.wait(1)
    refused_join(mirror, NOT_JOINABLE, FRAN, alice)  # not opened at this time
    refused_join(mirror, NOT_JOINABLE, FRAN, bob)  # no round at all
    refused_join(mirror, VAULT_NOT_NETTED, FRAN, mirror.vault_address)


def test_join_round__after_a_haircut_refused(mirror, alice, bob, carol, dave, erin, liquidator, stranger):
    netting_book(mirror, alice, bob, carol, dave, erin, liquidator, stranger)
    with mirror.clock_stopped():
        mirror.open_round(alice)
        [batch, *_] = mirror.plan(alice, BTC, batch_size=1)
        mirror.execute(alice, BTC, batch.winners, batch.declaration)
        refused_join(mirror, NOT_JOINABLE, FRAN, alice)


def test_join_round__unflagged_in_a_round_or_stranger_refused(two_bankrupt, alice, bob, stranger):
    mirror = two_bankrupt
    with mirror.clock_stopped():
        mirror.open_round(alice)
        refused_join(mirror, NOT_FLAGGED, bob, alice)  # never flagged
        refused_join(mirror, NOT_FLAGGED, alice, alice)  # its own round
        for caller in (stranger, FRAN, mirror.owner):
            refused_join(mirror, KEEPER_ONLY, FRAN, alice, sender=caller)
        join_round(mirror, FRAN, alice)
        refused_join(mirror, NOT_FLAGGED, FRAN, alice)  # twice


def test_join_round__other_markets_refused(mirror, alice, bob, carol, dave, erin, liquidator, stranger):
    # fran also long 0.1 ETH at 4,000: bankrupt at 86k like alice, but in BTC and ETH.
    netting_book(mirror, alice, bob, carol, dave, erin, liquidator, stranger, fran_eth=btc("0.1"))
    with mirror.clock_stopped():
        mirror.open_round(alice)
        refused_join(mirror, OTHER_MARKETS, FRAN, alice)


def test_join_round__other_side_refused(mirror, alice, bob, carol, dave, erin, liquidator, stranger):
    # gus short 0.2 BTC at 100k on 2k, flagged at 112k (worth -400); at 86k alice's long round
    # opens, and gus (still flagged) is on the other side.
    gus = EXTRAS[1]
    mirror.fund_for(gus, usd(2 * K))
    mirror.fund(dave, usd(20 * K))
    mirror.trade((dave, gus, BTC, btc("0.2"), BTC_PRICE), sender=stranger)
    mirror.walk_mark(BTC, 112 * K * WAD)
    refuse_and_flag(mirror, gus, stranger)
    mirror.walk_mark(BTC, BTC_PRICE)
    netting_book(mirror, alice, bob, carol, dave, erin, liquidator, stranger)
    with mirror.clock_stopped():
        mirror.open_round(alice)
        refused_join(mirror, OTHER_SIDE, gus, alice)
        join_round(mirror, FRAN, alice)


def test_join_round__solvent_at_the_host_price_refused(mirror, alice, bob, carol, dave, erin, liquidator, stranger):
    # fran on 7k is worth 0 at 86k, -500 at 85k (flagged) and +500 at 87k, where alice is still worth -1,000.
    netting_book(mirror, alice, bob, carol, dave, erin, liquidator, stranger, fran_collateral=usd(7 * K))
    assert not mirror.model.bankrupt.get(FRAN.address, False)
    mirror.walk_mark(BTC, 85 * K * WAD)
    refuse_and_flag(mirror, FRAN, stranger)
    mirror.walk_mark(BTC, 87 * K * WAD)
    with mirror.clock_stopped():
        mirror.open_round(alice)
        refused_join(mirror, "AdlEngine: account solvent", FRAN, alice)


# ---------------------------------------------------------------- with the volunteer step

@pytest.fixture
def auctions(chain, fast, protocol, config, owner, keeper, signer, fund, expiry, alice, bob, carol, dave, erin, liquidator, stranger):
    """The netting book on test_auction.py's mirror (auctions compared too), the volunteer step on."""
    mirror = AuctionMirror(
        chain, fast, protocol, config, owner, keeper, signer, fund, expiry,
        [alice, bob, carol, dave, erin, liquidator, stranger, protocol.vault, *EXTRAS],
    )
    mirror.set_auction_params()
    return netting_book(mirror, alice, bob, carol, dave, erin, liquidator, stranger)


def test_join_round__the_running_auction_offers_the_whole_size(auctions, alice, dave):
    mirror = auctions
    with mirror.clock_stopped():
        mirror.open_round(alice)
        tx = join_round(mirror, FRAN, alice)
    # The host's auction starts again at the same time with 1.5 BTC (AuctionStarted: the engine restarted it).
    auction = mirror.model.liquidation.auction(alice.address, BTC)
    assert (auction.lot, auction.start) == (btc("1.5"), tx.timestamp)
    assert mirror.model.liquidation.auction_events[-1][:4] == ("AuctionStarted", alice.address, BTC, btc("1.5"))
    # dave takes it all at the cap: 1.5 x 86k x 5% = 6,450 of premium joins D = 3,000.
    mirror.take(dave, alice, BTC, btc("1.5"), at=auction.start + 600)
    assert mirror.adl_model.settled_market_round(alice.address, BTC).deficit_left == usd(3 * K) + usd(6_450)


def test_join_round__after_a_take_refused(auctions, alice, dave):
    mirror = auctions
    with mirror.clock_stopped():
        mirror.open_round(alice)
        mirror.take(dave, alice, BTC, btc("0.5"), at=mirror.stopped_at)
        refused_join(mirror, NOT_JOINABLE, FRAN, alice)
