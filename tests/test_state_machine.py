"""Invariant fuzzing: a hypothesis state machine runs the core of the waterfall on Anvil and on the
Python reference model side by side (issue 7; design invariants 1, 2, 3, 4, 7 and 8).

Every rule is an action of a real actor (traders deposit, trade through signed orders and withdraw;
the keeper moves prices, including crash-sized jumps many in a row, lets time pass, accrues funding,
liquidates and flags bankrupt accounts; the owner changes parameters and pauses markets; an attacker
replays orders, forges signatures, submits expired orders, donates tokens and withdraws below
margin). Each action runs on the reference model first, which says whether it must succeed or revert
and why; the same transaction then goes to the chain, which must agree, revert reason included.
After every step the whole state is read back from the chain in one JSON-RPC batch and compared with
the model (balances, wallets, positions, open-market masks, funding indices and their timestamps,
open interest, oracle feeds, bankrupt flags, every account's health, the pool's totals, the fill
counters of live orders), and the design invariants are checked (see `ProtocolMachine.check`).

Speed: ape's Anvil runs with `--steps-tracing`, which makes a batch of fills 10 to 100 times slower.
So the protocol is deployed by the shared `protocol` fixture on ape's chain, its state is copied
(`anvil_dumpState` / `anvil_loadState`) into a private Anvil without tracing, and the machine talks
to that node through `backstop.chain.fast_chain` (raw JSON-RPC, one keep-alive connection, blocks
one second apart). Each example starts from an `evm_snapshot` of a funded setup.

Extending: the vault and ADL layers add rules and checks by subclassing `ProtocolMachine` (or adding
to it): rules call `self.act(...)`, state to compare goes into `chain_reads` / `expected_state`, and
invariants into `check`.

Profiles (BACKSTOP_FUZZ, see tests/conftest.py): `ci` runs about 10,000 steps, `deep` at least
1,000,000; the number of steps, the time and steps per second are printed at the end of the session.
"""

from __future__ import annotations

import ast
import functools
import os
import textwrap
import time
from collections import Counter
from dataclasses import dataclass, field, replace

import pytest
from coincurve import PrivateKey
from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from backstop.chain.anvil import private_chain
from backstop.chain.fast_chain import FastChain
from backstop.chain.orders import domain_separator, order_digest, order_tuple
from backstop.model.liquidation import LiquidationModel
from backstop.model.protocol import (
    NOTIONAL_SCALE,
    WAD,
    Fill as ModelFill,
    MarketParams,
    Model,
    ModelRevert,
    Order,
    PriceFeed,
    ReferencePrices,
    funding_payment,
    pnl,
)

USDC = 10**6
FAR = 10 * 365 * 24 * 3600  # expiry of ordinary orders: ten years ahead
WALLET = 10**9 * USDC  # tokens minted to each actor in the setup
# Per trader, in whole tokens: four traders of different sizes and a deep-pocketed market maker.
INITIAL_DEPOSITS = (5_000, 20_000, 50_000, 2_000, 20_000_000)
LIQUIDATOR_DEPOSIT = 5_000_000
MAX_RESTING = 8  # signed orders kept for later fills, replays and cancels

PROFILE = os.environ.get("BACKSTOP_FUZZ", "ci")
# Per profile: examples and steps per example of the core machine (ci: ~12k steps; deep: ~580k,
# with the waterfall machine's >= 1M; the two run in parallel, one process each: tests/README).
RUNS = {
    "ci": {"max_examples": 70, "stateful_step_count": 200},
    "deep": {"max_examples": 2_600, "stateful_step_count": 250},
}.get(PROFILE, {"max_examples": 50, "stateful_step_count": 200})
# Development knobs: BACKSTOP_SM_EXAMPLES / BACKSTOP_SM_STEPS override the profile's figures.
RUNS["max_examples"] = int(os.environ.get("BACKSTOP_SM_EXAMPLES", RUNS["max_examples"]))
RUNS["stateful_step_count"] = int(os.environ.get("BACKSTOP_SM_STEPS", RUNS["stateful_step_count"]))
if os.environ.get("BACKSTOP_SM_MUTANT"):  # hunting a deliberate bug: no replayed database, no shrinking
    RUNS.update(phases=[Phase.generate, Phase.shrink] if os.environ.get("BACKSTOP_SM_SHRINK") else [Phase.generate], database=None)


# ================================================================ statistics for the summary

@dataclass
class Stats:
    steps: int = 0
    examples: int = 0
    transactions: int = 0
    seconds: float = 0.0
    outcomes: Counter = field(default_factory=Counter)  # (action, "ok" or revert reason) -> count
    notes: Counter = field(default_factory=Counter)  # observations that are not failures
    first_failure_step: int | None = None

    def line(self) -> str:
        rate = self.steps / self.seconds if self.seconds else 0.0
        return (
            f"state machine [{PROFILE}]: {self.steps} steps in {self.examples} examples, "
            f"{self.transactions} transactions, {self.seconds:.1f} s, {rate:.1f} steps/s"
        )


STATS = Stats()


class _Summary:
    """A pytest plugin registered at run time: prints the machine's figures at the end of the session."""

    @staticmethod
    def pytest_terminal_summary(terminalreporter):
        if not STATS.steps:
            return
        terminalreporter.write_sep("-", "state machine summary")
        terminalreporter.write_line(STATS.line())
        if STATS.first_failure_step is not None:
            terminalreporter.write_line(f"first failure found after {STATS.first_failure_step} steps")
        ok = sum(v for (_, outcome), v in STATS.outcomes.items() if outcome == "ok")
        refused = sum(v for (_, outcome), v in STATS.outcomes.items() if outcome != "ok")
        reasons = sorted({outcome for _, outcome in STATS.outcomes} - {"ok"})
        terminalreporter.write_line(
            f"{ok} actions succeeded and {refused} were refused, on chain and model alike; "
            f"{len(reasons)} distinct revert reasons matched (BACKSTOP_SM_OUTCOMES=1 lists every action):"
        )
        terminalreporter.write_line("  " + "; ".join(reasons))
        def succeeded(*words):
            return sum(v for (label, outcome), v in STATS.outcomes.items() if outcome == "ok" and any(w in label for w in words))

        terminalreporter.write_line(
            f"activity: {succeeded('trade', 'position', 'fill_resting', 'drive: open', 'unwind', 'expired_order')} settled batches of fills, "
            f"{succeeded('liquidate')} liquidations, {succeeded('flag')} bankruptcies flagged, {succeeded('clear_bankruptcy')} cleared, "
            f"{succeeded('prices', 'crash')} price pushes, {succeeded('withdraw')} withdrawals"
        )
        for note, count in sorted(STATS.notes.items()):
            terminalreporter.write_line(f"{note}: {count}")
        if os.environ.get("BACKSTOP_SM_OUTCOMES"):
            for (label, outcome), count in sorted(STATS.outcomes.items()):
                terminalreporter.write_line(f"  {count:7d}  {label}: {outcome}")


# ================================================================ the model, with zero-sum bookkeeping

class TrackedModel(Model):
    """The reference model plus the bookkeeping the invariants need: funding and realised PnL settled
    into pool balances (so Σ balances can be checked exactly) and the number of settlements (each
    may leave < 1 unit of rounding dust in the pool). Signatures are not in the model; orders whose
    signature the harness forged are refused where the contract checks the signature."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.funding_settled = 0
        self.pnl_realized = 0
        self.settlements = 0
        self.forged_orders: set = set()  # shared, never copied: harness knowledge, not state

    def _trade(self, account, market, delta, price, reduce_only, adjustment=0, profit_charge=0):
        position = self.position(account, market)
        # The loss an ADL fallback spread over the position's side settles with its funding.
        index = self._index_for(market, position.size, self.funding_index.get(market, 0))
        funding = funding_payment(position.size, index, position.funding_snapshot)
        before = self.balance(account)
        grew = super()._trade(account, market, delta, price, reduce_only, adjustment, profit_charge)
        self.funding_settled += funding
        # A fee (a negative adjustment) reaches the vault as a credit of its own, so it is left out;
        # an ADL payment (positive) is PnL the winner's shifted entry gave up, so it counts.
        self.pnl_realized += self.balance(account) - before - funding - min(adjustment, 0)
        self.settlements += 1
        return grew

    def transfer_positions(self, account, market, price, transfers, now):
        super().transfer_positions(account, market, price, transfers, now)
        if sum(size for _, size, _ in transfers) == 0:  # haircuts only: paid to the account without a trade
            self.pnl_realized += sum(payment for _, _, payment in transfers)

    def socialise_loss(self, account, market, longs_pay, amount):
        credited = super().socialise_loss(account, market, longs_pay, amount)
        self.funding_settled += credited  # the side pays it through its loss index, as funding
        return credited

    def _use_order(self, order, size, now):
        if order in self.forged_orders:
            if self.bankrupt.get(order.account, False):
                raise ModelRevert("Clearinghouse: account bankrupt")
            if now > order.expiry:
                raise ModelRevert("Clearinghouse: order expired")
            raise ModelRevert("Clearinghouse: bad signature")
        return super()._use_order(order, size, now)


# ================================================================ the private chain

def _abi(contract) -> list[dict]:
    return [item.model_dump(mode="json", by_alias=True) for item in contract.contract_type.abi]


@dataclass
class Env:
    """The funded setup every example starts from, on a private Anvil."""

    fc: FastChain
    token: object
    oracle: object
    pool: object
    ch: object
    configurator: object
    liquidation: object
    owner: str
    keeper: str
    traders: list[str]
    liquidator: str
    attacker: str
    insurance: str
    keys: dict[str, PrivateKey]
    separator: bytes
    market_count: int
    base_snapshot: str = ""
    base_model: dict = field(default_factory=dict)
    base_time: int = 0
    base_block: int = 0
    base_wallets: dict = field(default_factory=dict)
    static_calls: dict = field(default_factory=dict)  # the reads that do not depend on the example
    start_prices: dict = field(default_factory=dict)  # index price per market in the setup
    vault: object = None  # the waterfall's contracts, for machines that drive them
    adl_engine: object = None
    extra_accounts: list = field(default_factory=list)  # accounts a machine adds (compared like the others)

    @property
    def accounts(self) -> list[str]:
        """Every account whose state is compared: traders, liquidator, attacker, insurance, extras."""
        return [*self.traders, self.liquidator, self.attacker, self.insurance, *self.extra_accounts]

    def reset(self) -> None:
        self.fc.revert(self.base_snapshot)
        self.base_snapshot = self.fc.snapshot()


@pytest.fixture(scope="module")
def env(request, chain, protocol, accounts, owner, keeper, alice, bob, carol, liquidator, stranger):
    """The protocol as the shared fixture deployed it, copied into a private Anvil and funded: each
    trader with a different deposit, the liquidator with a large one, every actor with tokens in its
    wallet and the pool approved. The base state is snapshotted; each example reverts to it."""
    if not request.config.pluginmanager.has_plugin("state_machine_summary"):
        request.config.pluginmanager.register(_Summary(), "state_machine_summary")
    state = chain.provider.make_request("anvil_dumpState", [])
    evm_version = getattr(chain.provider, "evm_version", None) or "prague"
    # A few recent states in memory and none on disk: a deep run would otherwise write tens of GB.
    with private_chain(state, hardfork=evm_version, dev_accounts=False, recent_states=64) as fc:
        fc.enable_multicall()
        traders = [alice.address, bob.address, carol.address, accounts[8].address, accounts[9].address]
        contracts = {name: fc.contract(c.address, _abi(c)) for name, c in
                     (("token", protocol.token), ("oracle", protocol.oracle), ("pool", protocol.pool), ("ch", protocol.clearinghouse),
                      ("configurator", protocol.configurator), ("liquidation", protocol.liquidation),
                      ("vault", protocol.vault), ("adl_engine", protocol.adl_engine))}
        ch = contracts["ch"]
        insurance, market_count = fc.read([ch.insurance_account.call(), ch.market_count.call()])
        chain_id = int(fc.request("eth_chainId"), 16)
        e = Env(
            fc=fc, **contracts, owner=owner.address, keeper=keeper.address, traders=traders,
            liquidator=liquidator.address, attacker=stranger.address, insurance=insurance,
            keys={a.address: PrivateKey(bytes.fromhex(a.private_key.removeprefix("0x"))) for a in accounts[:10]},
            separator=domain_separator(chain_id, ch.address), market_count=market_count,
        )
        _fund(e)
        yield e


def _fund(e: Env) -> None:
    fc, token, pool, oracle = e.fc, e.token, e.pool, e.oracle
    fc.set_block_interval(1)
    # One block on whatever clock the loaded state carries: earlier tests may have moved ape's chain
    # past its latest block's timestamp, so "latest + 1" can lie in the node's past.
    fc.request("evm_mine")
    txs = []
    for market in range(e.market_count):  # fresh prices, unchanged
        index_price, mark_price, _, _ = fc.read([oracle.feeds.call(market)])[0]
        txs.append((e.keeper, oracle.set_prices.call(market, index_price, mark_price)))
    for actor in (*e.traders, e.liquidator, e.attacker):
        txs.append((e.owner, token.mint.call(actor, WALLET)))
        txs.append((actor, token.approve.call(pool.address, 2**256 - 1)))
    for trader, amount in zip(e.traders, INITIAL_DEPOSITS):
        txs.append((trader, pool.deposit.call(amount * USDC)))
    txs.append((e.liquidator, pool.deposit.call(LIQUIDATOR_DEPOSIT * USDC)))
    fc.send_many(txs)
    e.base_block, e.base_time = fc.block()
    e.base_wallets = dict(zip(e.accounts, fc.read([token.balanceOf.call(a) for a in e.accounts])))
    model = _model_from_chain(e)
    e.start_prices = {m: model.latest_prices(m)[0] for m in range(e.market_count)}
    e.base_model = model.snapshot()
    e.base_snapshot = fc.snapshot()


def _model_from_chain(e: Env) -> TrackedModel:
    """The reference model of the funded setup, read from the chain (positions must be flat)."""
    fc, ch, liquidation, oracle, pool = e.fc, e.ch, e.liquidation, e.oracle, e.pool
    max_block_move, move_window, max_window_move, staleness, discount, penalty, ratio = fc.read([
        oracle.max_block_move.call(), oracle.move_window.call(), oracle.max_window_move.call(), oracle.staleness.call(),
        liquidation.liquidation_discount.call(), liquidation.liquidation_penalty.call(), liquidation.backstop_ratio.call(),
    ])
    model = TrackedModel(max_block_move, move_window, max_window_move, staleness, e.insurance)
    LiquidationModel(model, discount, penalty, ratio)
    for market in range(e.market_count):
        feed, block_start, window_start, params, index, updated, long_oi = fc.read([
            oracle.feeds.call(market), oracle.block_reference.call(market), oracle.window_reference.call(market), ch.markets.call(market),
            ch.funding_index.call(market), ch.funding_updated_at.call(market), ch.long_open_interest.call(market),
        ])
        assert long_oi == 0, "the setup must start flat"
        model.feeds[market] = PriceFeed(*feed)
        model.block_reference[market] = ReferencePrices(*block_start)
        model.window_reference[market] = ReferencePrices(*window_start)
        model.markets[market] = MarketParams(*params)
        model.funding_index[market] = index
        model.funding_updated_at[market] = updated
    model.market_count = e.market_count
    for account, balance in zip(e.accounts, fc.read([pool.balance_of.call(a) for a in e.accounts])):
        if balance:
            model.balance_of[account] = balance
    for account, closed in zip(e.accounts, fc.read([pool.closed_to_third_party_deposits.call(a) for a in e.accounts])):
        if closed:
            model.closed_to_third_party_deposits[account] = True
    model.total_deposited, model.total_withdrawn = fc.read([pool.total_deposited.call(), pool.total_withdrawn.call()])
    return model


# ================================================================ rules: counting steps

def _record_failure() -> None:
    if STATS.first_failure_step is None:
        STATS.first_failure_step = STATS.steps


def action(**strategies):
    """`@rule(...)` that also counts the step and records when the first failure happened (the
    figure behind "steps to find a bug", before hypothesis starts shrinking)."""

    def decorate(function):
        @functools.wraps(function)
        def counted(self, **kwargs):
            STATS.steps += 1
            try:
                return function(self, **kwargs)
            except BaseException:
                _record_failure()
                raise

        return rule(**strategies)(counted)

    return decorate


@dataclass
class Outcome:
    ok: bool
    result: object = None


# ================================================================ strategies

bp = st.integers(min_value=1, max_value=10_000)
actor_index = st.integers(min_value=0, max_value=4)  # the traders, the market maker last
other_offset = st.integers(min_value=1, max_value=4)  # a counterparty other than the actor
market_id = st.integers(min_value=0, max_value=2)
any_index = st.integers(min_value=0, max_value=1_000)


def rarely(strategy, common, one_in: int = 20):
    """`common` most of the time, `strategy` about once in `one_in` draws (as drawn afresh;
    hypothesis also mutates and repeats draws, so within one example the mix can differ)."""
    return st.integers(0, one_in - 1).flatmap(lambda x: strategy if x == 0 else common)


@st.composite
def fill_specs(draw):
    """One fill of a batch: buyer and a different seller (rarely the same: a self-trade), the market,
    how the size is chosen (free margin to open, or part of one side's position to close), the
    price's distance from the mark (rarely outside the band), the limits' slack (rarely crossed) and
    the orders' flags. Turned into numbers against the model's state when the rule runs."""
    buyer = draw(actor_index)
    seller = draw(rarely(st.just(buyer), other_offset.map(lambda o: (buyer + o) % 5)))
    mode = draw(st.sampled_from(["open", "open", "close"]))
    return {
        "buyer": buyer,
        "seller": seller,
        "market": draw(market_id),
        "mode": mode,
        "fraction_bp": draw(rarely(st.integers(9_000, 13_000), st.integers(1, 10_000), 8)),
        "price_bp": draw(rarely(st.integers(-560, 560), st.integers(-100, 100), 10)),
        # rarely: exactly at the edge of the price band (+1 wei: outside), above or below the mark
        "band_edge": draw(rarely(st.tuples(st.sampled_from([-1, 1]), st.sampled_from([-1, 0, 1])), st.none(), 12)),
        "price_noise": draw(st.integers(0, 10**9)),
        "slack_bp": draw(rarely(st.integers(-3, -1), st.integers(0, 50), 30)),
        "rest_bp": draw(st.sampled_from([0, 0, 5_000, 10_000])),
        # reduce-only mostly on the side that closes, rarely (and then refused) on the other
        "closer_reduce_only": draw(st.integers(0, 2)) == 0,
        "buy_reduce_only": draw(st.integers(0, 30)) == 0,
        "sell_reduce_only": draw(st.integers(0, 30)) == 0,
    }


# ================================================================ the machine

class ProtocolMachine(RuleBasedStateMachine):
    """Core protocol: oracle, pool, clearinghouse. `env` is set by the test before running."""

    env: Env = None
    # Kinds of compared values that move with the clock alone (left out of "a revert changed nothing").
    time_dependent = ("health", "current_funding_index")
    CHECKS = ("check",)  # the invariants, for `replay`

    def __init__(self):
        super().__init__()
        e = self.env
        e.reset()
        self.fc = e.fc
        self.model = TrackedModel.__new__(TrackedModel)
        self.model.vault = self.model.adl = None  # the vault's and the ADL engine's books are not modelled by the core machine
        self.model.liquidation = LiquidationModel.__new__(LiquidationModel)
        self.model.liquidation.exchange = self.model
        self.model.restore(e.base_model)
        self.model.forged_orders = set()
        self.t = e.base_time  # timestamp of the latest block
        self.block = e.base_block  # its number: every transaction and every wait mines one block
        self.wallets = dict(e.base_wallets)
        self.donated = 0
        self.deposited = self.model.total_deposited
        self.withdrawn = self.model.total_withdrawn
        self.resting: list[tuple[Order, tuple]] = []  # signed orders that may be filled again
        self.spent: list[tuple[Order, tuple]] = []  # fully filled or cancelled orders, for replays
        self.watch: list[Order] = []  # orders whose fill counters are compared this step
        self.nonce = 0
        self.last_storage: dict | None = None
        self.frozen: dict[str, tuple] = {}  # positions of flagged accounts when they were flagged
        self.reverted = self.changed = False  # in this step: some action reverted / succeeded
        STATS.examples += 1

    # ------------------------------------------------------------ plumbing

    @property
    def actors(self) -> list[str]:
        """Who signs orders: the traders, the last of them the market maker. (The liquidator takes
        positions only by liquidating and unwinds them against the maker.)"""
        return self.env.traders

    @property
    def maker(self) -> str:
        return self.env.traders[-1]

    def act(self, label: str, sender: str, call, model_action, same_time: bool = False) -> Outcome:
        """Runs `model_action(now)` on the model, then the transaction on the chain; both must succeed
        or both revert with the same reason, and a revert changes nothing (checked on the model here
        and on the chain after the step). Mined one second after the latest block, or in a block
        with the same time (`same_time`)."""
        now = self.t if same_time else self.t + 1
        saved = self.model.snapshot()
        try:
            result, expected = model_action(now), None
        except ModelRevert as revert:
            result, expected = None, revert.reason
        if same_time:
            self.fc.set_block_interval(0)
        try:
            failure = self.fc.send(sender, call)
        finally:
            if same_time:
                self.fc.set_block_interval(1)
        self.t, self.block = now, self.block + 1
        STATS.transactions += 1
        if expected is None:
            assert failure is None, f"{label}: the chain reverted ({failure.reason!r}) where the model succeeded"
            STATS.outcomes[(label, "ok")] += 1
            self.changed = True
        else:
            assert failure is not None, f"{label}: the chain succeeded where the model reverted ({expected!r})"
            assert failure.reason == expected, f"{label}: chain reverted {failure.reason!r}, model {expected!r}"
            assert self.model.snapshot() == saved, f"{label}: the model changed on a revert"
            self.reverted = True
            STATS.outcomes[(label, expected)] += 1
        return Outcome(expected is None, result)

    def pass_time(self, seconds: int) -> None:
        """An empty block `seconds` after the latest."""
        self.t, self.block = self.t + seconds, self.block + 1
        self.fc.mine_at(self.t)

    def push_prices(self, label: str, updates: list[tuple[int, int, int]]) -> Outcome:
        """One `push_prices` by the keeper: every update in the block `act` mines."""
        block = self.block + 1
        return self.act(label, self.env.keeper, self.env.oracle.push_prices.call(updates),
                        lambda now: self.model.push_prices(updates, now, block))

    def walk(self, label: str, market: int, index_price: int, mark_price: int, max_updates: int = 30) -> bool:
        """Walks a market's prices to the targets as a keeper does: an update per block, each as
        far as the oracle's limits allow, waiting out a move window that leaves no room (time
        passes: funding accrues). False if an update was refused, or the targets are further than
        `max_updates` updates."""
        for _ in range(max_updates):
            current = self.model.latest_prices(market)
            if current == (index_price, mark_price):
                return True
            step = self.model.reachable_prices(market, index_price, mark_price, self.t + 1)
            if step == current:
                if self.model.window_end(market) <= self.t + 1:
                    return False  # no room even in a new window: a price too small to move by one unit
                self.pass_time(self.model.window_end(market) - 1 - self.t)
                STATS.notes["waits for a move window to end"] += 1
            elif not self.push_prices(label, [(market, *step)]).ok:
                return False
        return self.model.latest_prices(market) == (index_price, mark_price)

    def sign(self, order: Order, signer: str | None = None) -> tuple:
        key = self.env.keys[signer or order.account]
        signature = key.sign_recoverable(order_digest(order, self.env.separator), hasher=None)
        return (order_tuple(order), signature[64] + 27, int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big"))

    def new_order(self, account: str, market: int, size: int, limit: int, expiry: int | None = None, reduce_only=False) -> Order:
        self.nonce += 1
        return Order(account, market, size, limit, self.nonce, self.t + FAR if expiry is None else expiry, reduce_only)

    def within_range(self, market: int, price: int, move_bp: int) -> int:
        """`move_bp`, or its opposite if it would take the price out of [1/4, 4] times the starting
        price (a random walk of crashes would otherwise wander off to where every account is
        either bankrupt or negligible). With move 0: nonzero iff `price` itself is out of range."""
        start = self.env.start_prices[market]
        moved = price * (10_000 + move_bp) // 10_000
        if moved * 4 < start or moved > 4 * start:
            return -move_bp if move_bp else 1
        return move_bp

    def mark(self, market: int) -> int:
        return self.model.latest_prices(market)[1]

    def health(self, account: str):
        return self.model.account_health(account, self.t)

    def capacity(self, account: str, market: int, price: int) -> int:
        """Base units the account could add at `price` with its free margin (at least 1e12)."""
        h = self.health(account)
        free = max(h.value - h.initial_margin, 0)
        notional = free * WAD // self.model.markets[market].initial_margin
        return max(notional * NOTIONAL_SCALE // max(price, 1), 10**12)

    def settle(self, label: str, fills: list[tuple]) -> Outcome:
        """`settle_fills` of (buy, signed buy, sell, signed sell, size, price[, buyer_is_taker]) on
        both sides; the buyer takes liquidity unless the fill says otherwise."""
        fills = [(*f, True) if len(f) == 6 else f for f in fills]
        abi = [(b_signed, s_signed, size, price, taker) for _, b_signed, _, s_signed, size, price, taker in fills]
        model_fills = [(b, s, size, price, taker) for b, _, s, _, size, price, taker in fills]

        for b, _, s, *_ in fills:
            self.watch += [b, s]
        return self.act(label, self.env.traders[0], self.env.ch.settle_fills.call(abi),
                        lambda now: self.model.settle_fills([ModelFill(*f) for f in model_fills], now))

    def keep_resting(self, order: Order, signed: tuple) -> None:
        remaining = abs(order.size) - self.model.filled_size(order)
        target = self.resting if remaining > 0 else self.spent
        target.append((order, signed))
        del target[:-MAX_RESTING]

    # ------------------------------------------------------------ traders

    @action(trader=st.integers(0, 6), amount=st.one_of(st.integers(0, 100_000 * USDC), st.integers(1, 1_000).map(lambda x: x * 1_000 * USDC)))
    def deposit(self, trader, amount):
        """A deposit from the actor's wallet (zero: refused)."""
        account = [*self.actors, self.env.liquidator, self.env.attacker][trader]
        if self.act("deposit", account, self.env.pool.deposit.call(amount), lambda now: self.model.deposit(account, amount)).ok:
            self.deposited += amount
            self.wallets[account] -= amount

    @action(giver=st.integers(0, 6), receiver=st.integers(0, 7), amount=st.integers(0, 10_000 * USDC))
    def deposit_for(self, giver, receiver, amount):
        """A deposit into someone else's balance (a top-up): refused for an account closed to them
        (the insurance vault: such a gift would move its share price)."""
        sender = [*self.actors, self.env.liquidator, self.env.attacker][giver]
        account = self.env.accounts[receiver]
        if self.act("deposit_for", sender, self.env.pool.deposit_for.call(account, amount),
                    lambda now: self.model.deposit_for(sender, account, amount)).ok:
            self.deposited += amount
            self.wallets[sender] -= amount

    @action(trader=st.integers(0, 6), fraction_bp=rarely(st.integers(9_990, 30_000), st.integers(1, 10_000), 5),
            of_balance=rarely(st.just(False), st.just(True), 4))
    def withdraw(self, trader, fraction_bp, of_balance):
        """Withdraws a fraction of what is free above initial margin (capped at the balance, or not:
        then a profit not yet realised is asked for). Above 100% it must be refused."""
        account = [*self.actors, self.env.liquidator, self.env.attacker][trader]
        h = self.health(account)
        free = max(h.value - h.initial_margin, 0)
        if of_balance:
            free = min(free, max(self.model.balance(account), 0))
        amount = max(free * fraction_bp // 10_000, 1)
        if self.act("withdraw", account, self.env.pool.withdraw.call(amount), lambda now: self.model.withdraw(account, amount, now)).ok:
            self.withdrawn += amount
            self.wallets[account] += amount

    @action(trader=actor_index, above=st.one_of(st.integers(1, 10), st.integers(1, 10**9)))
    def withdraw_below_margin(self, trader, above):
        """A trader asks for a little more than is free above initial margin (but not more than its
        balance): refused, nothing moves."""
        account = self.actors[trader]
        h = self.health(account)
        free, balance = h.value - h.initial_margin, self.model.balance(account)
        amount = min(max(free, 0) + above, balance)
        if amount <= 0:
            return
        if self.act("withdraw_below_margin", account, self.env.pool.withdraw.call(amount),
                    lambda now: self.model.withdraw(account, amount, now)).ok:
            self.withdrawn += amount
            self.wallets[account] += amount

    @action(specs=st.lists(fill_specs(), min_size=1, max_size=4))
    def trade(self, specs):
        """A batch of matched signed orders, settled in one transaction (all or nothing). Each fill
        opening risk takes a share of both sides' free margin, so batches mostly pass."""
        fills = []
        for spec in specs:
            buyer, seller = self.actors[spec["buyer"]], self.actors[spec["seller"]]
            market = spec["market"]
            mark = self.mark(market)
            price = max(mark * (10_000 + spec["price_bp"]) // 10_000 + spec["price_noise"], 1)
            if spec["band_edge"] is not None:
                side, beyond = spec["band_edge"]
                price = max(mark + side * (self.model.markets[market].price_band * mark // WAD + beyond), 1)
            buy_reduce_only, sell_reduce_only = spec["buy_reduce_only"], spec["sell_reduce_only"]
            if spec["mode"] == "open":
                size = min(self.capacity(buyer, market, price), self.capacity(seller, market, price)) // len(specs)
            else:  # the first actor closes (part of) its position: it sells a long, buys back a short
                position = self.model.position(buyer, market).size
                size = abs(position) or 10**15
                if position > 0:
                    buyer, seller = seller, buyer
                    sell_reduce_only = spec["closer_reduce_only"]
                else:
                    buy_reduce_only = spec["closer_reduce_only"]
            size = max(size * spec["fraction_bp"] // 10_000, 1)
            slack = price * spec["slack_bp"] // 10_000
            extra = size * spec["rest_bp"] // 10_000
            buy = self.new_order(buyer, market, size + extra, price + slack, reduce_only=buy_reduce_only)
            sell = self.new_order(seller, market, -(size + extra), max(price - slack, 0), reduce_only=sell_reduce_only)
            fills.append((buy, self.sign(buy), sell, self.sign(sell), size, price))
        self.settle("trade", fills)
        for buy, b_signed, sell, s_signed, *_ in fills:
            self.keep_resting(buy, b_signed)
            self.keep_resting(sell, s_signed)

    @action(trader=actor_index, other=other_offset, market=market_id, long=st.booleans(),
            leverage_bp=rarely(st.integers(10_000, 12_000), st.integers(5_000, 10_000), 6), price_bp=st.integers(-30, 30))
    def open_position(self, trader, other, market, long, leverage_bp, price_bp):
        """A trader takes as much risk as its free margin allows (50-100%, rarely above: refused)
        against another with room for it: the leverage that liquidations and bankruptcies feed on."""
        account, counterparty = self.actors[trader], self.actors[(trader + other) % len(self.actors)]
        price = max(self.mark(market) * (10_000 + price_bp) // 10_000, 1)
        size = max(self.capacity(account, market, price) * leverage_bp // 10_000, 1)
        if self.capacity(counterparty, market, price) < size and account != self.maker:
            counterparty = self.maker  # the market maker has room for anyone
        buyer, seller = (account, counterparty) if long else (counterparty, account)
        buy, sell = self.new_order(buyer, market, size, price), self.new_order(seller, market, -size, price)
        self.settle("open_position", [(buy, self.sign(buy), sell, self.sign(sell), size, price)])

    @action(trader=actor_index, other=other_offset, market=market_id, fraction_bp=rarely(st.integers(10_001, 15_000), bp, 10),
            reduce_only=st.booleans())
    def close_position(self, trader, other, market, fraction_bp, reduce_only):
        """A trader closes (part of) its position at the mark, reduce-only or not; more than the
        position with reduce-only must be refused."""
        account, counterparty = self.actors[trader], self.actors[(trader + other) % len(self.actors)]
        position = self.model.position(account, market).size
        price = self.mark(market)
        size = max(abs(position) * fraction_bp // 10_000, 1)
        if position > 0:
            buy = self.new_order(counterparty, market, size, price)
            sell = self.new_order(account, market, -size, price, reduce_only=reduce_only)
        else:
            buy = self.new_order(account, market, size, price, reduce_only=reduce_only)
            sell = self.new_order(counterparty, market, -size, price)
        self.settle("close_position", [(buy, self.sign(buy), sell, self.sign(sell), size, price)])

    @action(market=market_id, fraction_bp=st.one_of(st.just(10_000), bp))
    def liquidator_unwind(self, market, fraction_bp):
        self.unwind(market, fraction_bp)

    def unwind(self, market, fraction_bp):
        """The liquidator closes (part of) a position it took over, against the market maker."""
        liquidator, maker = self.env.liquidator, self.maker
        position = self.model.position(liquidator, market).size
        if not position or self.model.bankrupt.get(liquidator, False) or self.model.bankrupt.get(maker, False):
            return
        size, price = max(abs(position) * fraction_bp // 10_000, 1), self.mark(market)
        buyer, seller = (maker, liquidator) if position > 0 else (liquidator, maker)
        buy, sell = self.new_order(buyer, market, size, price), self.new_order(seller, market, -size, price)
        self.settle("liquidator_unwind", [(buy, self.sign(buy), sell, self.sign(sell), size, price)])

    @action(trader=actor_index, market=market_id, buy=st.booleans(), fraction_bp=bp,
            limit_bp=st.integers(-200, 200), reduce_only=rarely(st.just(True), st.just(False), 5))
    def place_order(self, trader, market, buy, fraction_bp, limit_bp, reduce_only):
        """Signs an order that rests off chain until someone fills it (possibly in parts)."""
        account = self.actors[trader]
        mark = self.mark(market)
        limit = mark * (10_000 + limit_bp) // 10_000
        size = max(self.capacity(account, market, mark) * fraction_bp // 10_000, 1)
        order = self.new_order(account, market, size if buy else -size, limit, reduce_only=reduce_only)
        self.resting.append((order, self.sign(order)))
        del self.resting[:-MAX_RESTING]

    @precondition(lambda self: self.resting)
    @action(which=any_index, other=other_offset, fraction_bp=rarely(st.integers(9_000, 20_000), bp, 6),
            at_limit=st.booleans(), price_bp=st.integers(-100, 100))
    def fill_resting(self, which, other, fraction_bp, at_limit, price_bp):
        """Fills part of a resting order (or more than is left: refused) against a fresh one, at its
        limit or near the mark (the wrong side of its limit: refused)."""
        order, signed = self.resting[which % len(self.resting)]
        counterparty = self.actors[(self.actors.index(order.account) + other) % len(self.actors)]
        remaining = abs(order.size) - self.model.filled_size(order)
        size = max(max(remaining, 1) * fraction_bp // 10_000, 1)
        price = order.limit_price if at_limit else max(self.mark(order.market) * (10_000 + price_bp) // 10_000, 1)
        counter = self.new_order(counterparty, order.market, -size if order.size > 0 else size, price)
        counter_signed = self.sign(counter)
        # The resting order is the maker: the fresh one takes its liquidity.
        if order.size > 0:
            fill = (order, signed, counter, counter_signed, size, price, False)
        else:
            fill = (counter, counter_signed, order, signed, size, price, True)
        self.settle("fill_resting", [fill])
        if self.model.filled_size(order) >= abs(order.size):
            self.resting.remove((order, signed))
            self.spent.append((order, signed))
            del self.spent[:-MAX_RESTING]

    @precondition(lambda self: self.resting)
    @action(which=any_index, by_owner=rarely(st.just(False), st.just(True), 4))
    def cancel_order(self, which, by_owner):
        """The order's account cancels it (or the attacker tries to: refused)."""
        order, signed = self.resting[which % len(self.resting)]
        sender = order.account if by_owner else self.env.attacker
        self.watch.append(order)
        self.act("cancel_order", sender, self.env.ch.cancel_order.call(order_tuple(order)),
                 lambda now: self.model.cancel_order(sender, order))
        if by_owner:
            self.resting.remove((order, signed))
            self.spent.append((order, signed))
            del self.spent[:-MAX_RESTING]

    # ------------------------------------------------------------ keeper

    @action(moves=st.lists(st.tuples(market_id, st.one_of(st.integers(-100, 100), st.integers(-300, 300), st.integers(-2_100, 2_100)),
                                     st.one_of(st.just(0), st.integers(-100, 100))), min_size=1, max_size=3),
            sweep=st.booleans())
    def move_prices(self, moves, sweep):
        """One `push_prices` with an update per entry: index moved by a basis-point step, mark at a
        premium over it (funding); entries of one market compound within the block. A block that
        moves a price beyond the oracle's per-block limit (3% of the price it started with, by
        default), or a window beyond its own, must be refused. Then, maybe, the liquidation
        keeper's pass."""
        updates, prices = [], {}
        for market, move_bp, premium_bp in moves:
            index_price = prices.get(market, self.model.latest_prices(market))[0]
            move_bp = self.within_range(market, index_price, move_bp)
            new_index = max(index_price * (10_000 + move_bp) // 10_000, 1)
            new_mark = max(new_index * (10_000 + premium_bp) // 10_000, 1)
            prices[market] = (new_index, new_mark)
            updates.append((market, new_index, new_mark))
        self.push_prices("move_prices", updates)
        if sweep:
            self.sweep(10_000)

    @action(markets=st.lists(market_id, min_size=1, max_size=3, unique=True), down=st.booleans(),
            jumps=st.integers(1, 8), share_bp=st.one_of(st.integers(250, 1_500), st.integers(1_500, 5_000), st.integers(7_500, 10_000),
                                                       st.integers(10_001, 10_100)),
            stepwise=st.booleans(), size_bp_liquidation=st.one_of(st.just(10_000), st.integers(1_000, 10_000)))
    def crash(self, markets, down, jumps, share_bp, stepwise, size_bp_liquidation):
        """A crash (or squeeze): `jumps` consecutive moves of `share_bp` / 10,000 of the oracle's
        per-block limit (a share above 100% must be refused) in one market or several, index and
        mark together, a block each. A gap (the keeper's pass after the last jump only) or a
        cascade (`stepwise`: the keeper liquidating after each jump). A jump the move window has no
        room for waits for the window to end, as a keeper would."""
        size_bp = max(self.model.max_block_move * share_bp // WAD, 1)
        prices = {market: self.model.latest_prices(market) for market in markets}
        factors = {}
        for market in markets:
            factor = 10_000 - size_bp if down else 10_000 + size_bp
            if self.within_range(market, prices[market][0] * factor**jumps // 10_000**jumps, 0) != 0:
                factor = 20_000 - factor  # the other way: prices stay within the fuzzing range
            factors[market] = factor
        for jump in range(jumps):
            updates = []
            for market in markets:
                index_price, mark_price = self.model.latest_prices(market)
                updates.append((market, max(index_price * factors[market] // 10_000, 1), max(mark_price * factors[market] // 10_000, 1)))
            end = max((self.model.window_end(market) for market, *moved in updates
                       if share_bp <= 10_000 and self.model.reachable_prices(market, *moved, self.t + 1) != tuple(moved)), default=0)
            if end > self.t + 1:
                self.pass_time(end - 1 - self.t)
            if not self.push_prices("crash", updates).ok:
                break
            if stepwise or jump == jumps - 1:
                self.sweep(size_bp_liquidation)

    @action(trader=actor_index, target_bp=st.one_of(st.integers(0, 9_999), st.integers(0, 3_000), st.integers(-5_000, -1), st.integers(10_000, 12_000)),
            size_bp=st.one_of(st.just(10_000), st.integers(1_000, 10_000)), accounts=st.integers(1, 3))
    def drive_to_liquidation(self, trader, target_bp, size_bp, accounts):
        """`drive` one account after the other (up to `accounts` of them)."""
        for k in range(accounts):
            self.drive(trader + k, target_bp, size_bp)

    def drive(self, trader, target_bp, size_bp):
        """A crash aimed at one account: the price of its largest position is walked (an update per
        block within the oracle's limits, no liquidation in between: a gap) to where its value is
        `target_bp` / 10,000 of its maintenance margin: below zero it is bankrupt, between zero and
        one it can be liquidated, above one it is just healthy. Then the keeper's pass. An account
        without a position first takes one at full leverage from the market maker."""
        alive = [a for a in self.actors[:-1] if not self.model.bankrupt.get(a, False)]
        if alive:
            self.drive_account(alive[trader % len(alive)], trader, target_bp, size_bp)

    def drive_account(self, account, trader, target_bp, size_bp):
        """`drive` for a given account (`trader` picks the market and side of a first position)."""
        positions = [(abs(self.model.position(account, m).size) * self.mark(m), m) for m in range(self.env.market_count)]
        notional, market = max(positions)
        if not notional:
            market = trader % self.env.market_count
            price = self.mark(market)
            if self.health(account).value < 100 * USDC:  # nothing to lose yet: bring some collateral
                amount = 10_000 * USDC
                if self.act("drive: deposit", account, self.env.pool.deposit.call(amount), lambda now: self.model.deposit(account, amount)).ok:
                    self.deposited += amount
                    self.wallets[account] -= amount
            size = self.capacity(account, market, price) * 95 // 100
            counterparty = self.maker
            buy, sell = self.new_order(account, market, size, price), self.new_order(counterparty, market, -size, price)
            if trader % 2:
                buy, sell = self.new_order(counterparty, market, size, price), self.new_order(account, market, -size, price)
            if not self.settle("drive: open", [(buy, self.sign(buy), sell, self.sign(sell), size, price)]).ok:
                return
        size = self.model.position(account, market).size
        index_price, mark = self.model.latest_prices(market)
        h = self.health(account)
        fraction = self.model.markets[market].maintenance_margin
        # value(p) = A + size * p / 1e30 and maintenance(p) = B + |size| * p * fraction / 1e48 around
        # the current mark; solve value(p) = target * maintenance(p) for p.
        a = h.value * NOTIONAL_SCALE - size * mark
        b = h.maintenance_margin * NOTIONAL_SCALE * WAD - abs(size) * mark * fraction
        denominator = size * WAD * 10_000 - target_bp * abs(size) * fraction
        if denominator == 0:
            return
        target = (target_bp * b - a * 10_000 * WAD) // denominator
        if target <= 0 or target == mark:
            return
        if self.walk("drive: prices", market, max(index_price * target // mark, 1), target):
            self.sweep(size_bp)

    @action(trader=actor_index, goal=st.sampled_from(["maintenance", "zero"]))
    def drive_to_edge(self, trader, goal):
        """Moves the price of an account's largest position to exactly where its value equals its
        maintenance margin (it must not be liquidatable yet) or zero (liquidatable, not bankrupt),
        found by bisection on the model with index == mark (so no funding moves it meanwhile),
        then tries to liquidate it and to flag it. The keeper first takes the premium away (the
        update charges it up to then), walks to the edge, finds it again (other markets' funding
        moved it meanwhile) and pushes it in one block."""
        alive = [a for a in self.actors[:-1] if not self.model.bankrupt.get(a, False)]
        if not alive:
            return
        account = alive[trader % len(alive)]
        notional, market = max((abs(self.model.position(account, m).size) * self.mark(m), m) for m in range(self.env.market_count))
        if not notional:
            return
        mark = self.mark(market)
        if not self.walk(f"edge {goal}: no premium", market, mark, mark):
            return
        target = self.edge_price(account, market, goal)
        if target is not None and self.walk(f"edge {goal}: walk", market, target, target):
            target = self.edge_price(account, market, goal)
        if target is None or self.model.reachable_prices(market, target, target, self.t + 1) != (target, target):
            STATS.notes[f"edge ({goal}) not reachable by this account's position"] += 1
            return
        if not self.push_prices(f"edge {goal}: prices", [(market, target, target)]).ok:
            return
        self._liquidate(f"edge {goal}: liquidate", self.env.liquidator, account, market, 10_000)
        self.act(f"edge {goal}: flag", self.env.keeper, self.env.liquidation.flag_bankruptcy.call(account),
                 lambda now: self.model.liquidation.flag_bankruptcy(account, now))

    def edge_price(self, account: str, market: int, goal: str) -> int | None:
        """The price (index == mark) at which the account's value is exactly its maintenance margin or
        exactly zero, by bisection between the mark and the far adverse side; None if it is already
        past it, cannot get there (hedged) or the integer rounding steps over it."""
        feed, size = self.model.feeds[market], self.model.position(account, market).size
        now = self.t + 2  # the prices are pushed at t + 1, the liquidation comes at t + 2

        def gap(price):
            self.model.feeds[market] = replace(feed, index_price=price, mark_price=price)
            h = self.model.account_health(account, now)
            return h.value - (h.maintenance_margin if goal == "maintenance" else 0)

        try:
            good, bad = feed.mark_price, (1 if size > 0 else feed.mark_price * 16)
            if gap(good) < 0 or gap(bad) >= 0:
                return None
            while abs(good - bad) > 1:
                middle = (good + bad) // 2
                good, bad = (middle, bad) if gap(middle) >= 0 else (good, middle)
            return good if gap(good) == 0 else None
        finally:
            self.model.feeds[market] = feed

    @action(seconds=rarely(st.sampled_from([3_599, 3_600, 3_601, 8 * 3_600, 30 * 3_600]), st.integers(1, 3_000), 5),
            refresh=rarely(st.just(False), st.just(True), 4), stale_edge=rarely(st.sampled_from([0, 1]), st.none(), 4))
    def wait(self, seconds, refresh, stale_edge):
        """Time passes (an empty block `seconds` later): funding grows, prices may go stale; then the
        price keeper usually pushes the unchanged prices again. With `stale_edge` 0 or 1 the wait
        instead ends so that the next transaction comes exactly at the oldest price's staleness limit
        (still fresh) or one second after it (stale)."""
        if stale_edge is not None:
            oldest = min(self.model.feeds[m].updated_at for m in range(self.env.market_count))
            seconds = max(oldest + self.model.staleness + stale_edge - 1 - self.t, 1)
            refresh = False
        self.pass_time(seconds)
        STATS.outcomes[("wait", "ok")] += 1
        if refresh:
            self.push_prices("refresh_prices", [(m, *self.model.latest_prices(m)) for m in range(self.env.market_count)])

    @action(market=market_id)
    def accrue_funding(self, market):
        self.act("accrue_funding", self.env.keeper, self.env.ch.accrue_funding.call(market),
                 lambda now: self.model.accrue_funding(market, now))

    @action(liquidator=actor_index, account=any_index, market=market_id,
            size_bp=st.one_of(st.just(10_000), bp, st.just(2**20)))
    def liquidate(self, liquidator, account, market, size_bp):
        """Anyone liquidates an account with a position: refused unless it is below maintenance and
        solvent (and the liquidator stays above initial margin)."""
        liquidators = [*self.actors, self.env.liquidator]
        holders = [a for a in liquidators if self.model.position(a, market).size] or liquidators
        self._liquidate("liquidate", liquidators[liquidator % len(liquidators)], holders[account % len(holders)], market, size_bp)

    @action(size_bp=st.one_of(st.just(10_000), st.integers(1_000, 10_000)))
    def keeper_sweep(self, size_bp):
        self.sweep(size_bp)

    def sweep(self, size_bp):
        """The liquidation keeper's pass: every account below maintenance and solvent loses (part of)
        its largest position to the liquidator (as much as the liquidator's margin allows; all of
        it if a partial take-over is refused); then every account with negative value is flagged,
        and the liquidator unwinds what it took over against the market maker."""
        liquidator = self.env.liquidator
        for account in self.actors:
            if self.model.bankrupt.get(account, False) or self.model.bankrupt.get(liquidator, False):
                continue
            h = self.health(account)
            if 0 <= h.value < h.maintenance_margin:
                notional, market = max((abs(self.model.position(account, m).size) * self.mark(m), m) for m in range(self.env.market_count))
                if not notional:
                    continue
                position = abs(self.model.position(account, market).size)
                room = self.capacity(liquidator, market, self.mark(market)) // 2
                share = min(size_bp, max(room * 10_000 // position, 1))
                if not self._liquidate("keeper_sweep: liquidate", liquidator, account, market, share) and share < 10_000:
                    self._liquidate("keeper_sweep: liquidate", liquidator, account, market, 10_000)
        for account in self.env.accounts:
            if not self.model.bankrupt.get(account, False) and self.health(account).value < 0:
                self.act("keeper_sweep: flag", self.env.keeper, self.env.liquidation.flag_bankruptcy.call(account),
                         lambda now, a=account: self.model.liquidation.flag_bankruptcy(a, now))
        for market in range(self.env.market_count):
            self.unwind(market, 10_000)
        STATS.outcomes[("keeper_sweep", "ok")] += 1

    def _liquidate(self, label, liquidator, account, market, size_bp) -> bool:
        position = abs(self.model.position(account, market).size)
        size = position * size_bp // 10_000 if size_bp <= 10_000 else 2**200
        if not self.act(label, liquidator, self.env.liquidation.liquidate.call(account, market, size),
                        lambda now: self.model.liquidation.liquidate(liquidator, account, market, size, now)).ok:
            return False
        # Invariant 4: a liquidation never leaves the account with negative value (read from the
        # chain), and the liquidator ends at or above initial margin.
        value, _, _ = self.fc.read([self.env.ch.account_health.call(account)])[0]
        assert value >= 0, f"liquidation left {account} with value {value}"
        h = self.model.account_health(liquidator, self.t, fresh=False)
        assert h.value >= h.initial_margin, "liquidator below initial margin after a liquidation"
        return True

    @action(account=any_index)
    def flag_bankruptcy(self, account):
        """Anyone flags an account: one with negative value if there is one (else refused)."""
        underwater = [a for a in self.env.accounts if self.health(a).value < 0] or self.env.accounts
        target = underwater[account % len(underwater)]
        self.act("flag_bankruptcy", self.env.attacker, self.env.liquidation.flag_bankruptcy.call(target),
                 lambda now: self.model.liquidation.flag_bankruptcy(target, now))

    @action(account=any_index)
    def clear_bankruptcy(self, account):
        """Anyone lifts the flag of a bankrupt account whose value is back at zero or above (refused
        while in deficit, or if it is not flagged)."""
        flagged = [a for a in self.env.accounts if self.model.bankrupt.get(a, False)] or self.env.accounts
        target = flagged[account % len(flagged)]
        self.act("clear_bankruptcy", self.env.attacker, self.env.liquidation.clear_bankruptcy.call(target),
                 lambda now: self.model.liquidation.clear_bankruptcy(target, now))

    # ------------------------------------------------------------ owner

    @action(market=market_id, trader=actor_index, other=other_offset, fraction_bp=bp)
    def pause_market(self, market, trader, other, fraction_bp):
        """The owner pauses a market; while paused, a trade in it, a withdrawal by a holder and a
        liquidation in it are refused (no fresh price); then it is resumed."""
        self.act("pause", self.env.owner, self.env.oracle.set_paused.call(market, True),
                 lambda now: self.model.set_paused(market, True))
        account, counterparty = self.actors[trader], self.actors[(trader + other) % len(self.actors)]
        price = self.mark(market)
        size = max(min(self.capacity(account, market, price), self.capacity(counterparty, market, price)) * fraction_bp // 10_000, 1)
        buy, sell = self.new_order(account, market, size, price), self.new_order(counterparty, market, -size, price)
        self.settle("paused: trade", [(buy, self.sign(buy), sell, self.sign(sell), size, price)])
        holders = [a for a in self.actors if self.model.position(a, market).size]
        if holders:
            holder = holders[fraction_bp % len(holders)]
            self.act("paused: withdraw", holder, self.env.pool.withdraw.call(1), lambda now: self.model.withdraw(holder, 1, now))
            self.act("paused: liquidate", self.env.liquidator, self.env.liquidation.liquidate.call(holder, market, 2**200),
                     lambda now: self.model.liquidation.liquidate(self.env.liquidator, holder, market, 2**200, now))
        self.act("resume", self.env.owner, self.env.oracle.set_paused.call(market, False),
                 lambda now: self.model.set_paused(market, False))

    @action(market=st.integers(3, 2**64), what=st.sampled_from(["trade", "accrue", "liquidate", "flag_params"]))
    def unknown_market(self, market, what):
        """Actions on a market that is not listed: refused."""
        a, b = self.actors[0], self.actors[1]
        if what == "trade":
            buy, sell = self.new_order(a, market, WAD, WAD), self.new_order(b, market, -WAD, WAD)
            self.settle("unknown market: trade", [(buy, self.sign(buy), sell, self.sign(sell), WAD, WAD)])
        elif what == "accrue":
            self.act("unknown market: accrue", self.env.keeper, self.env.ch.accrue_funding.call(market),
                     lambda now: self.model.accrue_funding(market, now))
        elif what == "liquidate":
            self.act("unknown market: liquidate", self.env.liquidator, self.env.liquidation.liquidate.call(a, market, WAD),
                     lambda now: self.model.liquidation.liquidate(self.env.liquidator, a, market, WAD, now))
        else:
            params = self.model.markets[0]
            self.act("unknown market: set params", self.env.owner, self.env.configurator.set_market_params.call(market, tuple(vars(params).values())),
                     lambda now: self.model.set_market_params(market, params, now))

    @action(market=market_id, im_bp=st.integers(200, 3_000), mm_share=rarely(st.integers(100, 120), st.integers(10, 99), 8),
            band_bp=rarely(st.just(0), st.integers(50, 1_000), 20),
            oi_cap=rarely(st.integers(0, 10**4).map(lambda x: x * WAD // 10), st.just(10**9 * WAD), 4),
            cap_bp=st.integers(0, 500), period=rarely(st.just(0), st.sampled_from([3_600, 8 * 3_600]), 20),
            taker_fee_bp=rarely(st.integers(101, 200), st.integers(0, 100), 20), maker_share=rarely(st.integers(101, 150), st.integers(0, 100), 20))
    def set_market_params(self, market, im_bp, mm_share, band_bp, oi_cap, cap_bp, period, taker_fee_bp, maker_share):
        """New risk, funding and fee parameters (maintenance as a share of initial, maker fee as a
        share of taker; rarely invalid). A higher margin can put accounts below maintenance at once."""
        im = im_bp * WAD // 10_000
        taker_fee = taker_fee_bp * WAD // 10_000
        params = MarketParams(im, im * mm_share // 100, band_bp * WAD // 10_000, oi_cap, cap_bp * WAD // 10_000, period,
                              taker_fee * maker_share // 100, taker_fee)
        self.act("set_market_params", self.env.owner, self.env.configurator.set_market_params.call(market, tuple(vars(params).values())),
                 lambda now: self.model.set_market_params(market, params, now))

    @action(block_bp=rarely(st.sampled_from([0, 10_000, 20_000]), st.integers(100, 1_500), 10),
            window=rarely(st.sampled_from([0, 86_401]), st.integers(10, 600), 10),
            window_bp=rarely(st.sampled_from([0, 10_000]), st.integers(500, 5_000), 10),
            staleness=rarely(st.just(0), st.integers(600, 7_200), 10))
    def set_oracle_params(self, block_bp, window, window_bp, staleness):
        """The owner changes the oracle's move limits per block and per window, the window's
        length and the staleness (rarely invalid). Windows open keep their reference prices."""
        max_block_move, max_window_move = block_bp * WAD // 10_000, window_bp * WAD // 10_000
        self.act("set_max_block_move", self.env.owner, self.env.oracle.set_max_block_move.call(max_block_move),
                 lambda now: self.model.set_max_block_move(max_block_move))
        self.act("set_move_window", self.env.owner, self.env.oracle.set_move_window.call(window, max_window_move),
                 lambda now: self.model.set_move_window(window, max_window_move))
        self.act("set_staleness", self.env.owner, self.env.oracle.set_staleness.call(staleness),
                 lambda now: self.model.set_staleness(staleness))

    @action(discount_bp=st.integers(0, 1_000), penalty_bp=rarely(st.integers(9_000, 10_000), st.integers(0, 1_000), 10))
    def set_liquidation_params(self, discount_bp, penalty_bp):
        discount, penalty = discount_bp * WAD // 10_000, penalty_bp * WAD // 10_000
        self.act("set_liquidation_params", self.env.owner, self.env.liquidation.set_liquidation_params.call(discount, penalty),
                 lambda now: self.model.liquidation.set_liquidation_params(discount, penalty))

    # ------------------------------------------------------------ attacker

    @action(amount=st.integers(1, 10**6 * USDC))
    def donate(self, amount):
        """Tokens sent straight to the pool: no account, no total may change (checked every step)."""
        failure = self.fc.send(self.env.attacker, self.env.token.transfer.call(self.env.pool.address, amount))
        assert failure is None, failure
        self.t, self.block = self.t + 1, self.block + 1
        STATS.transactions += 1
        self.donated += amount
        self.changed = True
        self.wallets[self.env.attacker] -= amount
        STATS.outcomes[("donate", "ok")] += 1

    @precondition(lambda self: self.spent)
    @action(which=any_index, other=other_offset)
    def replay(self, which, other):
        """A filled or cancelled order submitted again (a replay): refused, changes nothing."""
        order, signed = self.spent[which % len(self.spent)]
        counterparty = self.actors[(self.actors.index(order.account) + other) % len(self.actors)]
        mark = self.mark(order.market)
        price = min(mark, order.limit_price) if order.size > 0 else max(mark, order.limit_price)
        size = max(abs(order.size) // 2, 1)
        counter = self.new_order(counterparty, order.market, -size if order.size > 0 else size, price)
        if order.size > 0:
            fill = (order, signed, counter, self.sign(counter), size, price)
        else:
            fill = (counter, self.sign(counter), order, signed, size, price)
        self.settle("replay", [fill])

    @action(victim=actor_index, other=other_offset, market=market_id, fraction_bp=bp, forge_buy=st.booleans())
    def forged_order(self, victim, other, market, fraction_bp, forge_buy):
        """An order in a victim's name signed with another key: refused (bad signature)."""
        account, forger = self.actors[victim], self.actors[(victim + other) % len(self.actors)]
        price = self.mark(market)
        size = max(self.capacity(account, market, price) * fraction_bp // 10_000, 1)
        forged = self.new_order(account, market, size if forge_buy else -size, price)
        counter = self.new_order(forger, market, -size if forge_buy else size, price)
        self.model.forged_orders.add(forged)
        forged_signed, counter_signed = self.sign(forged, signer=forger), self.sign(counter)
        if forge_buy:
            fill = (forged, forged_signed, counter, counter_signed, size, price)
        else:
            fill = (counter, counter_signed, forged, forged_signed, size, price)
        self.settle("forged_order", [fill])

    @action(buyer=actor_index, other=other_offset, market=market_id, fraction_bp=bp, age=st.integers(-1, 3))
    def expired_order(self, buyer, other, market, fraction_bp, age):
        """A fill whose buy order expires around now (expiry = now - age; valid only at age <= 0)."""
        b, s = self.actors[buyer], self.actors[(buyer + other) % len(self.actors)]
        price = self.mark(market)
        size = max(min(self.capacity(b, market, price), self.capacity(s, market, price)) * fraction_bp // 10_000, 1)
        buy = self.new_order(b, market, size, price, expiry=self.t + 1 - age)
        sell = self.new_order(s, market, -size, price)
        self.settle("expired_order", [(buy, self.sign(buy), sell, self.sign(sell), size, price)])

    # ------------------------------------------------------------ (vault and ADL rules go below)

    # ------------------------------------------------------------ checks after every step

    def chain_reads(self) -> dict:
        """Every value compared, as {key: Call}."""
        e, ch, liquidation, pool, oracle, token = self.env, self.env.ch, self.env.liquidation, self.env.pool, self.env.oracle, self.env.token
        if e.static_calls:
            calls = dict(e.static_calls)
            for order in [o for o, _ in self.resting + self.spent] + self.watch:
                calls[("filled_size", order)] = ch.filled_size.call(order_tuple(order))
            return calls
        calls = {}
        for a in e.accounts:
            calls[("balance", a)] = pool.balance_of.call(a)
            calls[("bankrupt", a)] = ch.bankrupt.call(a)
            calls[("health", a)] = ch.account_health.call(a)
            calls[("open_markets", a)] = ch.open_markets.call(a)
            calls[("wallet", a)] = token.balanceOf.call(a)
            for m in range(e.market_count):
                calls[("position", a, m)] = ch.positions.call(a, m)
        for m in range(e.market_count):
            calls[("funding_index", m)] = ch.funding_index.call(m)
            calls[("funding_updated_at", m)] = ch.funding_updated_at.call(m)
            calls[("current_funding_index", m)] = ch.current_funding_index.call(m)
            calls[("long_open_interest", m)] = ch.long_open_interest.call(m)
            calls[("short_open_interest", m)] = ch.short_open_interest.call(m)
            calls[("feed", m)] = oracle.feeds.call(m)
            calls[("block_reference", m)] = oracle.block_reference.call(m)
            calls[("window_reference", m)] = oracle.window_reference.call(m)
            calls[("market", m)] = ch.markets.call(m)
        for fn in ("total_deposited", "total_withdrawn", "total_held"):
            calls[(fn,)] = getattr(pool, fn).call()
        calls[("pool_tokens",)] = token.balanceOf.call(pool.address)
        calls[("liquidation_params",)] = liquidation.liquidation_discount.call()
        calls[("backstop_ratio",)] = liquidation.backstop_ratio.call()
        for fn in ("max_block_move", "move_window", "max_window_move"):
            calls[(fn,)] = getattr(oracle, fn).call()
        calls[("staleness",)] = oracle.staleness.call()
        calls[("liquidation_penalty",)] = liquidation.liquidation_penalty.call()
        e.static_calls = dict(calls)
        return self.chain_reads()

    def expected_state(self, keys) -> dict:
        """The same values from the model (and the harness's own books for tokens)."""
        m, t = self.model, self.t
        out = {}
        for key in keys:
            kind = key[0]
            if kind == "balance":
                out[key] = m.balance(key[1])
            elif kind == "bankrupt":
                out[key] = m.bankrupt.get(key[1], False)
            elif kind == "health":
                h = m.account_health(key[1], t)
                out[key] = (h.value, h.initial_margin, h.maintenance_margin)
            elif kind == "open_markets":
                out[key] = m.open_markets.get(key[1], 0)
            elif kind == "wallet":
                out[key] = self.wallets[key[1]]
            elif kind == "position":
                p = m.position(key[1], key[2])
                out[key] = (p.size, p.entry_price, p.funding_snapshot)
            elif kind == "funding_index":
                out[key] = m.funding_index.get(key[1], 0)
            elif kind == "funding_updated_at":
                out[key] = m.funding_updated_at.get(key[1], 0)
            elif kind == "current_funding_index":
                out[key] = m.current_funding_index(key[1], t)
            elif kind == "long_open_interest":
                out[key] = m.long_open_interest.get(key[1], 0)
            elif kind == "short_open_interest":
                out[key] = m.short_open_interest.get(key[1], 0)
            elif kind == "feed":
                f = m.feeds[key[1]]
                out[key] = (f.index_price, f.mark_price, f.updated_at, f.paused)
            elif kind in ("block_reference", "window_reference"):
                r = getattr(m, kind)[key[1]]
                out[key] = (r.index_price, r.mark_price, r.since)
            elif kind == "market":
                out[key] = tuple(vars(m.markets[key[1]]).values())
            elif kind in ("total_deposited", "total_withdrawn"):
                out[key] = getattr(m, kind)
            elif kind == "total_held":
                out[key] = m.total_held()
            elif kind == "pool_tokens":
                out[key] = m.total_held() + self.donated
            elif kind == "liquidation_params":
                out[key] = m.liquidation.liquidation_discount
            elif kind == "liquidation_penalty":
                out[key] = m.liquidation.liquidation_penalty
            elif kind == "backstop_ratio":
                out[key] = m.liquidation.backstop_ratio
            elif kind in ("max_block_move", "move_window", "max_window_move", "staleness"):
                out[key] = getattr(m, kind)
            elif kind == "filled_size":
                out[key] = m.filled_size(key[1])
        return out

    @invariant()
    def check(self):
        try:
            self._check()
        except BaseException:
            _record_failure()
            raise

    def _check(self):
        """Chain == model after every step, then the design's invariants on that common state."""
        calls = self.chain_reads()
        timestamp, values = self.fc.read_at(list(calls.values()))
        chain = dict(zip(calls, values))
        assert timestamp == self.t, "the chain's clock is not the model's"
        expected = self.expected_state(calls)
        diff = {k: (chain[k], expected[k]) for k in calls if chain[k] != expected[k]}
        assert not diff, "chain != model (chain, model): " + "; ".join(f"{k}: {v}" for k, v in list(diff.items())[:8])

        # Invariant 8: a refused action changed nothing (the time-independent state is as before).
        storage = {k: v for k, v in chain.items() if k[0] not in self.time_dependent}
        if self.reverted and not self.changed and self.last_storage is not None:
            changed = [k for k in storage if k in self.last_storage and storage[k] != self.last_storage[k]]
            assert not changed, f"a reverted action changed {changed[:5]}"
        self.last_storage, self.watch = storage, []
        self.reverted = self.changed = False

        m, t, e = self.model, self.t, self.env
        accounts = m.accounts() | set(e.accounts)
        # Invariant 1: open interest long == short == Σ long sizes == Σ |short sizes| in every market.
        for market in range(e.market_count):
            sizes = [m.position(a, market).size for a in accounts]
            longs, shorts = sum(s for s in sizes if s > 0), -sum(s for s in sizes if s < 0)
            assert chain[("long_open_interest", market)] == chain[("short_open_interest", market)] == longs == shorts, f"open interest of market {market}"

        # Invariant 7: conservation. Held = deposits - withdrawals (our own books); the token balance
        # is that plus donations; pool balances are exactly held + settled funding + realised PnL.
        held = chain[("total_held",)]
        assert held == self.deposited - self.withdrawn == chain[("total_deposited",)] - chain[("total_withdrawn",)]
        assert chain[("pool_tokens",)] == held + self.donated
        assert sum(m.balance(a) for a in accounts) == held + m.funding_settled + m.pnl_realized, "Σ balances"

        # Invariant 3: zero-sum. Funding paid == received and trade PnL matched, up to dust (< 1 unit
        # per settlement or open position) that always stays in the pool.
        open_positions = [(a, mk) for (a, mk), p in m.positions.items() if p.size]
        dust = m.settlements + len(open_positions) + 1
        unsettled = sum(
            funding_payment(m.position(a, mk).size, m._index_for(mk, m.position(a, mk).size, m.current_funding_index(mk, t)), m.position(a, mk).funding_snapshot)
            for a, mk in open_positions
        )
        unrealized = sum(pnl(m.position(a, mk).size, m.position(a, mk).entry_price, self.mark(mk)) for a, mk in open_positions)
        funding_total = m.funding_settled + unsettled
        pnl_total = m.pnl_realized + unrealized
        assert -dust < funding_total <= 0, f"funding is not zero-sum: {funding_total}"
        assert -dust < pnl_total <= 0, f"trade PnL is not zero-sum: {pnl_total}"

        # Invariant 2: solvency. The pool holds at least Σ account values; the gap is the dust above.
        values = {a: chain[("health", a)][0] for a in e.accounts}
        total = sum(values.values())
        assert total == held + funding_total + pnl_total
        assert 0 <= held - total < 2 * dust, f"pool holds {held}, accounts are worth {total}"
        # The second half of invariant 2 (held >= Σ positive values) holds whenever no account is
        # under water; an unresolved deficit (flagged or not yet) is exactly what it lacks, until
        # the vault or ADL covers it. Counted, not asserted, while one is open.
        positive = sum(v for v in values.values() if v > 0)
        if all(v >= 0 for v in values.values()):
            assert held >= positive, f"pool holds {held}, positive values are {positive}"
        elif positive > held:
            STATS.notes["steps with Σ positive values above the pool's holdings (a deficit open)"] += 1
        # A flagged account is frozen: its positions do not move until the flag is lifted.
        handed = self.handed_positions()
        for a in e.accounts:
            if chain[("bankrupt", a)] and not m.in_adl_round.get(a, False):  # an ADL round moves them on purpose
                book = tuple(chain[("position", a, mk)] for mk in range(e.market_count))
                if a in handed:
                    self.frozen[a] = book
                assert self.frozen.setdefault(a, book) == book, f"the positions of bankrupt {a} moved"
            else:
                self.frozen.pop(a, None)

    def handed_positions(self) -> set[str]:
        """Flagged accounts that a rule of this step handed positions to on purpose (none in the core)."""
        return set()

    def teardown(self):
        pass


# ================================================================ the tests

def _run(machine_class, env, **overrides):
    machine_class.env = env
    run_settings = settings(**{**RUNS, **overrides})
    started, steps = time.perf_counter(), STATS.steps
    try:
        run_state_machine_as_test(machine_class, settings=run_settings)
    except BaseException:
        if STATS.first_failure_step is None:
            STATS.first_failure_step = STATS.steps
        raise
    finally:
        STATS.seconds += time.perf_counter() - started
        print(f"\n{machine_class.__name__}: {STATS.steps - steps} steps; " + STATS.line())


def test_core_state_machine(env):
    """The core machine under the active profile."""
    _run(ProtocolMachine, env)


# ================================================================ regression sequences

def replay(env, program: str, machine_class=ProtocolMachine) -> ProtocolMachine:
    """Runs a program as hypothesis prints a failing example (`state = <Machine>()`, then
    `state.<rule>(...)` lines, `state.teardown()`) on the funded setup, with the machine's checks
    after every rule whether the program lists them or not; returns the machine."""
    machine_class.env = env
    namespace = {machine_class.__name__: machine_class, "WAD": WAD}
    for statement in ast.parse(textwrap.dedent(program)).body:
        exec(compile(ast.Module([statement], type_ignores=[]), "<program>", "exec"), namespace)
        called = statement.value.func.attr if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call) else None
        if called is not None and called not in (*machine_class.CHECKS, "teardown"):
            for check in machine_class.CHECKS:
                getattr(namespace["state"], check)()
    return namespace["state"]

