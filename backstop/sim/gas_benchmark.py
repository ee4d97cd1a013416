"""The measurements of `ape run gas` (scripts/gas.py): gas per operation of Backstop's margin pool,
clearinghouse, liquidation engine and insurance vault against the targets, and each contract's
deployed size against the 80%-of-EIP-170 budget. `run` returns plain data (`GasMeasurements`);
backstop/report/gas.py makes its tables.

Deploys the protocol on the connected chain (a fresh local Anvil by default) and measures
`receipt.gas_used` of:

- `Oracle.set_prices` and `push_prices` of one market, the clearinghouse accruing its funding first;
- `MarginPool.deposit`: an account's first deposit, and a repeat deposit;
- `MarginPool.withdraw`: an account with an open position, so the clearinghouse's margin check runs;
- `Clearinghouse.settle_fills` with one fill: two traders opening their first positions, and two
  traders who already hold positions in the market (steady state);
- `settle_fills` with 20 fills between 40 traders, reported per fill (the total over 20): once as
  every trader's first position, then in steady state, with positions growing and with positions
  shrinking (PnL realised);
- `LiquidationEngine.liquidate` of an account below maintenance margin, full and partial (half),
  by a liquidator taking its first position in the market and by one that already holds one;
- `InsuranceVault`: a first and a repeat `deposit`, an EIP-7540 `requestRedeem` and its claim by
  `redeem` (the vault then holds a taken-over position, so the claim's margin check runs, and its
  buffer is locked income, so every report has income to unlock), and `LiquidationEngine.backstop`:
  the vault taking over an account below the backstop line;
- the deployed size of every contract: its code as `eth_getCode` returns it (runtime code plus
  immutables), against 19,660 bytes, 80% of EIP-170's 24,576.

The BTC mark sits 0.1% above the index while trading, so funding accrues and every trade settles
it into the pool, as it would in production. Liquidations run in the ETH market, after the keeper
has walked the ETH price down within the oracle's move limits.

- ADL (issue 6, backstop/sim/adl_benchmark.py): the gas of one `AdlEngine.execute` that touches
  k = 1, 10, 50, 200, 300 winners while n = 100 and 10,000 positions are open in the market, under
  the queue and pro-rata policies. A second deployment is copied into a private Anvil (no step
  tracing, high block gas limit) where thousands of accounts are funded and trade through signed
  fills in batches of 64; each k runs from an `evm_snapshot` of the same book. Then the issue's
  targets and where the gas of one more winner goes (call tree; by opcode class with `--explain`).

Targets (from the issues): at most 100,000 gas per fill in a steady-state batch of 20, at most
250,000 gas per liquidation; ADL: gas(k=50, n=10,000) / gas(k=50, n=100) <= 1.10, at most 40,000
gas per position touched, at least 300 positions in one transaction under 16,777,216 gas; every
contract at most 19,660 bytes deployed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, ContextManager, Protocol

from ape import accounts, chain, project
from ape.exceptions import ContractLogicError
from eth_account import Account
from eth_utils import keccak

from backstop.chain.deployment import USDC, WAD, ProtocolConfig, deploy_protocol
from backstop.chain.trading import ONE_YEAR, OrderSigner
from backstop.sim.adl_benchmark import (
    TARGET_PER_POSITION, AdlBench, AdlBenchResult, contracts_of, dump_state, opcode_marginal, private_anvil,
)
from backstop.sim.gas_trace import Breakdown, calldata_gas, gas_breakdown
from backstop.sim.replay import price_updates

BTC, ETH = 0, 1
BATCH = 20
FILL_TARGET = 100_000
LIQUIDATION_TARGET = 250_000
# @dev 80% of EIP-170's 24,576-byte limit on deployed code: room for the features to come.
SIZE_TARGET = 19_660
# @dev Seconds between measured transactions: every trade then settles a minute of funding.
MEASURE_INTERVAL = 60


# ---------------------------------------------------------------- what a run returns and tells

@dataclass(frozen=True)
class GasRow:
    """One measured operation. `gas` is per operation (a batch's total divided by its size), or None
    with the revert reason in `error` when the transaction failed."""

    operation: str
    gas: int | None
    target: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool | None:
        """False if it reverted, else True or False against the target; None with no target."""
        if self.gas is None:
            return False
        return None if self.target is None else self.gas <= self.target


@dataclass
class GasMeasurements:
    """What one run measured, as plain data (backstop/report/gas.py makes the tables)."""

    rows: list[GasRow] = field(default_factory=list)
    # (contract name, deployed bytes) in deployment order
    sizes: list[tuple[str, int]] = field(default_factory=list)
    # where the gas of the rows `explain` picked went
    breakdowns: list[Breakdown] = field(default_factory=list)
    # how it was measured, in sentences under the table
    notes: list[str] = field(default_factory=list)
    # the ADL benchmark, when it ran
    adl: AdlBenchResult | None = None
    # (policy, rows, gas per winner) of `opcode_marginal`, when the ADL gas went by opcode class
    opcode: tuple[str, list, int] | None = None


class GasProgress(Protocol):
    """Where a run says what it is doing (backstop/report/gas.py's `ConsoleGasProgress`)."""

    def step(self, message: str) -> None:
        """A phase begins."""

    def note(self, message: str) -> None:
        """A line within the phase."""

    def warn(self, message: str) -> None:
        """Something went otherwise than planned; the run goes on."""

    def measured(self, row: GasRow) -> None:
        """A row was measured (or its transaction reverted)."""

    def bars(self) -> ContextManager[Callable[[str, int], Callable[[int], None]]]:
        """Progress bars for as long as the `with` lasts: `bar(description, total)` returns a
        callback that advances that bar by the work done."""


# ---------------------------------------------------------------- set-up

@dataclass
class Bench:
    """The deployed protocol, the personas, where the progress goes and what has been measured."""

    protocol: object
    owner: object
    keeper: object
    insurance: object
    alice: object
    bob: object
    liquidators: tuple
    relayer: object
    signer: OrderSigner
    expiry: int
    progress: GasProgress
    result: GasMeasurements = field(default_factory=GasMeasurements)
    # @dev each measured row with its receipt and the number of operations the receipt holds
    measured: list = field(default_factory=list)

    @property
    def pool(self):
        return self.protocol.pool

    @property
    def clearinghouse(self):
        return self.protocol.clearinghouse

    @property
    def oracle(self):
        return self.protocol.oracle

    @property
    def vault(self):
        return self.protocol.vault


def derived_trader(label: str) -> tuple[str, str]:
    """A trader with a known private key derived from `label`. It only signs orders, so needs no ETH."""
    account = Account.from_key(keccak(text=f"backstop/gas/{label}"))
    return account.address, account.key.hex()


def advance(seconds: int) -> None:
    """Mines the next block `seconds` after the latest one, so funding accrues by a known amount."""
    chain.provider.set_timestamp(chain.blocks.head.timestamp + seconds)


def measure(bench: Bench, operation: str, send, target: int | None = None, per: int = 1):
    """Sends the transaction `send()` makes, a minute after the previous block, and records its gas
    divided by `per`; a revert is recorded, not raised."""
    advance(MEASURE_INTERVAL)
    try:
        receipt = send()
    except ContractLogicError as err:
        reason = err.message if err.message and err.message != "Transaction failed." else "no reason given"
        row = GasRow(operation, None, target, reason)
        bench.result.rows.append(row)
        bench.progress.measured(row)
        return None
    row = GasRow(operation, receipt.gas_used // per, target)
    bench.result.rows.append(row)
    bench.measured.append((row, receipt, per))
    bench.progress.measured(row)
    return receipt


def setup(config: ProtocolConfig, progress: GasProgress) -> Bench:
    test = accounts.test_accounts
    owner, keeper, insurance, alice, bob, liquidator_a, liquidator_b, relayer = (test[i] for i in range(8))
    progress.step("deploying token, oracle, margin pool, clearinghouse and insurance vault")
    protocol = deploy_protocol(project, owner, keeper, config)
    keys = {account.address: account.private_key for account in (alice, bob)}
    signer = OrderSigner(chain.chain_id, protocol.clearinghouse.address, keys)
    return Bench(
        protocol, owner, keeper, insurance, alice, bob, (liquidator_a, liquidator_b), relayer,
        signer, chain.pending_timestamp + ONE_YEAR, progress,
    )


def new_traders(bench: Bench, prefix: str, count: int) -> list[str]:
    """`count` derived traders whose keys the order signer knows."""
    traders = [derived_trader(f"{prefix}/{i}") for i in range(count)]
    bench.signer.keys.update(traders)
    return [address for address, _ in traders]


def fund_all(bench: Bench, deposits: list[tuple[str, int]]) -> None:
    """Deposits for each account from the owner (`deposit_for`), so the accounts need no ETH."""
    token, pool, owner = bench.protocol.token, bench.pool, bench.owner
    total = sum(amount for _, amount in deposits)
    token.mint(owner, total, sender=owner)
    token.approve(pool, total, sender=owner)
    with bench.progress.bars() as bar:
        advance_bar = bar("funding accounts", len(deposits))
        for account, amount in deposits:
            pool.deposit_for(account, amount, sender=owner)
            advance_bar(1)
    bench.progress.note(f"funded {len(deposits)} accounts")


def set_price(bench: Bench, market: int, index_price: int, mark_price: int) -> None:
    """Walks the market's prices to the targets in keeper updates within the oracle's limits, one
    transaction (so one block) each."""
    oracle, feed = bench.oracle, bench.oracle.feeds(market)
    walk = price_updates([feed.index_price, feed.mark_price], [index_price, mark_price], oracle.max_block_move(), oracle.max_window_move())
    for index_now, mark_now in walk:
        oracle.set_prices(market, index_now, mark_now, sender=bench.keeper)


def settle(bench: Bench, pairs: list[tuple[str, str]], market: int, size: int, price: int):
    """Settles one fill of `size` at `price` per (buyer, seller) pair, in one transaction."""
    fills = [bench.signer.fill(buyer, seller, market, size, price, bench.expiry).abi for buyer, seller in pairs]
    return bench.clearinghouse.settle_fills(fills, sender=bench.relayer)


# ---------------------------------------------------------------- measurements

def measure_deposits(bench: Bench) -> None:
    bench.progress.step("deposits")
    token, pool, alice = bench.protocol.token, bench.pool, bench.alice
    token.mint(alice, 20_000 * USDC, sender=bench.owner)
    token.approve(pool, 20_000 * USDC, sender=alice)
    measure(bench, "deposit — first deposit of an account", lambda: pool.deposit(10_000 * USDC, sender=alice))
    measure(bench, "deposit — repeat deposit", lambda: pool.deposit(5_000 * USDC, sender=alice))


def measure_single_fills(bench: Bench, price: int) -> None:
    bench.progress.step("single fills between alice and bob")
    pair = [(bench.alice.address, bench.bob.address)]
    size = WAD // 10
    measure(bench, "settle_fills, 1 fill — both traders open new positions", lambda: settle(bench, pair, BTC, size, price))
    measure(bench, "settle_fills, 1 fill — steady state (both hold positions)", lambda: settle(bench, pair, BTC, size, price))


def measure_withdraw(bench: Bench) -> None:
    bench.progress.step("withdrawal with an open position")
    try:  # the pool's first withdrawal ever also writes `total_withdrawn` from zero: keep it out of the figure
        bench.pool.withdraw(1 * USDC, sender=bench.insurance)
    except ContractLogicError:
        bench.progress.warn("warm-up withdrawal (insurance account, no position) reverted too")
    measure(bench, "withdraw — account with an open position", lambda: bench.pool.withdraw(1_000 * USDC, sender=bench.alice))


def measure_price_updates(bench: Bench, index_price: int, mark_price: int) -> None:
    """The keeper's update of one market, a minute after the last (a new block and a new move
    window): the clearinghouse accrues the market's funding first, then the prices change."""
    bench.progress.step("keeper price updates")
    oracle, keeper = bench.oracle, bench.keeper
    measure(bench, "oracle set_prices, one market", lambda: oracle.set_prices(BTC, index_price, mark_price + WAD, sender=keeper))
    measure(bench, "oracle push_prices, one market", lambda: oracle.push_prices([(BTC, index_price, mark_price)], sender=keeper))


def measure_batches(bench: Bench, traders: list[str], price: int) -> None:
    bench.progress.step(f"batches of {BATCH} fills between {len(traders)} traders")
    longs, shorts = traders[0::2], traders[1::2]
    opening, closing = list(zip(longs, shorts)), list(zip(shorts, longs))
    label = f"settle_fills, {BATCH} fills, per fill"
    measure(bench, f"{label} — every trader opens a position", lambda: settle(bench, opening, BTC, WAD // 2, price), per=BATCH)
    measure(bench, f"{label} — steady state, positions grow", lambda: settle(bench, opening, BTC, WAD // 10, price + 100 * WAD), FILL_TARGET, BATCH)
    measure(bench, f"{label} — steady state, positions shrink (PnL realised)", lambda: settle(bench, closing, BTC, WAD // 5, price + 200 * WAD), FILL_TARGET, BATCH)


def measure_liquidations(bench: Bench, victims: list[str], counterparties: list[str], price: int) -> None:
    bench.progress.step("liquidations in ETH")
    size = 10 * WAD
    settle(bench, list(zip(victims, counterparties)), ETH, size, price)
    crashed = price * 94 // 100
    bench.progress.note(f"keeper moves ETH {price // WAD:,} → {crashed // WAD:,}")
    set_price(bench, ETH, crashed, crashed)
    for victim in victims:
        health = bench.clearinghouse.account_health(victim)
        assert 0 <= health.value < health.maintenance_margin, f"{victim} is not liquidatable: {health}"

    liquidator_full, liquidator_partial = bench.liquidators
    cases = [
        ("full", liquidator_full, size, "liquidator's first position in the market"),
        ("full", liquidator_full, size, "liquidator already holds a position"),
        ("partial (half)", liquidator_partial, size // 2, "liquidator's first position in the market"),
        ("partial (half)", liquidator_partial, size // 2, "liquidator already holds a position"),
    ]
    for victim, (kind, liquidator, taken, who) in zip(victims, cases):
        send = partial(bench.protocol.liquidation.liquidate, victim, ETH, taken, sender=liquidator)
        measure(bench, f"liquidate, {kind} — {who}", send, LIQUIDATION_TARGET)


def measure_vault(bench: Bench, config: ProtocolConfig, victim: str, counterparty: str, price: int) -> None:
    bench.progress.step("insurance vault: deposits, a takeover, a redemption")
    token, vault, depositor = bench.protocol.token, bench.vault, bench.insurance
    token.mint(depositor, 30_000 * USDC, sender=bench.owner)
    token.approve(vault, 30_000 * USDC, sender=depositor)
    measure(bench, "vault deposit — first deposit", lambda: vault.deposit(20_000 * USDC, depositor, sender=depositor))
    measure(bench, "vault deposit — repeat deposit", lambda: vault.deposit(10_000 * USDC, depositor, sender=depositor))

    settle(bench, [(victim, counterparty)], ETH, 10 * WAD, price)
    crashed = price * 91 // 100
    bench.progress.note(f"keeper moves ETH {price // WAD:,} → {crashed // WAD:,}")
    set_price(bench, ETH, crashed, crashed)
    health = bench.clearinghouse.account_health(victim)
    assert health.value * WAD < health.maintenance_margin * config.backstop_ratio, f"{victim} is above the backstop line: {health}"
    measure(bench, "backstop — vault takes over an account (one market)", lambda: bench.protocol.liquidation.backstop(victim, sender=bench.relayer))

    advance(config.vault_lockup)
    refresh_prices(bench)
    shares = vault.balanceOf(depositor) // 2
    measure(bench, "vault requestRedeem", lambda: vault.requestRedeem(shares, depositor, depositor, sender=depositor))
    advance(config.vault_withdrawal_delay)
    refresh_prices(bench)
    measure(bench, "vault claim (redeem) — vault holds a position", lambda: vault.redeem(shares, depositor, depositor, sender=depositor))


def refresh_prices(bench: Bench) -> None:
    """The keeper re-posts every market's latest prices, so they are fresh again after a wait."""
    for market in range(bench.clearinghouse.market_count()):
        feed = bench.oracle.feeds(market)
        bench.oracle.set_prices(market, feed.index_price, feed.mark_price, sender=bench.keeper)


def breakdown_of(bench: Bench, row: GasRow, receipt, per: int) -> Breakdown | None:
    """Breaks a transaction's gas down by contract and opcode class, from the node's struct-log trace."""
    names = {str(contract.address).lower(): contract.contract_type.name for contract in vars(bench.protocol).values()}
    names[f"0x{1:040x}"] = "ecrecover"
    try:
        trace = chain.provider.make_request("debug_traceTransaction", [receipt.txn_hash, {"disableStorage": True, "disableMemory": True}])
    except Exception as err:  # noqa: BLE001 - not every node offers debug traces; the table stands without them
        bench.progress.note(f"no trace for '{row.operation}': {err}")
        return None
    totals = gas_breakdown(trace["structLogs"], str(receipt.receiver), names)
    intrinsic = 21_000 + calldata_gas(bytes(receipt.transaction.data))
    return Breakdown(f"{row.operation} ({'per fill' if per > 1 else 'per transaction'})", totals, receipt.gas_used, intrinsic, per)


def explain_rows(bench: Bench, which: str) -> None:
    """Adds a breakdown for each row above target (`which` = "misses") or for every row ("all")."""
    for row, receipt, per in bench.measured:
        if which == "all" or (which == "misses" and row.ok is False):
            bench.progress.step(f"tracing '{row.operation}'")
            breakdown = breakdown_of(bench, row, receipt, per)
            if breakdown is not None:
                bench.result.breakdowns.append(breakdown)


# ---------------------------------------------------------------- entry point

def measure_adl(bench: Bench, config: ProtocolConfig, ns: list[int], ks: list[int], policies: list[str], explain: str) -> None:
    """The ADL benchmark on a fresh deployment copied into a private Anvil; adds its result."""
    bench.progress.step(f"ADL: gas of execute by k = {', '.join(map(str, ks))} and n = {', '.join(f'{n:,}' for n in ns)} ({', '.join(policies)})")
    bench.progress.note("deploying a fresh protocol for the ADL books and copying the chain into a private Anvil")
    started = time.perf_counter()
    protocol = deploy_protocol(project, bench.owner, bench.keeper, config)
    try:
        state, hardfork = dump_state(chain.provider)
    except Exception as err:  # noqa: BLE001 - any node that cannot dump its state: report and go on
        bench.progress.warn(f"ADL benchmark skipped: it copies a local Anvil chain, and this node cannot dump its state ({err})")
        return
    contracts = contracts_of(protocol)
    with bench.progress.bars() as bar, private_anvil(state, hardfork) as private:
        adl_bench = AdlBench(private, contracts, bench.owner.address, bench.keeper.address, log=bench.progress.note, progress=bar)
        adl_bench.result.timings.append(("deploy with ape, copy the chain into a private Anvil", time.perf_counter() - started))
        result = adl_bench.run(ns, ks, policies)
    missed = any(m.per_position is not None and m.per_position > TARGET_PER_POSITION for m in result.measurements)
    opcode = None
    if explain == "all" or (explain == "misses" and missed):
        bench.progress.step("ADL: one more winner by opcode class (a small book on a steps-traced private Anvil)")
        started = time.perf_counter()
        opcode = (policies[0], *opcode_marginal(state, contracts, bench.owner.address, bench.keeper.address, policies[0], hardfork=hardfork))
        result.timings.append(("opcode classes: a book of 14 on a steps-traced Anvil, k = 1 and 10", time.perf_counter() - started))
    bench.result.adl, bench.result.opcode = result, opcode


def run(config: ProtocolConfig, explain: str, adl: tuple | None, progress: GasProgress) -> GasMeasurements:
    """Deploys, funds the accounts, measures every operation in turn and returns the measurements.
    `explain`: "misses", "all" or "none", the rows whose gas is broken down (`explain_rows`); `adl`:
    (ns, ks, policies) of the ADL benchmark, or None to leave it out."""
    bench = setup(config, progress)
    bench.result.sizes = [
        (contract.contract_type.name, len(chain.provider.get_code(contract.address))) for contract in vars(bench.protocol).values()
    ]
    if adl is not None:
        # First: the ADL books are built on a copy of this chain, and ape's node keeps the step trace
        # of every transaction in the copy, which grows past what it can dump once fills are traced.
        measure_adl(bench, config, *adl, explain)
    btc_index = config.markets[BTC].price
    btc_mark = btc_index * 1001 // 1000
    eth_price = config.markets[ETH].price
    bench.progress.step("keeper sets the BTC mark 0.1% above the index, so funding accrues")
    set_price(bench, BTC, btc_index, btc_mark)
    measure_price_updates(bench, btc_index, btc_mark)
    advance(MEASURE_INTERVAL)
    bench.clearinghouse.accrue_funding(BTC, sender=bench.keeper)

    traders = new_traders(bench, "trader", 2 * BATCH)
    victims = new_traders(bench, "victim", 4)
    counterparties = new_traders(bench, "counterparty", 4)
    takeover_victim, takeover_counterparty = new_traders(bench, "takeover", 2)
    bench.progress.step("funding traders, liquidation victims, their counterparties and the liquidators")
    fund_all(
        bench,
        [(bench.insurance.address, 1_000 * USDC), (bench.bob.address, 20_000 * USDC)]
        + [(trader, 20_000 * USDC) for trader in traders]
        + [(victim, 4_100 * USDC) for victim in victims]
        + [(counterparty, 20_000 * USDC) for counterparty in counterparties]
        + [(liquidator.address, 100_000 * USDC) for liquidator in bench.liquidators]
        + [(takeover_victim, 4_100 * USDC), (takeover_counterparty, 20_000 * USDC)],
    )

    measure_deposits(bench)
    measure_single_fills(bench, btc_mark)
    measure_withdraw(bench)
    measure_batches(bench, traders, btc_mark)
    measure_liquidations(bench, victims, counterparties, eth_price)
    measure_vault(bench, config, takeover_victim, takeover_counterparty, bench.oracle.feeds(ETH).mark_price)
    explain_rows(bench, explain)

    bench.result.notes = [
        f"Measured with `ape run gas` on chain {chain.chain_id}: `receipt.gas_used`, including the 21,000 base "
        f"and calldata; a batch row is the batch's total divided by {BATCH}. Each measured transaction is "
        f"mined {MEASURE_INTERVAL} s after the previous block.",
        "Steady state: the accounts already hold a position in the market and a pool balance; every order is "
        "new and filled in full, so each fill sets one bit in each account's nonce bitmap.",
        "BTC mark 0.1% above the index, so each trade settles funding. Liquidations: ETH longs at 10x, "
        "the price walked down 6% by the keeper; partial = half the position; discount 1% and penalty 1% "
        "of the notional taken.",
    ]
    return bench.result
