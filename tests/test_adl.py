"""Auto-deleveraging (contracts/AdlEngine.vy) against its reference model (backstop/model/adl.py).

Every story runs through `AdlMirror`, a `VaultMirror` (tests/test_insurance_vault.py) with the ADL
engine attached: the contracts and the model take the same actions and, after each, agree on every
balance, position, flag and vault counter plus the engine's rounds (per account and per market),
its policies and the clearinghouse's round flags; each engine transaction's events (AdlRoundOpened,
VaultAbsorption, AdlHit, AdlMarketResolved, AdlRoundClosed) must be exactly the ones the model
predicts. The keeper's lists come from the planner (backstop/keeper/adl_planner.py) unless a test
builds a bad one on purpose.

The common book (BTC at 100k, index == mark so no funding; margin 10% / 5%):
- alice long 1 BTC at 100k on 12k: 0.5 from bob (8k), 0.5 from carol (20k);
- at 90k erin sells 0.6 BTC to dave (erin 6k, dave 100k);
- BTC at 86k: alice is worth 12k - 14k = -2k, so D = 2,000 and her bankruptcy price is
  100k - 12k = 88k: every BTC closed at 86k carries a haircut of 88k - 86k = 2,000.
  The shorts (profit / value / notional at 86k):
    bob   0.5 @100k: 7,000 / 15,000 / 43,000 -> leverage 2.8667, PnL% 14%
    carol 0.5 @100k: 7,000 / 27,000 / 43,000 -> leverage 1.5926, PnL% 14%
    erin  0.6 @ 90k: 2,400 /  8,400 / 51,600 -> leverage 6.1429, PnL% 4.44%
"""

from __future__ import annotations

from contextlib import contextmanager
from fractions import Fraction
from types import SimpleNamespace

import pytest
from eth_account import Account as EthAccount
from eth_utils import keccak, to_checksum_address

from backstop.keeper.adl_planner import MarketToResolve, plan_market, winner_states
from backstop.model import adl
from backstop.model.adl import PRO_RATA, QUEUE_HYPERLIQUID, QUEUE_PNL_LEVERAGE, RISK_AWARE, AdlModel, Declaration, queue_key
from backstop.model.protocol import notional, pnl
from conftest import BTC, ETH, USDC, WAD
from test_insurance_vault import (  # noqa: F401  (fixtures are found by name in this module)
    BTC_PRICE, EventDecoder, VaultMirror, _abi, _address, dave, erin, fast,
)

KEEPER_ONLY = "keeper_roles: caller is not a keeper"
OWNER_ONLY = "ownable: caller is not the owner"
ENGINE_ONLY = "Clearinghouse: caller is not a waterfall engine"
NOT_FLAGGED = "AdlEngine: not flagged or round open"
NO_ROUND = "AdlEngine: no open round in this market"
BELOW_MARGIN = "MarginPool: withdrawal below initial margin"
K = 10**3  # thousands of dollars, in collateral units below as K * USDC


def usd(dollars):
    return dollars * USDC


def btc(amount):
    return int(Fraction(amount) * WAD)


def extra_accounts(count):
    """Traders beyond ape's ten test accounts: deterministic keys, funded by the owner through
    `deposit_for`, trading through signed orders (they never send a transaction themselves)."""
    found = []
    for i in range(count):
        key = keccak(text=f"backstop adl trader {i}")
        account = EthAccount.from_key(key)
        found.append(SimpleNamespace(address=account.address, private_key="0x" + key.hex()))
    return found


EXTRAS = extra_accounts(16)


# ---------------------------------------------------------------- the mirror with the ADL engine

class AdlMirror(VaultMirror):
    """`VaultMirror` plus the AdlEngine: rounds opened and executed on both sides, the engine's
    state compared after every action, and each engine transaction's events checked."""

    def __init__(self, chain, fast, protocol, config, owner, keeper, signer, fund, expiry, people):
        self.adl_model = None
        self.watched = set()  # bankrupt accounts whose rounds are compared
        super().__init__(chain, fast, protocol, config, owner, keeper, signer, fund, expiry, people)
        self.decoder = EventDecoder([
            protocol.token, protocol.oracle, protocol.pool, protocol.clearinghouse, protocol.liquidation, protocol.vault, protocol.adl_engine,
        ])
        self.engine_address = protocol.adl_engine.address
        self.adl_model = AdlModel(self.model, config.adl_round_duration)
        for extra in people:
            if hasattr(extra, "private_key"):
                signer.keys[extra.address] = extra.private_key
        self.compare()

    # ------------------------------------------------------------ exchange actions

    def fund_for(self, account, amount):
        """The owner deposits `amount` for `account` (an extra trader without gas)."""
        c = self.c
        self.send(self.owner, c.token.mint.call(self.owner.address, amount))
        self.send(self.owner, c.token.approve.call(c.pool.address, amount))
        self.send(self.owner, c.pool.deposit_for.call(account.address, amount))
        self.model.deposit_for(self.owner.address, account.address, amount)
        self.compare()

    def withdraw(self, account, amount):
        tx = self.send(account, self.c.pool.withdraw.call(amount))
        self.model.withdraw(account.address, amount, tx.timestamp)
        self.compare()
        return tx

    # ------------------------------------------------------------ engine actions

    def set_policy(self, market, policy):
        tx = self.send(self.owner, self.c.adl_engine.set_policy.call(market, policy))
        self.adl_model.set_policy(market, policy)
        event = tx.one("UpdatePolicy")
        assert (event.market, event.policy) == (market, policy)
        self.compare()
        return tx

    def open_round(self, account):
        address = _address(account)
        self.watched.add(address)
        before = self._marks()
        tx = self.send(self.keeper, self.c.adl_engine.open_round.call(address))
        self.adl_model.open_round(address, tx.timestamp)
        self._check_events(tx, address, before, opened=True)
        self.compare()
        return tx

    def execute(self, account, market, winners, declaration=Declaration()):
        address = _address(account)
        before = self._marks()
        call = self.c.adl_engine.execute.call(address, market, [_address(w) for w in winners], declaration.as_tuple())
        tx = self.send(self.keeper, call)
        self.adl_model.execute(address, market, [_address(w) for w in winners], declaration, tx.timestamp)
        self._check_events(tx, address, before)
        self.compare()
        return tx

    def finish_round(self, account, sender):
        """Anyone ends a round past its deadline (the fallback)."""
        address = _address(account)
        before = self._marks()
        tx = self.send(sender, self.c.adl_engine.finish_round.call(address))
        self.adl_model.finish_round(address, tx.timestamp)
        self._check_events(tx, address, before)
        self.compare()
        return tx

    def wait_past(self, deadline):
        """Moves the chain's clock one second past `deadline`."""
        self.wait(max(deadline - self.now() + 1, 0))

    def plan(self, account, market, batch_size=250, accounts=None):
        """The planner's batches for `account`'s open round in `market`, from the model's book."""
        to_resolve = MarketToResolve.on_model(self.adl_model, _address(account), market)
        book = winner_states(self.model, _address(account), market, self.now(), accounts)
        return plan_market(to_resolve, book, batch_size)

    def resolve(self, account, batch_size=250):
        """Opens `account`'s round and executes the planner's batches market by market; returns
        the transactions. A market whose book cannot cover its part stays open, for the caller to
        end at the round's deadline."""
        txs = [self.open_round(account)]
        address = _address(account)
        for market in self.markets:
            if self.adl_model.round(address).markets_left & (1 << market) == 0:
                continue
            for batch in self.plan(account, market, batch_size):
                txs.append(self.execute(account, market, batch.winners, batch.declaration))
        return txs

    def engine_call(self, name, *args):
        return getattr(self.c.adl_engine, name).call(*args)

    def ranking_call(self, name, *args):
        """A view of the AdlRanking contract (ranking keys, indicator, vault capacity)."""
        return getattr(self.c.adl_ranking, name).call(*args)

    @contextmanager
    def trial(self):
        """Runs what the block does on both sides, then puts chain and model back as they were."""
        checkpoint = self.checkpoint()
        try:
            yield self
        finally:
            self.rollback(checkpoint)
            self.compare()

    # ------------------------------------------------------------ events

    def _marks(self):
        engine = self.adl_model
        return (
            len(engine.hits), len(engine.skips), len(engine.absorptions), len(engine.closed_rounds), len(engine.volunteer_takes),
            {a: r.markets_left for a, r in engine.rounds.items()},
        )

    def _check_events(self, tx, account, before, opened=False):
        """The engine's events in `tx` are exactly those the model's transaction implies."""
        engine, vault = self.adl_model, self.vault_address
        hits, skips, absorptions, closed, volunteer_takes, rounds_before = before
        at = self.engine_address
        got_hits = [(e.account, e.winner, e.market, e.size_closed, e.price, e.haircut) for e in tx.all("AdlHit", at)]
        assert got_hits == [tuple(vars(h).values()) for h in engine.hits[hits:]]
        got_skips = [(e.account, e.winner, e.market, e.reason) for e in tx.all("AdlSkipped", at)]
        assert got_skips == [tuple(vars(skip).values()) for skip in engine.skips[skips:]]
        got_absorbed = [(e.account, e.vault, e.market, e.size) for e in tx.all("VaultAbsorption", at)]
        assert got_absorbed == [(a, vault, m, size) for a, m, size in engine.absorptions[absorptions:]]
        got_takes = [(e.account, e.market, e.size, e.premium, e.size_left, e.deficit) for e in tx.all("AdlVolunteerTakes", at)]
        assert got_takes == engine.volunteer_takes[volunteer_takes:]
        if opened:
            event = tx.one("AdlRoundOpened", at)
            deficit = engine.rounds[account].deficit if account in engine.rounds else engine.closed_rounds[-1].deficit
            assert (event.account, event.deficit, event.markets) == (account, deficit, self.model_open_mask(account, tx))
            # A round's own time follows its volunteer auction (tests/test_auction.py), if the step is on.
            assert event.deadline == tx.timestamp + self.model.liquidation.volunteer_window() + engine.round_duration
        else:
            assert not tx.all("AdlRoundOpened", at)
        # One AdlMarketResolved per market the transaction resolved.
        mask_before = rounds_before.get(account, 0)
        if opened:
            mask_before = self.model_open_mask(account, tx)
        mask_after = engine.round(account).markets_left
        resolved = [m for m in range(16) if mask_before & (1 << m) and not mask_after & (1 << m)]
        got_resolved = [
            (e.account, e.market, e.policy, e.deficit_share, e.size_absorbed, e.size_closed, e.notional_closed)
            for e in tx.all("AdlMarketResolved", at)
        ]
        expected_resolved = []
        for m in resolved:
            state = engine.market_round(account, m)
            expected_resolved.append(
                (account, m, state.policy, state.deficit_share, state.size_absorbed, state.size_closed, notional(state.size_closed, state.price))
            )
        assert got_resolved == expected_resolved
        got_closed = [
            (e.account, e.deficit, e.haircuts, e.notional_closed, e.notional_absorbed, e.residual, e.socialised, e.fallback)
            for e in tx.all("AdlRoundClosed", at)
        ]
        assert got_closed == [
            (r.account, r.deficit, r.haircuts, r.notional_closed, r.notional_absorbed, r.residual, r.socialised, r.fallback)
            for r in engine.closed_rounds[closed:]
        ]

    def model_open_mask(self, account, tx):
        """The markets the account had when its round opened (the model's market rounds of it)."""
        return sum(1 << m for (a, m), state in self.adl_model.market_rounds.items() if a == account and state.bankrupt_size != 0)

    # ------------------------------------------------------------ the comparison

    def compare(self):
        super().compare()
        if getattr(self, "adl_model", None) is None:
            return
        engine, model, c = self.adl_model, self.model, self.c
        people = [person.address for person in self.people]
        sides = [(m, side) for m in self.markets for side in (0, 1)]
        calls = [c.clearinghouse.adl_engine.call(), c.adl_engine.round_duration.call()]
        calls += [c.clearinghouse.adl_exposure.call(m, side) for m, side in sides]
        calls += [c.clearinghouse.loss_index.call(m, side) for m, side in sides]
        calls += [c.adl_engine.policy.call(m) for m in self.markets]
        calls += [c.clearinghouse.in_adl_round.call(a) for a in people]
        watched = sorted(self.watched)
        calls += [c.adl_engine.rounds.call(a) for a in watched]
        calls += [c.adl_engine.market_rounds.call(a, m) for a in watched for m in self.markets]
        got = iter(self.fast.read(calls))
        assert next(got) == self.engine_address
        assert next(got) == engine.round_duration
        assert [next(got) for _ in sides] == [model.adl_exposure.get(key, 0) for key in sides], "ADL exposure"
        assert [next(got) for _ in sides] == [model.loss_index.get(key, 0) for key in sides], "loss index"
        assert [next(got) for _ in self.markets] == [engine.policy.get(m, 0) for m in self.markets], "policies"
        assert [next(got) for _ in people] == [model.in_adl_round.get(a, False) for a in people], "in_adl_round"
        for account in watched:
            assert next(got) == tuple(vars(engine.round(account)).values()), f"round of {account}"
        for account in watched:
            for market in self.markets:
                assert next(got) == tuple(vars(engine.market_round(account, market)).values()), f"market round of {account} in {market}"


def _checksum(address):
    return to_checksum_address(address)


# ---------------------------------------------------------------- fixtures

@pytest.fixture
def mirror(chain, fast, protocol, config, owner, keeper, signer, fund, expiry, alice, bob, carol, dave, erin, liquidator, stranger):
    return AdlMirror(
        chain, fast, protocol, config, owner, keeper, signer, fund, expiry,
        [alice, bob, carol, dave, erin, liquidator, stranger, protocol.vault, *EXTRAS],
    )


@pytest.fixture(autouse=True)
def protocol_invariants(request, accounts):
    """After each test: open interest long == short == Σ positions (the extra traders counted), the
    pool holds its books, Σ account values never exceeds them."""
    yield
    if "protocol" not in request.fixturenames:
        return
    protocol, fast = request.getfixturevalue("protocol"), request.getfixturevalue("fast")
    ch, pool = (fast.contract(c.address, _abi(c)) for c in (protocol.clearinghouse, protocol.pool))
    people = [account.address for account in accounts[:10]] + [protocol.vault.address] + [e.address for e in EXTRAS]
    markets = range(fast.read([ch.market_count.call()])[0])
    calls = [pool.total_held.call(), pool.total_deposited.call(), pool.total_withdrawn.call()]
    calls += [ch.account_value.call(person) for person in people]
    for market in markets:
        calls += [ch.long_open_interest.call(market), ch.short_open_interest.call(market)]
        calls += [ch.positions.call(person, market) for person in people]
    got = iter(fast.read(calls))
    held, deposited, withdrawn = next(got), next(got), next(got)
    assert held == deposited - withdrawn
    assert sum(next(got) for _ in people) <= held
    for market in markets:
        long_side, short_side = next(got), next(got)
        sizes = [next(got)[0] for _ in people]
        assert long_side == short_side == sum(x for x in sizes if x > 0) == -sum(x for x in sizes if x < 0)


def common_book(mirror, alice, bob, carol, dave, erin, stranger, alice_collateral=usd(12 * K), erin_short=btc("0.6")):
    """The book of the module docstring, BTC left at 86k (erin's collateral is 10k per BTC short)."""
    mirror.fund(alice, alice_collateral)
    mirror.fund(bob, usd(8 * K))
    mirror.fund(carol, usd(20 * K))
    mirror.fund(erin, erin_short * usd(10 * K) // WAD)
    mirror.fund(dave, usd(100 * K))
    mirror.trade((alice, bob, BTC, btc("0.5"), BTC_PRICE), (alice, carol, BTC, btc("0.5"), BTC_PRICE), sender=stranger)
    mirror.walk_mark(BTC, 90 * K * WAD)
    mirror.trade((dave, erin, BTC, erin_short, 90 * K * WAD), sender=stranger)
    mirror.walk_mark(BTC, 86 * K * WAD)
    assert mirror.model.account_value(alice.address, mirror.now()) == alice_collateral - usd(14 * K)


def refuse_and_flag(mirror, account, stranger):
    """The backstop is refused (the vault cannot take the account) and the account is flagged."""
    tx, refusal = mirror.backstop(stranger, account)
    assert refusal != "" and mirror.model.bankrupt[account.address]
    return refusal


@pytest.fixture
def bankrupt_alice(mirror, alice, bob, carol, dave, erin, stranger):
    """The common book with alice flagged: the empty vault refuses her ("vault equity exhausted")."""
    common_book(mirror, alice, bob, carol, dave, erin, stranger)
    assert refuse_and_flag(mirror, alice, stranger) == "vault equity exhausted"
    return mirror


def value(mirror, who):
    return mirror.model.account_value(_address(who), mirror.now())


def balance(mirror, who):
    return mirror.model.balance(_address(who))


def size(mirror, who, market=BTC):
    return mirror.model.position(_address(who), market).size


# ---------------------------------------------------------------- queue, BitMEX: PnL% x leverage

def test_execute__bitmex_queue_closes_the_top_short_fully_and_the_next_partly(bankrupt_alice, alice, bob, carol, erin):
    mirror = bankrupt_alice
    # Keys (PnL% x leverage at 86k): bob 0.14 x 2.8667 = 0.4013; erin 0.0444 x 6.1429 = 0.2730;
    # carol 0.14 x 1.5926 = 0.2230. bob beats erin on PnL% despite lower leverage, erin beats carol
    # on leverage despite lower PnL%.
    keys = list(mirror.read(mirror.ranking_call("ranking_keys", BTC, False, [bob.address, carol.address, erin.address, alice.address])))
    assert keys == [
        queue_key(QUEUE_PNL_LEVERAGE, -btc("0.5"), BTC_PRICE, 86 * K * WAD, usd(15 * K)),
        queue_key(QUEUE_PNL_LEVERAGE, -btc("0.5"), BTC_PRICE, 86 * K * WAD, usd(27 * K)),
        queue_key(QUEUE_PNL_LEVERAGE, -btc("0.6"), 90 * K * WAD, 86 * K * WAD, usd(8_400)),
        0,  # alice: bankrupt, and on the other side
    ]
    assert keys[0] // 10**14 == 4013 and keys[2] // 10**14 == 2730 and keys[1] // 10**14 == 2229
    assert keys[0] > keys[2] > keys[1]

    tx = mirror.open_round(alice)
    opened = tx.one("AdlRoundOpened")
    assert (opened.account, opened.deficit, opened.markets) == (alice.address, usd(2 * K), 1 << BTC)
    assert not tx.all("VaultAbsorption") and not tx.all("AdlHit")  # a queue: the vault takes nothing
    assert mirror.read(mirror.c.clearinghouse.adl_exposure.call(BTC, 1)) == 1  # the shorts can be charged
    [batch] = mirror.plan(alice, BTC)
    assert batch.winners == [bob.address, erin.address]  # carol is not needed

    tx = mirror.execute(alice, BTC, batch.winners)

    # bob closes all 0.5, erin 0.5 of her 0.6, at 86k; each pays 0.5 x (88k - 86k) = 1,000.
    hits = [(e.winner, e.size_closed, e.price, e.haircut) for e in tx.all("AdlHit")]
    assert hits == [(bob.address, btc("0.5"), 86 * K * WAD, usd(1_000)), (erin.address, btc("0.5"), 86 * K * WAD, usd(1_000))]
    resolved = tx.one("AdlMarketResolved")
    assert (resolved.market, resolved.policy, resolved.deficit_share, resolved.size_absorbed, resolved.size_closed, resolved.notional_closed) == (
        BTC, QUEUE_PNL_LEVERAGE, usd(2 * K), 0, WAD, usd(86 * K)
    )
    closed = tx.one("AdlRoundClosed")
    assert (closed.deficit, closed.haircuts, closed.notional_closed, closed.notional_absorbed, closed.residual) == (
        usd(2 * K), usd(2 * K), usd(86 * K), 0, 0
    )
    # As if bob bought back at alice's bankruptcy price, 88k: 8k + 0.5 x (100k - 88k). erin's
    # haircut came out of her whole 0.6 (her entry price fell from 90k to 88,333.33), then 0.5 closed
    # at 86k: 6k + 0.5 x (88,333.33 - 86k), and her last 0.1 is still 233.33 in profit.
    assert (size(mirror, bob), balance(mirror, bob)) == (0, usd(8 * K) + usd(6 * K))
    assert (size(mirror, erin), balance(mirror, erin)) == (-btc("0.1"), usd(6 * K) + 1_166_666_666)
    assert value(mirror, erin) == usd(7_400) - 1  # 8,400 less the 1,000 haircut, the entry shift rounded against her
    assert (size(mirror, carol), balance(mirror, carol), value(mirror, carol)) == (-btc("0.5"), usd(20 * K), usd(27 * K))
    assert (size(mirror, alice), balance(mirror, alice), value(mirror, alice)) == (0, 0, 0)
    assert not mirror.model.bankrupt[alice.address]
    assert mirror.read(mirror.c.clearinghouse.adl_exposure.call(BTC, 1)) == 0  # the shorts are free again
    assert mirror.read(mirror.engine_call("rounds", alice.address)) == (0,) * 9  # Round: 7 fields, the auction end, the opening time


def test_execute__bitmex_queue_stops_once_size_and_deficit_are_matched(bankrupt_alice, alice, bob, carol, erin):
    """A winner after the one that resolved the market is skipped: the market is done, the round closes."""
    mirror = bankrupt_alice
    mirror.open_round(alice)
    tx = mirror.execute(alice, BTC, [bob, erin, carol])
    assert [e.winner for e in tx.all("AdlHit")] == [bob.address, erin.address]
    assert [(e.winner, e.reason) for e in tx.all("AdlSkipped")] == [(carol.address, adl.SKIP_RESOLVED)]
    assert tx.one("AdlRoundClosed").haircuts == usd(2 * K)
    assert size(mirror, carol) == -btc("0.5")


# ---------------------------------------------------------------- queue, Hyperliquid: (mark/entry) x leverage

def test_execute__hyperliquid_queue_puts_the_levered_late_short_first(bankrupt_alice, alice, bob, carol, erin):
    mirror = bankrupt_alice
    mirror.set_policy(BTC, QUEUE_HYPERLIQUID)
    # Keys (entry/mark x leverage): erin 90/86 x 6.1429 = 6.4286; bob 100/86 x 2.8667 = 3.3333;
    # carol 100/86 x 1.5926 = 1.8519. The BitMEX queue ranked bob first: PnL% weighs 14% against
    # erin's 4.4%, while here the price ratio (1.163 against 1.047) barely counts.
    keys = list(mirror.read(mirror.ranking_call("ranking_keys", BTC, False, [bob.address, carol.address, erin.address])))
    assert [k // 10**14 for k in keys] == [33333, 18518, 64285]
    mirror.open_round(alice)
    [batch] = mirror.plan(alice, BTC)
    assert batch.winners == [erin.address, bob.address]
    # The BitMEX order is out of order here: bob, listed first, ranks below erin and is skipped.
    with mirror.trial():
        tx = mirror.execute(alice, BTC, [bob, erin])
        assert [(e.winner, e.reason) for e in tx.all("AdlSkipped")] == [(bob.address, adl.SKIP_ORDER)]
        assert [e.winner for e in tx.all("AdlHit")] == [erin.address]

    tx = mirror.execute(alice, BTC, batch.winners)

    # erin closes all 0.6 (haircut 0.6 x 2,000 = 1,200), bob 0.4 of his 0.5 (800).
    hits = [(e.winner, e.size_closed, e.haircut) for e in tx.all("AdlHit")]
    assert hits == [(erin.address, btc("0.6"), usd(1_200)), (bob.address, btc("0.4"), usd(800))]
    closed = tx.one("AdlRoundClosed")
    assert (closed.deficit, closed.haircuts, closed.notional_closed, closed.residual) == (usd(2 * K), usd(2 * K), usd(86 * K), 0)
    assert (size(mirror, erin), balance(mirror, erin)) == (0, usd(6 * K) + usd(1_200))  # 6k + 0.6 x (90k - 88k)
    # bob's 800 came out of his whole 0.5 (entry 100k -> 98.4k), then 0.4 closed at 86k: 0.4 x 12.4k.
    assert (size(mirror, bob), balance(mirror, bob)) == (-btc("0.1"), usd(8 * K) + usd(4_960))
    assert value(mirror, bob) == usd(15 * K) - usd(800)
    assert value(mirror, carol) == usd(27 * K) and value(mirror, alice) == 0


# ---------------------------------------------------------------- pro-rata

def test_execute__pro_rata_splits_an_odd_deficit_exactly_after_the_vault_absorbs(mirror, alice, bob, carol, dave, erin, stranger):
    # alice one unit short of 12k: D = 2,000.000001. The vault (50k of dave's) may hold 1/3 BTC.
    common_book(mirror, alice, bob, carol, dave, erin, stranger, alice_collateral=usd(12 * K) - 1)
    mirror.deposit(dave, usd(50 * K))
    mirror.set_risk_limits(5 * WAD, usd(1_000), usd(5_000 * K))  # a 2k loss is above its allowance
    mirror.set_max_position(BTC, WAD // 3)
    assert refuse_and_flag(mirror, alice, stranger) == "loss above the vault's allowance"
    mirror.set_policy(BTC, PRO_RATA)

    tx = mirror.open_round(alice)

    # The vault absorbs what its position limit allows, 1/3 BTC at 86k (no value moves).
    absorbed = tx.one("VaultAbsorption")
    assert (absorbed.vault, absorbed.size, absorbed.price) == (mirror.vault_address, WAD // 3, 86 * K * WAD)
    assert tx.one("AdlRoundOpened").deficit == 2_000_000_001
    assert size(mirror, mirror.vault_address) == WAD // 3
    [batch] = mirror.plan(alice, BTC)
    # Address order: bob 0x15d3.., carol 0x9965.., erin 0xa0ee..; weights: profits 7k + 7k + 2.4k
    # = 16.4k and sizes 0.5 + 0.5 + 0.6 = 1.6.
    assert batch.winners == [bob.address, carol.address, erin.address]
    assert batch.declaration == Declaration(0, 0, usd(16_400), btc("1.6"))

    tx = mirror.execute(alice, BTC, batch.winners, batch.declaration)

    # Haircuts: 2,000.000001 x 7/16.4 = 853.658537.01 -> 853.658537 (floor), the same for carol out
    # of 9.4k left, erin the remainder 292.682927 (292.682926.98 pro rata): Σ = D to the unit.
    # Closes: 2/3 BTC + 1 unit left, x 0.5/1.6 = 0.2083.. for bob and carol, erin the rest.
    hits = [(e.winner, e.size_closed, e.haircut) for e in tx.all("AdlHit")]
    assert hits == [
        (bob.address, 208_333_333_333_333_333, 853_658_537),
        (carol.address, 208_333_333_333_333_333, 853_658_537),
        (erin.address, 250_000_000_000_000_001, 292_682_927),
    ]
    assert sum(h[2] for h in hits) == 2_000_000_001
    for winner, profit in ((bob, 7_000), (carol, 7_000), (erin, 2_400)):
        haircut = next(h[2] for h in hits if h[0] == winner.address)
        assert abs(Fraction(haircut) - Fraction(2_000_000_001 * profit, 16_400)) < 1  # proportional to profit
    resolved = tx.one("AdlMarketResolved")
    assert (resolved.size_absorbed, resolved.size_closed, resolved.deficit_share) == (WAD // 3, WAD - WAD // 3, 2_000_000_001)
    closed = tx.one("AdlRoundClosed")
    # alice realised her loss in two parts, each rounded down: one unit of dust, spread over the
    # shorts still open (never charged to the vault).
    assert (closed.deficit, closed.haircuts, closed.notional_closed, closed.notional_absorbed, closed.residual, closed.socialised) == (
        2_000_000_001, 2_000_000_001, 57_333_333_333, 28_666_666_666, 0, 1
    )
    assert (size(mirror, alice), balance(mirror, alice)) == (0, 0)
    assert balance(mirror, mirror.vault_address) == usd(50 * K)


# ---------------------------------------------------------------- risk-aware

def test_execute__risk_aware_spares_the_hedged_market_maker(mirror, alice, bob, carol, dave, erin, stranger):
    # alice long 1 BTC at 100k on 12k: 0.6 from bob (10k, naked), 0.4 from carol (20k), a market
    # maker who is also long 10.75 ETH at 4,000 (43k, bought from dave). BTC at 86k: D = 2,000.
    mirror.fund(alice, usd(12 * K))
    mirror.fund(bob, usd(10 * K))
    mirror.fund(carol, usd(20 * K))
    mirror.fund(dave, usd(100 * K))
    mirror.trade((alice, bob, BTC, btc("0.6"), BTC_PRICE), (alice, carol, BTC, btc("0.4"), BTC_PRICE), sender=stranger)
    mirror.trade((carol, dave, ETH, btc("10.75"), 4 * K * WAD), sender=stranger)
    mirror.walk_mark(BTC, 86 * K * WAD)
    mirror.deposit(dave, usd(50 * K))
    mirror.set_risk_limits(5 * WAD, usd(1_000), usd(5_000 * K))
    mirror.set_max_position(BTC, WAD // 2)
    assert refuse_and_flag(mirror, alice, stranger) == "loss above the vault's allowance"
    mirror.set_policy(BTC, RISK_AWARE)
    # Net (one-factor) leverage: bob 51.6k / 18.4k = 2.80; carol (-34.4k BTC + 43k ETH) 8.6k / 25.6k
    # = 0.34, and net long: closing her short would raise her exposure.
    keys = mirror.read(mirror.ranking_call("ranking_keys", BTC, False, [bob.address, carol.address]))
    assert [k // 10**15 for k in keys] == [2804, 335]

    tx = mirror.open_round(alice)

    # The vault absorbs first: 0.5 BTC, its position limit.
    assert tx.one("VaultAbsorption").size == WAD // 2
    [batch] = mirror.plan(alice, BTC)
    assert batch.winners == [bob.address, carol.address]
    # Haircut level 12.72x: above both leverages, each pays profit x leverage / level; close level
    # 0.467x: bob's exposure drained from 51.6k to 0.467 x 18.4k = 8.6k, i.e. 0.5 BTC; carol's weight 0.
    level, close_level, haircut_weight, close_weight = batch.declaration.as_tuple()
    assert (level // 10**16, close_level // 10**15, haircut_weight, close_weight) == (1271, 467, usd(2 * K), WAD // 2)

    tx = mirror.execute(alice, BTC, batch.winners, batch.declaration)

    hits = [(e.winner, e.size_closed, e.haircut) for e in tx.all("AdlHit")]
    # bob 8,400 x 2.8043 / 12.7189 = 1,852.09; carol 5,600 x 0.3359 / 12.7189 = 147.91 (pro rata
    # by profit she would pay 800 and close 0.2 BTC).
    assert hits == [(bob.address, WAD // 2, 1_852_090_033), (carol.address, 0, 147_909_967)]
    closed = tx.one("AdlRoundClosed")
    assert (closed.deficit, closed.haircuts, closed.notional_closed, closed.notional_absorbed, closed.residual) == (
        usd(2 * K), usd(2 * K), usd(43 * K), usd(43 * K), 0
    )
    assert size(mirror, carol) == -btc("0.4") and size(mirror, carol, ETH) == btc("10.75")  # her hedge intact
    assert size(mirror, bob) == -btc("0.1")
    assert (size(mirror, mirror.vault_address), value(mirror, mirror.vault_address)) == (WAD // 2, usd(50 * K))


# ---------------------------------------------------------------- rounds over several transactions

def test_execute__round_over_three_transactions_holds_only_the_winners_side(
    mirror, alice, bob, carol, dave, erin, liquidator, stranger
):
    common_book(mirror, alice, bob, carol, dave, erin, stranger)
    mirror.fund(liquidator, usd(100 * K))  # no position: nothing a round can charge
    refuse_and_flag(mirror, alice, stranger)
    mirror.set_policy(BTC, PRO_RATA)
    bob_withdraws = mirror.c.pool.withdraw.call(usd(1))
    assert mirror.read(mirror.c.clearinghouse.withdrawable.call(bob.address)) >= usd(1)

    mirror.open_round(alice)
    batches = mirror.plan(alice, BTC, batch_size=1)
    # Each call declares the weights of its own winners and every later one.
    assert [(b.winners, b.declaration.haircut_weight, b.declaration.close_weight) for b in batches] == [
        ([bob.address], usd(16_400), btc("1.6")),
        ([carol.address], usd(9_400), btc("1.1")),
        ([erin.address], usd(2_400), btc("0.6")),
    ]
    haircuts = 0
    for batch in batches:
        # While the round is open the shorts of BTC wait (bob even once he has paid: the round
        # can still charge his side), a bystander without positions and dave (a long) withdraw.
        assert mirror.read(mirror.c.clearinghouse.withdrawable.call(bob.address)) == 0
        mirror.reverts(BELOW_MARGIN, bob, bob_withdraws, lambda now: mirror.model.withdraw(bob.address, usd(1), now))
        mirror.withdraw(liquidator, usd(1))
        mirror.withdraw(dave, usd(1))
        tx = mirror.execute(alice, BTC, batch.winners, batch.declaration)
        haircuts += tx.one("AdlHit").haircut
        assert mirror.read(mirror.engine_call("rounds", alice.address))[1] == (haircuts if batch is not batches[-1] else 0)
    # D = 2,000 by profit 7 : 7 : 2.4 -> 853.658536, 853.658537 (of 1,146.341464 left x 7/9.4), 292.682927.
    assert haircuts == usd(2 * K)
    assert [h.haircut for h in mirror.adl_model.closed_rounds[-1].hits] == [853_658_536, 853_658_537, 292_682_927]
    assert mirror.read(mirror.c.clearinghouse.withdrawable.call(bob.address)) >= usd(1)
    mirror.withdraw(liquidator, usd(1_000))
    mirror.withdraw(bob, usd(1_000))


def test_execute__order_is_checked_within_a_call_not_across_calls(bankrupt_alice, alice, bob, carol, erin):
    """Each call's winners must follow the policy as they rank when it runs; a later call may
    still charge a winner that ranks above an earlier one (a book moves between calls, and a
    winner the keeper missed must still be reachable). Completeness is audited with AdlRanking."""
    mirror = bankrupt_alice
    mirror.open_round(alice)
    mirror.execute(alice, BTC, [erin])  # erin 0.6, 1,200
    tx = mirror.execute(alice, BTC, [bob])  # bob (key 0.401) after erin (0.273): 0.4 and 800
    assert (tx.one("AdlHit").winner, tx.one("AdlHit").size_closed, tx.one("AdlHit").haircut) == (bob.address, btc("0.4"), usd(800))
    assert tx.one("AdlRoundClosed").haircuts == usd(2 * K)


# ---------------------------------------------------------------- the vault's own account

def vault_in_deficit(mirror, alice, bob, dave, stranger):
    """dave's 10k in the vault; alice long 0.5 BTC at 100k on 6k against bob (100k); at 91k the
    vault takes her over, at 65k the vault is worth -1.5k. Returns the vault."""
    mirror.deposit(dave, usd(10 * K))
    mirror.fund(alice, usd(6 * K))
    mirror.fund(bob, usd(100 * K))
    mirror.trade((alice, bob, BTC, WAD // 2, BTC_PRICE), sender=stranger)
    mirror.walk_mark(BTC, 91 * K * WAD)
    assert mirror.backstop(stranger, alice)[1] == ""
    mirror.walk_mark(BTC, 65 * K * WAD)
    return mirror.protocol.vault

def test_open_round__bankrupt_vault_is_resolved_by_the_winners(mirror, alice, bob, dave, erin, stranger):
    # dave's 10k in the vault; alice long 0.5 BTC at 100k on 6k against bob; at 91k the vault takes
    # her over (worth 1.5k: the vault holds 11.5k and the long). At 65k the long has lost 13k: the
    # vault is worth -1.5k and is flagged.
    vault = vault_in_deficit(mirror, alice, bob, dave, stranger)
    assert value(mirror, vault) == -usd(1_500)
    tx, deficit = mirror.flag_bankruptcy(vault, sender=stranger)
    assert deficit == usd(1_500)
    mirror.set_policy(BTC, PRO_RATA)

    tx = mirror.open_round(vault)

    assert not tx.all("VaultAbsorption")  # the vault absorbs nothing from itself
    assert tx.one("AdlRoundOpened").deficit == usd(1_500)
    [batch] = mirror.plan(vault, BTC)
    assert batch.winners == [bob.address]
    tx = mirror.execute(vault, BTC, batch.winners, batch.declaration)
    # bob closes the 0.5 at 65k and pays the 1.5k; the vault ends flat at exactly zero.
    hit = tx.one("AdlHit")
    assert (hit.account, hit.winner, hit.size_closed, hit.price, hit.haircut) == (mirror.vault_address, bob.address, WAD // 2, 65 * K * WAD, usd(1_500))
    closed = tx.one("AdlRoundClosed")
    assert (closed.deficit, closed.haircuts, closed.residual) == (usd(1_500), usd(1_500), 0)
    assert (size(mirror, vault), balance(mirror, vault), value(mirror, vault)) == (0, 0, 0)
    assert not mirror.model.bankrupt[mirror.vault_address]
    assert balance(mirror, bob) == usd(100 * K) + usd(17_500) - usd(1_500)  # 0.5 x (100k - 65k) less the haircut
    # The vault takes deposits again (its shares are worth nothing: dave's 10k are lost).
    assert mirror.read_as(erin, mirror.c.vault.maxDeposit.call(erin.address)) > 0  # as erin: max* answer for the caller
    mirror.deposit(erin, usd(1_000))


# ---------------------------------------------------------------- views: ranking and indicator

TEN = EXTRAS[:10]
# Collateral of each short as a multiple of its initial margin: leverages from 3.5x to 9.5x.
MARGIN_MULTIPLES = (Fraction(12, 10), Fraction(25, 10), Fraction(11, 10), Fraction(3), Fraction(17, 10),
                    Fraction(13, 10), Fraction(22, 10), Fraction(105, 100), Fraction(28, 10), Fraction(15, 10))


@pytest.fixture
def ten_winners(mirror, alice, dave, stranger):
    """alice long 5.5 BTC on 70k against ten shorts: short k sells (k + 1)/10 BTC, at 100k for even
    k and at 95k for odd k, on its margin multiple above; BTC then at 80k: alice is worth
    70k - 2.5 x 20k - 3 x 15k = -25k, flagged (empty vault). Every short is a winner: PnL% 20% or
    15.8%, leverages all different."""
    mirror.fund(alice, usd(70 * K))
    mirror.fund(dave, usd(100 * K))
    for k, short in enumerate(TEN):
        price = 100 * K if k % 2 == 0 else 95 * K
        mirror.fund_for(short, int((k + 1) * price * 10**5 // 10 * MARGIN_MULTIPLES[k]))  # (k+1)/10 x price x 10%
    mirror.trade(*[(alice, s, BTC, btc(Fraction(k + 1, 10)), BTC_PRICE) for k, s in enumerate(TEN) if k % 2 == 0], sender=stranger)
    mirror.walk_mark(BTC, 95 * K * WAD)
    mirror.trade(*[(alice, s, BTC, btc(Fraction(k + 1, 10)), 95 * K * WAD) for k, s in enumerate(TEN) if k % 2 == 1], sender=stranger)
    mirror.walk_mark(BTC, 80 * K * WAD)
    # At 80k dave buys 0.1 from the last extra: a long (the wrong side) and a short without profit.
    mirror.fund_for(EXTRAS[-1], usd(10 * K))
    mirror.trade((dave, EXTRAS[-1], BTC, btc("0.1"), 80 * K * WAD), sender=stranger)
    # (-25k less one unit: her blended entry, 97,727.27.., is rounded up, against her)
    assert value(mirror, alice) == -usd(25 * K) - 1
    refuse_and_flag(mirror, alice, stranger)
    return mirror


def canonical_order(mirror, accounts, policy):
    """The order `ranking_keys` defines: key descending, then address ascending; non-winners out."""
    mirror.set_policy(BTC, policy)
    keys = mirror.read(mirror.ranking_call("ranking_keys", BTC, False, accounts))
    assert list(keys) == mirror.adl_model.ranking_keys(BTC, False, accounts, mirror.now())
    return [a for k, a in sorted(zip(keys, accounts), key=lambda x: (-x[0], int(x[1], 16))) if k > 0]


@pytest.mark.parametrize("policy", [QUEUE_PNL_LEVERAGE, QUEUE_HYPERLIQUID, RISK_AWARE], ids=adl.POLICY_NAMES.get)
def test_ranking_keys__order_is_the_planners_and_the_engine_accepts_it(ten_winners, alice, dave, policy):
    mirror = ten_winners
    universe = [s.address for s in TEN] + [alice.address, dave.address, EXTRAS[-1].address]
    order = canonical_order(mirror, universe, policy)
    assert len(order) == 10  # alice (bankrupt, long), dave (long) and the last extra (no profit) rank 0
    mirror.open_round(alice)
    batches = mirror.plan(alice, BTC, batch_size=4, accounts=universe)
    assert [w for b in batches for w in b.winners] == order  # S = every winner's size: all ten needed
    for batch in batches:
        mirror.execute(alice, BTC, batch.winners, batch.declaration)
    closed = mirror.adl_model.closed_rounds[-1]
    assert [h.winner for h in closed.hits] == order and closed.haircuts == closed.deficit == usd(25 * K) + 1


def test_ranking_keys__pro_rata_key_is_the_profit_and_the_engine_takes_addresses_in_order(ten_winners, alice):
    """Pro-rata has no queue: the view's key is each winner's profit (its haircut weight); the
    engine takes the winners by address, ascending."""
    mirror = ten_winners
    accounts = [s.address for s in TEN]
    mirror.set_policy(BTC, PRO_RATA)
    keys = list(mirror.read(mirror.ranking_call("ranking_keys", BTC, False, accounts)))
    profits = [pnl(size(mirror, s), mirror.model.position(s.address, BTC).entry_price, 80 * K * WAD) for s in TEN]
    assert keys == profits
    mirror.open_round(alice)
    [batch] = mirror.plan(alice, BTC)
    assert batch.winners == sorted(accounts, key=lambda a: int(a, 16))


def test_adl_indicator__quintiles_of_ten_winners(ten_winners, alice, dave):
    mirror = ten_winners
    universe = [s.address for s in TEN] + [alice.address, dave.address, EXTRAS[-1].address]
    for policy in (QUEUE_PNL_LEVERAGE, RISK_AWARE):
        order = canonical_order(mirror, universe, policy)
        calls = [mirror.ranking_call("adl_indicator", a, BTC, universe) for a in order + universe[10:]]
        indicators = [mirror.read(call) for call in calls]
        # Ten ranked: 5 for the first two in line, then 4, 3, 2 and 1 for the last two; 0 for a
        # bankrupt account and for a position that is not a winner.
        assert indicators == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0, 0]
        assert indicators[:10] == [mirror.adl_model.adl_indicator(a, BTC, universe, mirror.now()) for a in order]


# ---------------------------------------------------------------- bad input: a clear reason, nothing changes

def refused(mirror, reason, winners, declaration=Declaration(), account=None, market=BTC, sender=None):
    """`execute` with `winners` is refused with `reason` on chain and in the model; nothing moves."""
    account = _address(account) if account is not None else mirror.people[0].address
    addresses = [_address(w) for w in winners]
    call = mirror.engine_call("execute", account, market, addresses, declaration.as_tuple())
    model_call = lambda now: mirror.adl_model.execute(account, market, addresses, declaration, now)  # noqa: E731
    # Roles are not modelled: a role check is the contract's alone (the model must not move either).
    mirror.reverts(reason, sender or mirror.keeper, call, None if reason == KEEPER_ONLY else model_call)


def skipped(mirror, winners, expected, declaration=Declaration(), account=None, market=BTC):
    """In a trial (undone afterwards), `execute` with `winners` skips exactly `expected`
    ([(winner, reason)]), charges the others and leaves the skipped ones as they were."""
    account = account if account is not None else mirror.people[0]
    with mirror.trial():
        before = {(_address(w), m): mirror.model.position(_address(w), m) for w in winners for m in mirror.markets}
        tx = mirror.execute(account, market, winners, declaration)
        assert [(e.winner, e.reason) for e in tx.all("AdlSkipped")] == [(_address(w), reason) for w, reason in expected]
        hits = [(e.winner, e.size_closed, e.haircut) for e in tx.all("AdlHit")]
        for winner, _ in expected:
            if _address(winner) not in {w for w, *_ in hits} | {_address(account)}:
                assert all(mirror.model.position(_address(winner), m) == before[(_address(winner), m)] for m in mirror.markets)
        return hits


@pytest.fixture
def open_round(bankrupt_alice, alice):
    bankrupt_alice.open_round(alice)
    return bankrupt_alice


def test_execute__winner_out_of_policy_order_or_repeated_is_skipped(open_round, bob, carol, erin):
    # erin 0.273 before bob 0.401: erin is skipped, bob charged; the batch goes through.
    assert [w for w, *_ in skipped(open_round, [erin, bob], [(erin, adl.SKIP_ORDER)])] == [bob.address]
    # carol 0.223 before erin 0.273
    assert [w for w, *_ in skipped(open_round, [carol, erin], [(carol, adl.SKIP_ORDER)])] == [erin.address]
    # the same winner twice: only its last copy counts
    assert skipped(open_round, [bob, bob], [(bob, adl.SKIP_ORDER)]) == [(bob.address, btc("0.5"), usd(1_000))]


def test_execute__winner_on_the_same_side_or_flat_is_skipped(open_round, alice, bob, dave, stranger):
    assert skipped(open_round, [dave], [(dave, adl.SKIP_SIDE)]) == []  # long, like alice
    assert [w for w, *_ in skipped(open_round, [bob, dave], [(dave, adl.SKIP_SIDE)])] == [bob.address]
    assert skipped(open_round, [stranger], [(stranger, adl.SKIP_SIDE)]) == []  # no position at all


def test_execute__winner_not_profitable_is_skipped(bankrupt_alice, alice, bob, dave, liquidator, stranger):
    mirror = bankrupt_alice
    mirror.fund(liquidator, usd(10 * K))
    mirror.trade((dave, liquidator, BTC, btc("0.1"), 85 * K * WAD), sender=stranger)  # short at 85k: -100 at 86k
    mirror.open_round(alice)
    assert skipped(mirror, [liquidator], [(liquidator, adl.SKIP_UNPROFITABLE)]) == []
    assert [w for w, *_ in skipped(mirror, [bob, liquidator], [(liquidator, adl.SKIP_UNPROFITABLE)])] == [bob.address]


def test_execute__bankrupt_winner_is_skipped(open_round, alice, bob):
    assert skipped(open_round, [alice], [(alice, adl.SKIP_BANKRUPT)]) == []
    assert [w for w, *_ in skipped(open_round, [bob, alice], [(alice, adl.SKIP_BANKRUPT)])] == [bob.address]


def test_execute__stale_size_is_clamped(open_round, alice, bob, carol, dave, erin, stranger):
    mirror = open_round
    [batch] = mirror.plan(alice, BTC)
    assert batch.winners == [bob.address, erin.address]  # planned when erin was short 0.6
    mirror.trade((erin, dave, BTC, btc("0.2"), 86 * K * WAD), sender=stranger)  # erin buys back 0.2 before the call
    tx = mirror.execute(alice, BTC, batch.winners)
    hits = [(e.winner, e.size_closed, e.haircut) for e in tx.all("AdlHit")]
    # bob closes his 0.5, erin only the 0.4 she has left: erin 0.4 x 2,000 = 800 (her share of the
    # 1,000 left: 0.4 of 0.5). 0.1 BTC and 200 remain: the round stays open for the next in line.
    assert hits == [(bob.address, btc("0.5"), usd(1_000)), (erin.address, btc("0.4"), usd(800))]
    state = mirror.adl_model.market_round(alice.address, BTC)
    assert (state.size_left, state.deficit_left) == (btc("0.1"), usd(200))


def test_execute__a_list_that_resolves_nothing_leaves_the_round_open(open_round, alice, bob, carol, erin):
    open_round.execute(alice, BTC, [])
    open_round.execute(alice, BTC, [bob])
    assert open_round.adl_model.market_round(alice.address, BTC).deficit_left == usd(1_000)
    assert open_round.adl_model.round(alice.address).markets_left == 1 << BTC


def test_execute__a_winner_whose_weight_is_above_the_declaration_is_skipped(bankrupt_alice, alice, bob, carol, erin):
    mirror = bankrupt_alice
    mirror.set_policy(BTC, PRO_RATA)
    mirror.open_round(alice)
    [batch] = mirror.plan(alice, BTC)
    exact = batch.declaration
    assert (exact.haircut_weight, exact.close_weight) == (usd(16_400), btc("1.6"))
    # Declared one unit short: the last winner's weight is above what is left of the declaration.
    last = batch.winners[-1]
    assert [w for w, *_ in skipped(mirror, batch.winners, [(last, adl.SKIP_WEIGHT)], Declaration(0, 0, usd(16_400) - 1, btc("1.6")))] == batch.winners[:-1]
    assert [w for w, *_ in skipped(mirror, batch.winners, [(last, adl.SKIP_WEIGHT)], Declaration(0, 0, usd(16_400), btc("1.6") - 1))] == batch.winners[:-1]
    assert skipped(mirror, batch.winners, [(w, adl.SKIP_WEIGHT) for w in batch.winners], Declaration()) == []
    mirror.execute(alice, BTC, batch.winners, exact)


def test_execute__without_an_open_round_reverts(bankrupt_alice, alice, bob, erin):
    refused(bankrupt_alice, NO_ROUND, [bob, erin])  # flagged, but no round opened
    bankrupt_alice.open_round(alice)
    refused(bankrupt_alice, NO_ROUND, [bob], market=ETH)  # alice has nothing in ETH
    refused(bankrupt_alice, NO_ROUND, [alice], account=bob)  # bob is not bankrupt


def test_open_round__solvent_unflagged_or_open_account_reverts(bankrupt_alice, alice, bob):
    mirror = bankrupt_alice
    open_call = lambda who: mirror.engine_call("open_round", _address(who))  # noqa: E731
    model_open = lambda who: (lambda now: mirror.adl_model.open_round(_address(who), now))  # noqa: E731
    mirror.reverts(NOT_FLAGGED, mirror.keeper, open_call(bob), model_open(bob))  # never flagged
    mirror.walk_mark(BTC, 90 * K * WAD)  # alice is worth +2k again, still flagged
    mirror.reverts("AdlEngine: account solvent", mirror.keeper, open_call(alice), model_open(alice))
    mirror.walk_mark(BTC, 86 * K * WAD)
    mirror.open_round(alice)
    mirror.reverts(NOT_FLAGGED, mirror.keeper, open_call(alice), model_open(alice))  # twice


def test_open_round_and_execute__by_a_non_keeper_revert(bankrupt_alice, alice, bob, erin, stranger):
    mirror = bankrupt_alice
    for caller in (stranger, alice, mirror.owner):
        mirror.reverts(KEEPER_ONLY, caller, mirror.engine_call("open_round", alice.address))
    mirror.open_round(alice)
    for caller in (stranger, bob):
        refused(mirror, KEEPER_ONLY, [bob, erin], sender=caller)


def test_set_policy__stranger_unknown_policy_or_market_reverts(mirror, stranger):
    call = mirror.engine_call
    mirror.reverts(OWNER_ONLY, stranger, call("set_policy", BTC, PRO_RATA))
    mirror.reverts(OWNER_ONLY, mirror.keeper, call("set_policy", BTC, PRO_RATA))
    mirror.reverts("AdlEngine: unknown policy", mirror.owner, call("set_policy", BTC, 4), lambda now: mirror.adl_model.set_policy(BTC, 4))
    mirror.reverts("AdlEngine: unknown market", mirror.owner, call("set_policy", 3, 0), lambda now: mirror.adl_model.set_policy(3, 0))
    mirror.set_policy(ETH, RISK_AWARE)


def test_waterfall_hooks__called_by_anyone_but_the_engines_revert(bankrupt_alice, alice, bob, stranger):
    mirror = bankrupt_alice
    ch = mirror.c.clearinghouse
    transfer = [(bob.address, btc("0.5"), usd(1_000))]
    for caller in (stranger, mirror.keeper, mirror.owner, alice):
        mirror.reverts(ENGINE_ONLY, caller, ch.transfer_positions.call(alice.address, BTC, 86 * K * WAD, transfer))
        mirror.reverts(ENGINE_ONLY, caller, ch.transfer_balance.call(bob.address, alice.address, usd(1_000)))
        mirror.reverts(ENGINE_ONLY, caller, ch.set_account_flags.call(alice.address, 0))
    mirror.open_round(alice)  # also while a round is open
    mirror.reverts(ENGINE_ONLY, stranger, ch.transfer_positions.call(alice.address, BTC, 86 * K * WAD, transfer))
    mirror.reverts(ENGINE_ONLY, stranger, ch.set_account_flags.call(alice.address, 0))
    # Nor can anyone but the owner make himself an engine.
    mirror.reverts(OWNER_ONLY, stranger, ch.set_adl_engine.call(stranger.address))
    mirror.reverts(OWNER_ONLY, stranger, ch.set_liquidation_engine.call(stranger.address))
