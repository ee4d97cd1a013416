"""ADL gas benchmark (issue 6): the gas of one `AdlEngine.execute` that touches k winners while n
positions are open in the market, for k = 1 .. 300 and n = 100 .. 10,000, under the queue and
pro-rata policies.

Targets (issue 6): gas(k=50, n=10,000) / gas(k=50, n=100) <= 1.10 (gas grows with the positions a
transaction touches, never with those open), <= 40,000 gas per position touched, and >= 300
positions in one transaction under the 16,777,216 per-transaction gas cap (EIP-7825; the Prague
node does not enforce it, the measurement is compared with it).

How one book is built (`AdlBench.build_book(n, ks)`), all with real transactions on a private Anvil
(a copy of a deployed chain, without ape's step tracing, with a block gas limit high enough for
batches of 64 fills):

- every account is funded by the owner (`CollateralToken.mint`, then `MarginPool.deposit_for`),
  sent as one mempool batch and mined in a few blocks;
- `background`: n_bg positions in pairs (one long, one short, 0.1 BTC each, signed orders,
  `settle_fills` batches of 64) at the first price P0;
- the keeper walks the price up 20% to P1 and the book is snapshotted (`evm_snapshot`).

Then, per policy and k, from that snapshot:

- the bankrupt account B_k (collateral 0.5 point above initial margin) buys k x 0.1 BTC at P1 from
  k winners (0.1 BTC short each): k fills against one signed order of B_k;
- `pad` accounts each buy a sliver from a background long, so the market holds exactly n open
  positions (n_bg + B_k + k winners + pads);
- the keeper crashes the price 15% to P2: B_k's value is negative (D = 4.5% of its notional); the
  k winners profit; the background shorts (entered at P0 < P2) do not, so they are not winners,
  and under pro-rata (every winner pays) exactly k positions are touched too; the vault holds
  nothing, so it absorbs nothing;
- anyone flags B_k (`flag_bankruptcy`), the keeper opens its round (`open_round`), reads the
  opposite side of the book (every short: position, account value, bankrupt flag, by multicall;
  the background shorts once per book, as they are the same in every round), plans with
  `backstop.keeper.adl_planner.plan_market` (the keeper's own code) and sends one `execute` with the
  k winners; its `gasUsed` is the measurement. Its events must show k hits whose
  haircuts add up to exactly D, and the round closed. The open positions are counted from the
  chain in every round.

`gasUsed` of `execute` includes the 21,000 base, calldata and closing the round.
Blocks are one second apart, so no measured transaction shares a block timestamp with the last
funding accrual (that would skip the funding computation and flatter the figures).

Speed (2 cores): a book of 10,000 positions takes about 11 s to build (keys, 10,303 deposits sent
as mempool batches, 4,849 fills signed by hand-encoded EIP-712 digests and coincurve, 76
`settle_fills`), and a round about 1.5 s.
"""

from __future__ import annotations

import gzip
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

from coincurve import PrivateKey
from eth_utils import keccak, to_checksum_address

from backstop.chain.anvil import private_chain
from backstop.chain.events import EventDecoder
from backstop.chain.fast_chain import Call, FastChain, Function
from backstop.chain.orders import ORDER_TYPEHASH, fill_tuple, order_tuple
from backstop.chain.trading import ONE_YEAR, OrderSigner
from backstop.keeper.adl_planner import MarketToResolve, WinnerState, plan_market
from backstop.model.adl import MAX_CANDIDATES, POLICY_BY_NAME, POLICY_NAMES, PRO_RATA, QUEUE_PNL_LEVERAGE
from backstop.model.protocol import Order
from backstop.sim.gas_trace import calldata_gas, gas_breakdown
from backstop.sim.replay import price_updates

WAD = 10**18
USDC = 10**6
NOTIONAL_SCALE = 10**30

DEFAULT_KS = (1, 10, 50, 200, 300)
DEFAULT_NS = (100, 10_000)
DEFAULT_POLICIES = ("queue", "pro-rata")
# Issue 6's targets.
TX_GAS_CAP = 16_777_216
TARGET_PER_POSITION = 40_000
TARGET_RATIO = 1.10
TARGET_POSITIONS = 300
RATIO_K = 50

MARKET = 0
SIZE = WAD // 10  # every background and winner position: 0.1 BTC
PAD_SIZE = WAD // 10_000  # what a pad account buys from a background long
FILLS_PER_TX = 64  # Clearinghouse.MAX_FILLS
FILL_TX_GAS = 40_000_000
EXECUTE_GAS = 40_000_000  # well above the cap: the measurement shows whether it would fit under it
SEND_CHUNK = 500  # transactions per JSON-RPC batch
SEND_BYTES = 1_000_000  # calldata (hex) per JSON-RPC batch: the node refuses much larger requests
BLOCK_GAS_LIMIT = 4_000_000_000
RISE = 120  # P1 = P0 x 1.20: the rounds' positions open at P1
CRASH = 85  # P2 = P1 x 0.85
BANKRUPT_MARGIN_EXTRA = WAD // 200  # B's collateral: initial margin + 0.5% of its notional
BACKGROUND_COLLATERAL = 3_000 * USDC  # per background account (0.1 BTC at 100k: 3.3x)
WINNER_COLLATERAL = 4_000 * USDC  # per winner (0.1 BTC at 120k: 3x)
PAD_COLLATERAL = 100 * USDC


# ================================================================ results

@dataclass(frozen=True)
class AdlMeasurement:
    """One `execute`: `n` positions open in the market, `k` winners touched, its gasUsed.
    `deficit` is the round's D and `haircuts` the sum of its AdlHit haircuts (equal when it worked)."""

    policy: str
    n: int
    k: int
    gas: int | None
    deficit: int = 0
    haircuts: int = 0
    hits: int = 0
    closed: bool = False
    error: str | None = None

    @property
    def per_position(self) -> int | None:
        return None if self.gas is None else self.gas // self.k

    @property
    def under_cap(self) -> bool | None:
        return None if self.gas is None else self.gas <= TX_GAS_CAP


@dataclass
class AdlBenchResult:
    """Every measurement of a run, the time each phase took, and where the gas goes."""

    measurements: list[AdlMeasurement] = field(default_factory=list)
    timings: list[tuple[str, float]] = field(default_factory=list)
    # (label, rows): per-call breakdowns of the marginal gas of one more winner
    breakdowns: list[tuple[str, list[tuple[str, float, int]]]] = field(default_factory=list)
    skipped: list[tuple[int, int, str]] = field(default_factory=list)  # (n, k, why)
    # (positions open, k, gas of finish_round): the fallback of a round nobody executed
    fallbacks: list[tuple[int, int, int]] = field(default_factory=list)
    # (policy, n, k) -> call path -> [count, gas] of the traced executes
    call_traces: dict = field(default_factory=dict)

    def ratio(self, policy: str, k: int = RATIO_K) -> tuple[int, int, float] | None:
        """(n small, n large, gas(k, n large) / gas(k, n small)) over the smallest and largest n measured at k."""
        found = sorted((m.n, m.gas) for m in self.measurements if m.policy == policy and m.k == k and m.gas)
        if len(found) < 2 or found[0][0] == found[-1][0]:
            return None
        return found[0][0], found[-1][0], found[-1][1] / found[0][1]

    def fit(self, policy: str, n: int | None = None) -> tuple[float, float] | None:
        """(fixed, per winner): least-squares line of gas over k for one policy (largest n by default)."""
        ns = [m.n for m in self.measurements if m.policy == policy and m.gas]
        if not ns:
            return None
        n = max(ns) if n is None else n
        points = [(m.k, m.gas) for m in self.measurements if m.policy == policy and m.n == n and m.gas]
        if len(points) < 2:
            return None
        mean_k = sum(k for k, _ in points) / len(points)
        mean_g = sum(g for _, g in points) / len(points)
        var = sum((k - mean_k) ** 2 for k, _ in points)
        if var == 0:
            return None
        slope = sum((k - mean_k) * (g - mean_g) for k, g in points) / var
        return mean_g - slope * mean_k, slope

    def max_under_cap(self, policy: str) -> int | None:
        """Winners one `execute` can touch under the per-transaction gas cap (linear fit, capped by
        the engine's list bound)."""
        line = self.fit(policy)
        if line is None or line[1] <= 0:
            return None
        return min(MAX_CANDIDATES, int((TX_GAS_CAP - line[0]) // line[1]))

    def largest_measured_under_cap(self, policy: str) -> int | None:
        ks = [m.k for m in self.measurements if m.policy == policy and m.under_cap]
        return max(ks) if ks else None

    @property
    def all_exact(self) -> bool:
        """Every measured round charged exactly D and closed."""
        return all(m.error is None and m.haircuts == m.deficit and m.closed for m in self.measurements)


# ================================================================ a private Anvil

@contextmanager
def private_anvil(state: str | None = None, hardfork: str = "prague", steps_tracing: bool = False) -> Iterator[FastChain]:
    """backstop.chain.anvil's private chain with a block gas limit far above a batch of 64 fills and
    no dev accounts; `steps_tracing` keeps opcode traces (much slower)."""
    with private_chain(state, timeout=300, hardfork=hardfork, gas_limit=BLOCK_GAS_LIMIT, dev_accounts=False, steps_tracing=steps_tracing) as chain:
        chain.request("evm_mine")
        yield chain


# ================================================================ helpers

def derive_accounts(label: str, count: int) -> list[tuple[str, str]]:
    """`count` (address, private key hex) pairs derived from `label` (coincurve: fast for thousands)."""
    accounts = []
    for i in range(count):
        secret = keccak(text=f"backstop/adl-benchmark/{label}/{i}")
        public = PrivateKey(secret).public_key.format(compressed=False)[1:]
        accounts.append((to_checksum_address(keccak(public)[-20:]), "0x" + secret.hex()))
    return accounts


def send_batch(chain: FastChain, txs: list[tuple[str, Call]], gas: int, progress: Callable[[int], None] | None = None) -> None:
    """Sends many transactions into the mempool (explicit nonces, JSON-RPC batches) and mines them
    in as few blocks as the node packs them, in order per sender. Transactions from different
    senders must not depend on each other. Does not read receipts (slow for thousands): the caller
    checks the resulting state."""
    if not txs:
        return
    nonces: dict[str, int] = {}
    chain.request("evm_setAutomine", [False])
    try:
        chunks, chunk, size = [], [], 0
        for tx in txs:
            if chunk and (len(chunk) == SEND_CHUNK or size + len(tx[1].data) > SEND_BYTES):
                chunks.append(chunk)
                chunk, size = [], 0
            chunk.append(tx)
            size += len(tx[1].data)
        chunks.append(chunk)
        for chunk in chunks:
            requests = []
            for sender, call in chunk:
                if sender not in nonces:
                    nonces[sender] = int(chain.request("eth_getTransactionCount", [sender, "pending"]), 16)
                tx = {"from": sender, "to": call.function.address, "data": call.data, "gas": hex(gas), "nonce": hex(nonces[sender])}
                nonces[sender] += 1
                requests.append(("eth_sendTransaction", [tx]))
            errors = [answer for answer in chain.batch(requests) if isinstance(answer, Exception)]
            if errors:
                raise RuntimeError(f"{len(errors)} transactions refused by the node, first: {errors[0]}")
            chain.request("evm_mine")
            if progress is not None:
                progress(len(requests))
        for _ in range(1000):
            if int(chain.request("txpool_status")["pending"], 16) == 0:
                break
            chain.request("evm_mine")
    finally:
        chain.request("evm_setAutomine", [True])
    chain.sent += len(txs)


def _word(value: int) -> bytes:
    return (value % 2**256).to_bytes(32, "big")


class FastOrderSigner(OrderSigner):
    """The project's OrderSigner (coincurve under eth_keys), made fast enough for thousands of
    orders: the EIP-712 digest is encoded by hand and each key object is built once. Signatures are
    byte for byte those of `backstop.chain.orders.sign_order` (libsecp256k1, RFC 6979, low s); the
    test compares them."""

    def __post_init__(self):
        super().__post_init__()
        self._key_objects: dict[str, PrivateKey] = {}
        self._prefix = b"\x19\x01" + self.separator

    def digest(self, order: Order) -> bytes:
        struct = ORDER_TYPEHASH + b"".join(_word(x) for x in (
            int(order.account, 16), order.market, order.size, order.limit_price, order.nonce, order.expiry, int(order.reduce_only)))
        return keccak(self._prefix + keccak(struct))

    def sign(self, order: Order) -> tuple:
        key = self._key_objects.get(order.account)
        if key is None:
            key = self._key_objects[order.account] = PrivateKey(bytes.fromhex(self.keys[order.account].removeprefix("0x")))
        signature = key.sign_recoverable(self.digest(order), hasher=None)
        return (order_tuple(order), signature[64] + 27, int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big"))


def _flatten(value) -> list[int]:
    """The words of a static ABI tuple (addresses, integers, booleans), depth first."""
    if isinstance(value, (tuple, list)):
        return [word for item in value for word in _flatten(item)]
    if isinstance(value, str):
        return [int(value, 16)]
    return [int(value)]


def encode_static_array_call(function: Function, items: list[tuple]) -> Call:
    """Calldata of a function whose only argument is a dynamic array of static tuples (such as
    `settle_fills(Fill[])`), by hand: eth_abi takes a second per few hundred fills."""
    words = [32, len(items)] + [word for item in items for word in _flatten(item)]
    return Call(function, "0x" + (function.selector + b"".join(_word(w) for w in words)).hex())


def encode_static_call(function: Function, *args) -> Call:
    """Calldata of a function with static arguments only (addresses, integers, booleans), by hand."""
    return Call(function, "0x" + (function.selector + b"".join(_word(w) for w in _flatten(args))).hex())


def _must(failure, what: str) -> None:
    if failure is not None:
        raise RuntimeError(f"{what}: {failure}")


# ================================================================ the benchmark

@dataclass
class Book:
    """The accounts of one book of n positions and the snapshot every round on it starts from."""

    n: int
    ks: list[int]
    background_longs: list[str]
    background_shorts: list[str]
    bankrupt: dict[int, str]
    winners: list[str]
    pads: list[str]
    snapshot: str = ""
    # the background shorts as the keeper reads them after the crash (the same in every round: same
    # prices, no funding premium), read once per book
    background_states: list[WinnerState] | None = None

    @property
    def background(self) -> int:
        return len(self.background_longs) + len(self.background_shorts)

    def pads_for(self, k: int) -> int:
        return self.n - self.background - 1 - k


def plan_book(n: int, ks: list[int]) -> tuple[list[int], list[tuple[int, str]], int]:
    """(feasible ks, [(k, why) skipped], background positions) for a book of n positions: a round
    with k winners needs the bankrupt account, k winners and at least one background pair."""
    feasible = sorted(k for k in set(ks) if 1 <= k <= min(n - 3, MAX_CANDIDATES))
    skipped = [(k, f"more winners than a book of {n:,} positions holds" if k > n - 3 else f"above the engine's list bound {MAX_CANDIDATES}")
               for k in sorted(set(ks)) if k not in feasible]
    if not feasible:
        return [], skipped, 0
    background = 2 * ((n - 1 - max(feasible)) // 2)
    return feasible, skipped, background


class AdlBench:
    """Runs the benchmark on a private chain holding a freshly deployed protocol."""

    def __init__(self, chain: FastChain, contracts: dict[str, tuple[str, list]], owner: str, keeper: str,
                 log: Callable[[str], None] = lambda message: None,
                 progress: Callable[[str, int], Callable[[int], None]] | None = None):
        """`contracts`: name -> (address, abi) for token, oracle, pool, clearinghouse, liquidation,
        vault and adl_engine. `log` gets one line per phase; `progress(description, total)` returns a
        callback advanced as work is done (a progress bar), or None for none."""
        self.chain = chain
        chain.GAS = EXECUTE_GAS
        self.c = {name: chain.contract(address, abi) for name, (address, abi) in contracts.items()}
        self.token, self.oracle, self.pool = self.c["token"], self.c["oracle"], self.c["pool"]
        self.ch, self.liquidation, self.engine = self.c["clearinghouse"], self.c["liquidation"], self.c["adl_engine"]
        self.engine_events = EventDecoder(self.engine.address, contracts["adl_engine"][1])
        self.names = {contract.address.lower(): _CONTRACT_LABELS.get(name, name) for name, contract in self.c.items()}
        self.owner, self.keeper = to_checksum_address(owner), to_checksum_address(keeper)
        self.relayer = self.owner
        self.log = log
        self.progress = progress
        self.result = AdlBenchResult()
        chain.enable_multicall()
        # Every block one second after the previous: funding accrues between blocks as in production
        # (zero here, mark = index) and no two measured transactions share a timestamp.
        chain.set_block_interval(1)
        chain_id = int(chain.request("eth_chainId"), 16)
        self.signer = FastOrderSigner(chain_id, self.ch.address, {})
        _, now = chain.block()
        self.expiry = now + 10 * ONE_YEAR
        feed, self.max_block_move, self.max_window_move, market_params = chain.read(
            [self.oracle.feeds.call(MARKET), self.oracle.max_block_move.call(), self.oracle.max_window_move.call(), self.ch.markets.call(MARKET)]
        )
        self.p0 = feed[1]  # the mark
        self.initial_margin = market_params[0]
        self.p1 = self.p0 * RISE // 100
        self.p2 = self.p1 * CRASH // 100
        if (100 - CRASH) * WAD // 100 <= self.initial_margin + BANKRUPT_MARGIN_EXTRA:
            raise ValueError("the crash would not bankrupt an account at initial margin: raise CRASH")
        self.deployed = chain.snapshot()

    # ------------------------------------------------------------ timing and progress

    @contextmanager
    def _timed(self, label: str):
        start = time.perf_counter()
        yield
        self.result.timings.append((label, time.perf_counter() - start))

    def _bar(self, description: str, total: int) -> Callable[[int], None]:
        if self.progress is None:
            return lambda done: None
        return self.progress(description, total)

    # ------------------------------------------------------------ prices

    def set_price(self, target: int) -> None:
        """The keeper walks the mark (= index: no funding premium) to `target` within the oracle's
        limits, an update per block; at the target already, it re-posts it (fresh again)."""
        (_, price, _, _), = self.chain.read([self.oracle.feeds.call(MARKET)])
        for (price,) in price_updates([price], [target], self.max_block_move, self.max_window_move):
            _must(self.chain.send(self.keeper, self.oracle.set_prices.call(MARKET, price, price)), "set_prices")

    # ------------------------------------------------------------ the book

    def build_book(self, n: int, ks: list[int]) -> Book:
        """Deposits and background positions for a book of n positions, then the snapshot every
        round of this n starts from. Starts from the freshly deployed state."""
        feasible, skipped, background = plan_book(n, ks)
        self.result.skipped += [(n, k, why) for k, why in skipped]
        if not feasible:
            raise ValueError(f"no k in {list(ks)} fits a book of n = {n} positions (k <= n - 3)")
        self.chain.revert(self.deployed)
        self.deployed = self.chain.snapshot()
        pairs = background // 2
        with self._timed(f"n={n:,}: derive {background + max(feasible) + n - background - 1 - min(feasible) + len(feasible):,} keys"):
            accounts = derive_accounts(f"n{n}", 2 * pairs)
            winners = derive_accounts("winner", max(feasible))
            pads = derive_accounts("pad", n - background - 1 - min(feasible))
            bankrupt = {k: derive_accounts(f"bankrupt-{k}", 1)[0] for k in feasible}
        for address, key in (*accounts, *winners, *pads, *bankrupt.values()):
            self.signer.keys[address] = key
        book = Book(
            n, feasible, [a for a, _ in accounts[0::2]], [a for a, _ in accounts[1::2]],
            {k: address for k, (address, _) in bankrupt.items()}, [a for a, _ in winners], [a for a, _ in pads],
        )
        self.log(f"n = {n:,}: {background:,} background positions; rounds with k = {', '.join(map(str, feasible))} "
                 f"(up to {len(winners)} winners and {len(pads)} pad accounts)")

        funded = book.background + len(winners) + len(pads) + len(bankrupt)
        with self._timed(f"n={n:,}: fund {funded:,} accounts"):
            self.set_price(self.p0)
            deposits = [(a, BACKGROUND_COLLATERAL) for a in (*book.background_longs, *book.background_shorts)]
            deposits += [(a, WINNER_COLLATERAL) for a in book.winners] + [(a, PAD_COLLATERAL) for a in book.pads]
            deposits += [(book.bankrupt[k], self._bankrupt_collateral(k)) for k in feasible]
            self.fund(deposits, f"n={n:,}: funding {funded:,} accounts")

        with self._timed(f"n={n:,}: sign and settle {pairs:,} background fills"):
            fills = []
            bar = self._bar(f"n={n:,}: signing {pairs:,} background fills", pairs)
            for i, (long, short) in enumerate(zip(book.background_longs, book.background_shorts)):
                fills.append(self.signer.fill(long, short, MARKET, SIZE, self.p0, self.expiry).abi)
                if i % 250 == 249:
                    bar(250)
            bar(pairs % 250)
            self.settle(fills, f"n={n:,}: settling {pairs:,} background fills")
            self._expect_open_interest(pairs * SIZE, "background")

        with self._timed(f"n={n:,}: walk the price up to P1 and snapshot"):
            self.set_price(self.p1)
            book.snapshot = self.chain.snapshot()
        return book

    def _bankrupt_collateral(self, k: int) -> int:
        notional = k * SIZE * self.p1 // NOTIONAL_SCALE
        return -(-notional * (self.initial_margin + BANKRUPT_MARGIN_EXTRA) // WAD)

    def fund(self, deposits: list[tuple[str, int]], description: str = "funding accounts") -> None:
        """Mints to the owner and deposits for each account (`deposit_for`), in mempool batches."""
        total = sum(amount for _, amount in deposits)
        (before,) = self.chain.read([self.pool.total_deposited.call()])
        txs = [(self.owner, self.token.mint.call(self.owner, total)), (self.owner, self.token.approve.call(self.pool.address, total))]
        txs += [(self.owner, encode_static_call(self.pool.deposit_for, account, amount)) for account, amount in deposits]
        send_batch(self.chain, txs, 300_000, self._bar(description, len(txs)))
        (after,) = self.chain.read([self.pool.total_deposited.call()])
        if after - before != total:
            raise RuntimeError(f"deposits: the pool booked {after - before} of {total}: some reverted")

    def settle(self, fills: list[tuple], description: str) -> None:
        """`settle_fills` in batches of 64 from the relayer."""
        txs = [(self.relayer, encode_static_array_call(self.ch.settle_fills, fills[i:i + FILLS_PER_TX]))
               for i in range(0, len(fills), FILLS_PER_TX)]
        bar = self._bar(description, len(fills))
        send_batch(self.chain, txs, FILL_TX_GAS, lambda count: bar(count * FILLS_PER_TX))

    def _expect_open_interest(self, expected: int, what: str) -> None:
        long_oi, short_oi = self.chain.read([self.ch.long_open_interest.call(MARKET), self.ch.short_open_interest.call(MARKET)])
        if not long_oi == short_oi == expected:
            raise RuntimeError(f"{what}: open interest {long_oi}/{short_oi}, expected {expected}: some fills reverted")

    def _read_accounts(self, accounts: list[str], health: bool) -> list[tuple]:
        """(size, entry price, value, bankrupt) per account in the market (value 0 without `health`)."""
        ch = self.ch
        calls = []
        for account in accounts:
            calls.append(encode_static_call(ch.positions, account, MARKET))
            if health:
                calls += [encode_static_call(ch.account_health, account), encode_static_call(ch.bankrupt, account)]
        values = self.chain.read(calls)
        if not health:
            return [(size, entry, 0, False) for size, entry, _ in values]
        return [(values[3 * i][0], values[3 * i][1], values[3 * i + 1][0], values[3 * i + 2]) for i in range(len(accounts))]

    # ------------------------------------------------------------ one round

    def measure(self, book: Book, policy: str, k: int, trace: bool = False) -> AdlMeasurement:
        """One round with k winners on `book` under `policy`, from the book's snapshot. With
        `trace`, the execute's call tree is kept in `result.call_traces`."""
        bankrupt, winners, pads, deficit = self._open_round(book, policy, k)
        chain = self.chain
        market_round, (_, mark) = chain.read([self.engine.market_rounds.call(bankrupt, MARKET), self.oracle.latest_prices.call(MARKET)])
        policy_id, price, bankrupt_size, size_left, deficit_left = market_round[:5]

        # The opposite side of the book, as the keeper reads it; and a count of the open positions.
        if book.background_states is None:
            shorts = self._read_accounts(book.background_shorts, health=True)
            longs = self._read_accounts(book.background_longs, health=False)
            if not all(size < 0 for size, *_ in shorts) or not all(size > 0 for size, *_ in longs):
                raise RuntimeError("a background position is not open")
            book.background_states = [WinnerState(a, size, entry, value) for a, (size, entry, value, flagged) in zip(book.background_shorts, shorts)
                                      if not flagged]
        round_reads = self._read_accounts([*winners, bankrupt], health=True) + self._read_accounts(pads, health=False)
        n_open = book.background + sum(1 for size, *_ in round_reads if size != 0)
        states = book.background_states + [WinnerState(a, size, entry, value) for a, (size, entry, value, flagged) in zip(winners, round_reads)
                                           if not flagged]
        batches = plan_market(MarketToResolve(policy_id, price, bankrupt_size, size_left, deficit_left, mark), states, batch_size=MAX_CANDIDATES)
        if len(batches) != 1 or len(batches[0].winners) != k:
            return AdlMeasurement(policy, n_open, k, None, deficit, error=f"planner chose {[len(b.winners) for b in batches]} winners, expected [{k}]")
        batch = batches[0]
        failure = chain.send(self.keeper, self.engine.execute.call(bankrupt, MARKET, batch.winners, batch.declaration.as_tuple()))
        if failure is not None:
            return AdlMeasurement(policy, n_open, k, None, deficit, error=failure.reason)
        receipt = chain.last_receipt
        events = self.engine_events.decode(receipt["logs"])
        hits = [fields for name, fields in events if name == "AdlHit"]
        closed = [fields for name, fields in events if name == "AdlRoundClosed"]
        closed_ok = bool(closed) and closed[0]["deficit"] == deficit and closed[0]["haircuts"] == deficit
        measurement = AdlMeasurement(policy, n_open, k, int(receipt["gasUsed"], 16), deficit, sum(hit["haircut"] for hit in hits), len(hits), closed_ok)
        if trace:
            self.result.call_traces[(policy, n_open, k)] = self.trace_calls(receipt["transactionHash"])
        return measurement

    def measure_fallback(self, book: Book, k: int) -> tuple[int, int]:
        """(positions open, gas of `finish_round`) for a round of k winners on `book` that nobody
        executes: past its deadline the vault takes the position and D is spread over the shorts."""
        bankrupt, winners, pads, deficit = self._open_round(book, "queue", k)
        chain = self.chain
        n_open = book.background + sum(1 for size, *_ in self._read_accounts([*winners, bankrupt, *pads], health=False) if size != 0)
        (round_state,) = chain.read([self.engine.rounds.call(bankrupt)])
        chain.request("evm_setNextBlockTimestamp", [round_state[6] + 1])  # Round.deadline
        _must(chain.send(self.relayer, self.engine.finish_round.call(bankrupt)), "finish_round")
        receipt = chain.last_receipt
        closed = [fields for name, fields in self.engine_events.decode(receipt["logs"]) if name == "AdlRoundClosed"]
        if not closed or not closed[0]["fallback"] or closed[0]["socialised"] < deficit:
            raise RuntimeError(f"finish_round did not end the round by the fallback: {closed}")
        return n_open, int(receipt["gasUsed"], 16)

    def _open_round(self, book: Book, policy: str, k: int) -> tuple[str, list[str], list[str], int]:
        """From the book's snapshot: k winners sell to the bankrupt account at P1, the price falls
        to P2, the account is flagged and its round opened under `policy`. Returns the bankrupt
        account, the winners, the pads and D."""
        chain = self.chain
        chain.revert(book.snapshot)
        book.snapshot = chain.snapshot()
        bankrupt = book.bankrupt[k]
        winners = book.winners[:k]
        pads = book.pads[:book.pads_for(k)]

        _must(chain.send(self.owner, self.engine.set_policy.call(MARKET, POLICY_BY_NAME[_policy_name(policy)])), "set_policy")
        self.set_price(self.p1)  # fresh again, whatever time passed
        buy_signed = self.signer.sign(self.signer.order(bankrupt, MARKET, k * SIZE, self.p1, self.expiry))
        fills = [fill_tuple(buy_signed, self.signer.sign(self.signer.order(w, MARKET, -SIZE, self.p1, self.expiry)), SIZE, self.p1)
                 for w in winners]
        for i, pad in enumerate(pads):
            seller = book.background_longs[i % len(book.background_longs)]
            fills.append(self.signer.fill(pad, seller, MARKET, PAD_SIZE, self.p1, self.expiry).abi)
        self.settle(fills, f"n={book.n:,} k={k}: {len(fills)} fills")
        self._expect_open_interest(len(book.background_longs) * SIZE + k * SIZE, f"round k={k}")

        self.set_price(self.p2)
        _must(chain.send(self.relayer, self.liquidation.flag_bankruptcy.call(bankrupt)), "flag_bankruptcy")
        _must(chain.send(self.keeper, self.engine.open_round.call(bankrupt)), "open_round")
        (deficit, *_), = chain.read([self.engine.rounds.call(bankrupt)])
        return bankrupt, winners, pads, deficit

    # ------------------------------------------------------------ where the gas goes

    def trace_calls(self, tx_hash: str) -> dict[str, list[int]]:
        """The call tree of a transaction (the node's callTracer), summed per call path:
        path -> [count, inclusive gas]. A call's own overhead (warm access, memory for its
        arguments) stays with its caller; refunds come off only at the end of the transaction."""
        tree = self.chain.request("debug_traceTransaction", [tx_hash, {"tracer": "callTracer"}])
        names = {}
        for name, contract in self.c.items():
            for attribute in vars(contract).values():
                if isinstance(attribute, Function):
                    names[(contract.address.lower(), attribute.selector.hex())] = f"{_CONTRACT_LABELS.get(name, name)}.{attribute.name}"
        totals: dict[str, list[int]] = {}

        def walk(frame: dict, path: str) -> None:
            for child in frame.get("calls") or []:
                key = (child["to"].lower(), child.get("input", "0x")[2:10])
                label = names.get(key, f"{child['to']}:{key[1]}")
                full = f"{path} → {label}" if path else label
                entry = totals.setdefault(full, [0, 0])
                entry[0] += 1
                entry[1] += int(child.get("gasUsed", "0x0"), 16)
                walk(child, full)

        walk(tree, "")
        totals[TRANSACTION] = [1, int(tree["gasUsed"], 16)]
        return totals

    # ------------------------------------------------------------ the whole run

    def run(self, ns: list[int], ks: list[int], policies: list[str], breakdown: bool = True) -> AdlBenchResult:
        """Every policy and k on a book of each n; with `breakdown`, the call trees of the smallest
        k and of k = 50 (or the largest below it) on the largest n give the gas of one more winner."""
        for n in ns:
            if not plan_book(n, ks)[0]:
                self.result.skipped += [(n, k, why) for k, why in plan_book(n, ks)[1]]
                self.log(f"n = {n:,}: no k in {list(ks)} fits (k <= n - 3); skipped")
                continue
            book = self.build_book(n, ks)
            traced = _traced_ks(book.ks) if breakdown and n == max(ns) else ()
            k_fallback = RATIO_K if RATIO_K in book.ks else max(book.ks)
            with self._timed(f"n={n:,}: the fallback at k = {k_fallback}"):
                n_open, gas = self.measure_fallback(book, k_fallback)
                self.result.fallbacks.append((n_open, k_fallback, gas))
                self.log(f"fallback, n = {n_open:,}, k = {k_fallback}: finish_round {gas:,} gas")
            for policy in policies:
                with self._timed(f"n={n:,}: {policy}: {len(book.ks)} rounds"):
                    for k in book.ks:
                        m = self.measure(book, policy, k, trace=k in traced)
                        self.result.measurements.append(m)
                        what = f"reverted: {m.error}" if m.gas is None else f"{m.gas:,} gas, {m.per_position:,} per position"
                        exact = "Σ haircuts == D" if m.haircuts == m.deficit and m.closed else f"Σ haircuts {m.haircuts} != D {m.deficit}"
                        self.log(f"{policy}, n = {m.n:,}, k = {k}: {what} ({exact})")
                if traced:
                    k_low, k_high = traced
                    low = self.result.call_traces.get((policy, n, k_low))
                    high = self.result.call_traces.get((policy, n, k_high))
                    if low and high:
                        self.result.breakdowns.append(
                            (f"{policy}, n = {n:,}: gas of one more winner, from the call trees at k = {k_low} and k = {k_high}",
                             marginal_calls(low, high, k_high - k_low))
                        )
        return self.result


TRANSACTION = "(the whole transaction, after refunds)"


def _traced_ks(ks: list[int]) -> tuple[int, int] | tuple:
    high = max((k for k in ks if k <= RATIO_K), default=max(ks))
    return (min(ks), high) if high > min(ks) else ()


def marginal_calls(low: dict[str, list[int]], high: dict[str, list[int]], span: int) -> list[tuple[str, float, int]]:
    """(call path, calls per winner, gas per winner) between two call-tree totals `span` winners
    apart, plus the engine's own share (the transaction less its top-level calls)."""
    rows = []
    for label in sorted(set(low) | set(high), key=lambda label: (label == TRANSACTION, label)):
        count = (high.get(label, [0, 0])[0] - low.get(label, [0, 0])[0]) / span
        gas = (high.get(label, [0, 0])[1] - low.get(label, [0, 0])[1]) // span
        if label != TRANSACTION and (count or gas):
            rows.append((label, count, gas))
    total = (high[TRANSACTION][1] - low[TRANSACTION][1]) // span
    top_level = sum(gas for label, _, gas in rows if "→" not in label)
    rows.append(("AdlEngine's own work (loop, checks, haircut math, AdlHit events, calldata, memory) less the refunds", 1.0, total - top_level))
    rows.append((TRANSACTION, 1.0, total))
    return rows


_CONTRACT_LABELS = {
    "clearinghouse": "Clearinghouse", "liquidation": "LiquidationEngine", "adl_engine": "AdlEngine", "adl_ranking": "AdlRanking",
    "pool": "MarginPool", "oracle": "Oracle", "vault": "InsuranceVault", "token": "CollateralToken",
}


def _policy_name(policy: str) -> str:
    return {"queue": POLICY_NAMES[QUEUE_PNL_LEVERAGE], "pro-rata": POLICY_NAMES[PRO_RATA]}.get(policy, policy)


# ================================================================ opcode classes (a tracing node)

def opcode_marginal(state: str, contracts: dict[str, tuple[str, list]], owner: str, keeper: str, policy: str = "queue",
                    k_low: int = 1, k_high: int = 10, hardfork: str = "prague") -> tuple[list[tuple[str, str, float, int]], int]:
    """The gas of one more winner by contract and opcode class: a small book (k_high + 4 positions)
    on a private Anvil with step tracing, the struct logs of `execute` at k_low and k_high winners,
    and their difference per winner. Returns (rows (contract, what, count, gas), gas per winner)."""
    with private_anvil(state, hardfork, steps_tracing=True) as chain:
        bench = AdlBench(chain, contracts, owner, keeper)
        book = bench.build_book(k_high + 4, [k_low, k_high])
        runs = {}
        for k in (k_low, k_high):
            m = bench.measure(book, policy, k)
            if m.gas is None:
                raise RuntimeError(f"execute with k = {k} reverted: {m.error}")
            receipt = chain.last_receipt
            trace = chain.request("debug_traceTransaction", [receipt["transactionHash"], {"disableStorage": True, "disableMemory": True}])
            tx = chain.request("eth_getTransactionByHash", [receipt["transactionHash"]])
            totals = gas_breakdown(trace["structLogs"], tx["to"], bench.names | {f"0x{1:040x}": "ecrecover"})
            intrinsic = 21_000 + calldata_gas(bytes.fromhex(tx["input"][2:]))
            runs[k] = (totals, m.gas, intrinsic)
    span = k_high - k_low
    (low, low_gas, low_intrinsic), (high, high_gas, high_intrinsic) = runs[k_low], runs[k_high]
    rows = [("—", "intrinsic: calldata of one more winner", 1.0, (high_intrinsic - low_intrinsic) // span)]
    for key in sorted(set(low) | set(high), key=lambda key: -(high.get(key, [0, 0])[1] - low.get(key, [0, 0])[1])):
        count = (high.get(key, [0, 0])[0] - low.get(key, [0, 0])[0]) / span
        gas = (high.get(key, [0, 0])[1] - low.get(key, [0, 0])[1]) // span
        if count and gas or abs(gas) >= 100:
            rows.append((key[0], key[1], count, gas))
    per_winner = (high_gas - low_gas) // span
    gross = sum(gas for *_, gas in rows)
    rows.append(("—", "refund (cleared slots; at most a fifth of the gas)", 0.0, per_winner - gross))
    return rows, per_winner


# ================================================================ from an ape session

def contracts_of(protocol) -> dict[str, tuple[str, list]]:
    """name -> (address, abi) of a `backstop.chain.deployment.Protocol` (ape contract instances)."""
    return {
        name: (str(contract.address), [item.model_dump(mode="json", by_alias=True) for item in contract.contract_type.abi])
        for name, contract in vars(protocol).items()
    }


def dump_state(provider) -> tuple[str, str]:
    """(state, hardfork) of ape's connected Anvil, to load into a private one. ape's node runs with
    step tracing and its dump carries every mined transaction with its trace, which the benchmark
    does not need: they are left out, so that the dump a long test session leaves stays loadable
    (past a few MB compressed the private node refuses the request)."""
    state = provider.make_request("anvil_dumpState", [])
    document = json.loads(gzip.decompress(bytes.fromhex(state.removeprefix("0x"))))
    document["transactions"] = []
    return "0x" + gzip.compress(json.dumps(document).encode()).hex(), getattr(provider, "evm_version", None) or "prague"


def run_from_ape(provider, protocol, owner: str, keeper: str, ns: list[int], ks: list[int], policies: list[str],
                 log: Callable[[str], None] = lambda message: None,
                 progress: Callable[[str, int], Callable[[int], None]] | None = None, breakdown: bool = True) -> AdlBenchResult:
    """Copies ape's chain (with `protocol` freshly deployed on it) into a private Anvil and runs the
    benchmark there; ape's chain is left as it was."""
    started = time.perf_counter()
    state, hardfork = dump_state(provider)
    with private_anvil(state, hardfork) as chain:
        copied = time.perf_counter() - started
        bench = AdlBench(chain, contracts_of(protocol), str(owner), str(keeper), log, progress)
        bench.result.timings.append(("copy the deployed chain into a private Anvil", copied))
        return bench.run(ns, ks, policies, breakdown)
