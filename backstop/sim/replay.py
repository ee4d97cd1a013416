"""A crash replay, independent of where it runs: the phases, the walk along the price path with the
keeper, the invariants checked at the end and the figures the report needs.

`ChainReplay` (backstop/sim/chain_replay.py) runs it on contracts through raw JSON-RPC;
`ModelReplay` (backstop/sim/model_replay.py) on the reference model. Both drive the same `Keeper`,
so a scenario replayed on each gives the same figures.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import coincurve
from Crypto.Hash import keccak as _keccak

from backstop.keeper.waterfall import USDC, WAD, Keeper, KeeperReport
from backstop.model.protocol import reachable_price
from backstop.sim.scenario import Scenario

Progress = Callable[[int, int, str], None]


def scenario_keys(seed: int, count: int, role: str = "trader") -> list[tuple[str, str]]:
    """(address, private key) of `count` accounts, the same for the same seed and role on every run
    (coincurve derives 100,000 in a few seconds; kept for the next replay of the same scenario)."""
    return list(_scenario_keys(seed, count, role))


@functools.lru_cache(maxsize=8)
def _scenario_keys(seed: int, count: int, role: str) -> tuple[tuple[str, str], ...]:
    keys = []
    for index in range(count):
        key = keccak_256(f"backstop {role} {seed} {index}".encode()).digest()
        public = coincurve.PublicKey.from_secret(key).format(compressed=False)[1:]
        keys.append((_checksummed(keccak_256(public).digest()[-20:]), "0x" + key.hex()))
    return tuple(keys)


def _checksummed(address: bytes) -> str:
    """EIP-55 checksum form of a 20-byte address (eth_utils.to_checksum_address, without its
    validation layers, which cost more than the hashing at 100,000 accounts)."""
    lower = address.hex()
    digest = keccak_256(lower.encode()).hexdigest()
    return "0x" + "".join(c.upper() if d in "89abcdef" else c for c, d in zip(lower, digest))


def keccak_256(data: bytes):
    return _keccak.new(digest_bits=256, data=data)


@dataclass
class StepFigures:
    """What the keeper did in one price step, in dollars."""

    liquidated: float
    backstopped: float
    adl_closed: float
    vault_equity: float


@dataclass
class FinalState:
    """What the invariants need, read at the end of the replay (collateral units)."""

    held: int  # the pool's books: what it holds for the accounts
    deposited: int
    withdrawn: int
    custody: int  # collateral tokens the pool holds
    values: list[int]  # account value of every trader, then the vault
    bankrupt: list[bool]
    # per market: (long open interest, short open interest, Σ long sizes, Σ |short sizes|)
    open_interest: list[tuple[int, int, int, int]]


class Replay:
    """The phases of a replay, in order: prepare_markets, fund_accounts, open_positions, walk_path,
    check_invariants, result (`run` does them all). A venue implements the hooks."""

    keeper: Keeper
    vault_address: str

    def __init__(self, scenario: Scenario, log: Callable[[str], None]):
        self.scenario, self.log = scenario, log
        keys = scenario_keys(scenario.seed, len(scenario.traders))
        self.keys = keys
        self.traders = [address for address, _ in keys]
        self.liquidators = [a for a, trader in zip(self.traders, scenario.traders) if trader.kind == "liquidator"]
        (self.depositor, _), = scenario_keys(scenario.seed, 1, role="vault depositor")
        self.deposited = 0  # what the replay put into the pool
        self.balance_before = 0  # the pool's tokens before the replay
        self.vault_equity_start = 0.0
        self.steps: list[StepFigures] = []
        self.reports: list[KeeperReport] = []

    # ------------------------------------------------------------ hooks

    def prepare_markets(self) -> None:
        raise NotImplementedError

    def fund_accounts(self) -> None:
        raise NotImplementedError

    def open_positions(self) -> None:
        raise NotImplementedError

    def advance_to(self, seconds: int) -> None:
        """Moves time to `seconds` after the start of the walk."""
        raise NotImplementedError

    def push_prices(self, targets: Sequence[int]) -> None:
        raise NotImplementedError

    def vault_equity(self) -> int:
        raise NotImplementedError

    def final_state(self) -> FinalState:
        raise NotImplementedError

    # ------------------------------------------------------------ the replay

    def run(self, progress: Progress | None = None) -> dict:
        """Every phase; the result with the seconds each phase took under "timings"."""
        timings = {}
        for phase in (self.prepare_markets, self.fund_accounts, self.open_positions):
            started = time.perf_counter()
            phase()
            timings[phase.__name__] = time.perf_counter() - started
        started = time.perf_counter()
        self.walk_path(progress or (lambda step, total, message: None))
        timings["walk_path"] = time.perf_counter() - started
        started = time.perf_counter()
        invariants = self.check_invariants()
        timings["check_invariants"] = time.perf_counter() - started
        return self.result(invariants, timings)

    def walk_path(self, progress: Progress) -> None:
        """Each step: time moves to the step's, prices move to its marks (within the oracle's move
        limits, an update per block), the keeper runs the waterfall with the step's liquidation depth."""
        total = len(self.scenario.path)
        watched = [*self.traders]
        for index, step in enumerate(self.scenario.path):
            self.advance_to(step.time)
            self.push_prices(list(step.prices))
            report = self.keeper.run_once(watched, liquidation_depth=dict(enumerate(step.liquidation_depth)))
            self.reports.append(report)
            self.steps.append(StepFigures(
                liquidated=sum(report.liquidated.values()) / USDC,
                backstopped=sum(report.backstopped.values()) / USDC,
                adl_closed=report.adl_closed / USDC,
                vault_equity=self.vault_equity() / USDC,
            ))
            progress(index + 1, total, f"t={step.time}s {report.line()}")

    def check_invariants(self) -> list[dict]:
        """The design's invariants over every account of the replay and the vault."""
        state = self.final_state()
        invariants = []
        balanced = [long_side == short_side == longs == shorts for long_side, short_side, longs, shorts in state.open_interest]
        invariants.append(_invariant("open interest long == short", all(balanced),
                                     f"per market: {['ok' if ok else 'broken' for ok in balanced]}"))
        total_value = sum(state.values)
        invariants.append(_invariant("pool holds the account values", state.held >= total_value,
                                     f"held ${state.held / USDC:,.2f} >= sum of values ${total_value / USDC:,.2f}"))

        accounts = [*self.traders, self.vault_address]
        pending = set(self.reports[-1].adl_pending) if self.reports else set()
        under_water = [a for a, v in zip(accounts, state.values) if v < 0]
        unexplained = [a for a, flagged in zip(accounts, state.bankrupt) if a in under_water and not (flagged and a in pending)]
        deficit = -sum(v for v in state.values if v < 0)
        invariants.append(_invariant(
            "no negative account unless ADL is pending", not unexplained,
            f"{len(under_water)} accounts under water (deficit ${deficit / USDC:,.2f}), "
            f"{len(under_water) - len(unexplained)} flagged and pending ADL" + (f"; not pending: {unexplained[:5]}" if unexplained else ""),
        ))

        rounds = [round_ for report in self.reports for round_ in report.adl_rounds]
        uncovered = [r["account"] for r in rounds if not _covered(r)]
        invariants.append(_invariant(
            "ADL: every round covers its deficit", not uncovered,
            f"{len(rounds)} rounds, {sum(1 for r in rounds if r.get('fallback'))} ended at their deadline"
            + (f"; not covered: {uncovered[:5]}" if uncovered else "; each covered to the unit"),
        ))

        expected = self.balance_before + self.deposited
        invariants.append(_invariant(
            "conservation: pool tokens == deposited - withdrawn",
            state.custody == state.held == state.deposited - state.withdrawn == expected,
            f"pool holds {state.custody / USDC:,.2f}, its books {state.deposited / USDC:,.2f} - {state.withdrawn / USDC:,.2f}, "
            f"the replay put in {self.deposited / USDC:,.2f} on top of {self.balance_before / USDC:,.2f}",
        ))
        return invariants

    def result(self, invariants: list[dict], timings: dict[str, float]) -> dict:
        """The figures the report reads (backstop/report/crash.py), in dollars:

        - "scenario": {"seed", "traders", "steps", "markets": [names]};
        - "prices": per step, the mark of each market; "times": per step, seconds since the start;
        - "layers_by_step": per step {"liquidated", "backstopped", "adl_closed"} notional;
        - "vault_equity": per step, the vault's account value (negative if under water);
        - "totals": {"liquidated", "backstopped", "adl_closed", "deficit" (bad debt that reached
          ADL: the deficits its rounds covered plus those still pending), "vault_pnl" (equity at
          the end minus after its deposit), "accounts_liquidated", "accounts_backstopped",
          "accounts_adl", "winners_hit", "residual_bad_debt" (negative value left at the end)};
        - "adl_rounds": every round's metrics (backstop/keeper/adl_executor.py RoundMetrics, as dicts);
        - "invariants": [{"name", "held", "detail"}]; "timings": seconds per phase.
        """
        scenario, reports = self.scenario, self.reports
        rounds = [round_ for report in reports for round_ in report.adl_rounds]
        pending = reports[-1].adl_pending if reports else []
        deficit = sum(round_.get("deficit", 0) for round_ in rounds) + sum(reports[-1].bankrupt[a] for a in pending)
        state_values = self.final_state().values
        return {
            "scenario": {"seed": scenario.seed, "traders": len(scenario.traders), "steps": len(scenario.path),
                         "markets": [market.name for market in scenario.markets]},
            "prices": [[price / WAD for price in step.prices] for step in scenario.path],
            "times": [step.time for step in scenario.path],
            "layers_by_step": [{"liquidated": s.liquidated, "backstopped": s.backstopped, "adl_closed": s.adl_closed} for s in self.steps],
            "vault_equity": [s.vault_equity for s in self.steps],
            "totals": {
                "liquidated": sum(s.liquidated for s in self.steps),
                "backstopped": sum(s.backstopped for s in self.steps),
                "adl_closed": sum(s.adl_closed for s in self.steps),
                "deficit": deficit / USDC,
                "vault_pnl": (self.steps[-1].vault_equity if self.steps else self.vault_equity_start) - self.vault_equity_start,
                "accounts_liquidated": len({a for r in reports for a in r.liquidated_accounts}),
                "accounts_backstopped": len({a for r in reports for a in r.backstopped_accounts}),
                "accounts_adl": len({a for r in reports for a in r.bankrupt}),
                "winners_hit": len({winner for round_ in rounds for winner in round_["haircut_by_winner"]}),
                "residual_bad_debt": -sum(v for v in state_values if v < 0) / USDC,
            },
            "adl_rounds": rounds,
            "invariants": invariants,
            "timings": timings,
        }


def price_updates(current: Sequence[int], targets: Sequence[int], max_block_move: int, max_window_move: int) -> list[list[int]]:
    """The oracle updates (all markets in each, so all stay fresh), one block each, that walk the
    prices from `current` to `targets` within the oracle's limits, in a move window that opens
    with the first of them. Raises ValueError if the window's limit stops the walk short."""
    prices, updates = list(current), []
    while not updates or prices != list(targets):
        moved = [reachable_price(price, target, max_block_move, start, max_window_move)
                 for price, target, start in zip(prices, targets, current)]
        if updates and moved == prices:
            raise ValueError(f"the oracle's window limit ({max_window_move / WAD:.2%}) stops the walk from {list(current)} to {list(targets)} at {prices}")
        prices = moved
        updates.append(prices)
    return updates


def _invariant(name: str, held: bool, detail: str) -> dict:
    return {"name": name, "held": bool(held), "detail": detail}


def _covered(round_: dict) -> bool:
    """A round its policy closed charged Σ haircuts == D; one finished at its deadline charged what it
    could and spread the rest over the winners' side (less what the vault had to cover)."""
    if not round_.get("fallback"):
        return round_.get("haircuts") == round_.get("deficit")
    return round_["haircuts"] + round_["socialised"] - min(round_["residual"], 0) >= round_["deficit"]
