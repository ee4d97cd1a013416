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

from backstop.keeper.auctions import Volunteer, summarise
from backstop.keeper.waterfall import USDC, WAD, Keeper, KeeperReport
from backstop.sim.scenario import Scenario

Progress = Callable[[int, int, str], None]

# The scenario's volunteers (issue 15): from which auction premium each kind takes a bankrupt
# account's or the vault's position. Liquidators, who take positions over for a living, from 2%;
# market makers, who mostly buy back the alts they sold, from 3%. With the default auction (5% over
# 10 minutes) and a block a minute, liquidators take in the fifth block of an auction, market makers
# from the seventh. Each commits half of its free margin per pass (`Volunteer.margin_use`).
VOLUNTEER_THRESHOLDS = {"liquidator": WAD // 50, "market_maker": 3 * WAD // 100}


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
    # notional volunteers took in ADL rounds' auctions, and of the vault's positions in its unwinds
    volunteer_taken: float = 0.0
    unwound: float = 0.0


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

    def __init__(self, scenario: Scenario, log: Callable[[str], None], volunteers: bool = True, unwind: str = "profit"):
        self.scenario, self.log = scenario, log
        keys = scenario_keys(scenario.seed, len(scenario.traders))
        self.keys = keys
        self.traders = [address for address, _ in keys]
        self.liquidators = [a for a, trader in zip(self.traders, scenario.traders) if trader.kind == "liquidator"]
        # Whether ADL rounds open with a volunteer auction (the deployment's `volunteer_auctions`),
        # how the keeper unwinds the vault (backstop/keeper/auctions.py: "profit", "rebound", "targets", "all", "none"),
        # and who takes in the auctions: the liquidators and the market makers.
        self.volunteer_step, self.unwind = volunteers, unwind
        self.volunteers = [
            Volunteer(a, VOLUNTEER_THRESHOLDS[trader.kind])
            for a, trader in zip(self.traders, scenario.traders) if trader.kind in VOLUNTEER_THRESHOLDS
        ]
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

    def vault_open_notional(self) -> int:
        """Σ |size| x mark of the vault's positions now (collateral units)."""
        return self.keeper.venue.vault_open_notional()

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
        """Each step: time moves to the step's, prices move to its marks (within the oracle's max
        move per update), the keeper runs the waterfall with the step's liquidation depth."""
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
                volunteer_taken=report.volunteer_taken / USDC,
                unwound=report.unwound / USDC,
            ))
            progress(index + 1, total, f"t={step.time}s {report.line()}")
        self.settle_auctions()

    def settle_auctions(self) -> None:
        """After the path, at its last prices: the keeper goes on, a block a minute (the path's
        spacing), until every volunteer auction still running has ended and its round has been
        executed, so that each round opened late is resolved like the others. What these blocks
        do counts in the last step."""
        path = self.scenario.path
        auctioning = getattr(self.keeper.adl, "auctioning", None)
        if not auctioning or not path or not self.steps:
            return
        spacing = path[-1].time - path[-2].time if len(path) > 1 else 60
        seconds = path[-1].time
        last = self.steps[-1]
        for _ in range(10_000):
            if not auctioning:
                break
            seconds += spacing
            self.advance_to(seconds)
            self.push_prices(list(path[-1].prices))
            report = self.keeper.settle_auctions()
            self.reports.append(report)
            last.adl_closed += report.adl_closed / USDC
            last.volunteer_taken += report.volunteer_taken / USDC
            last.unwound += report.unwound / USDC
            last.vault_equity = self.vault_equity() / USDC

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
          "accounts_adl", "winners_hit", "residual_bad_debt" (negative value left at the end),
          "volunteer_taken" and "volunteer_premium" (notional volunteers took in the auctions that
          open ADL rounds, and the premium the winners paid them), "unwound" and "unwind_premium"
          (the vault's positions taken in its unwinds, and what it gave up against the mark),
          "volunteers_taking" (accounts that took), "vault_open_notional" (the vault's positions at
          the end, at the last marks)};
        - "auction": {"volunteers" (the volunteer step on), "unwind" (the keeper's unwind policy)};
        - "layers_by_step_auctions": per step {"volunteer_taken", "unwound"} notional;
        - "adl_rounds": every round's metrics (backstop/keeper/adl_executor.py RoundMetrics, as dicts);
        - "invariants": [{"name", "held", "detail"}]; "timings": seconds per phase.
        """
        scenario, reports = self.scenario, self.reports
        rounds = [round_ for report in reports for round_ in report.adl_rounds]
        pending = reports[-1].adl_pending if reports else []
        deficit = sum(round_.get("deficit", 0) for round_ in rounds) + sum(reports[-1].bankrupt.get(a, 0) for a in pending)
        state_values = self.final_state().values
        auctions = summarise([take for report in reports for take in report.auction_takes])
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
                "volunteer_taken": auctions["volunteer_notional"] / USDC,
                "volunteer_premium": auctions["volunteer_premium"] / USDC,
                "unwound": auctions["unwind_notional"] / USDC,
                "unwind_premium": auctions["unwind_premium"] / USDC,
                "volunteers_taking": auctions["takers"],
                "vault_open_notional": self.vault_open_notional() / USDC,
            },
            "auction": {"volunteers": self.volunteer_step, "unwind": self.unwind},
            "layers_by_step_auctions": [{"volunteer_taken": s.volunteer_taken, "unwound": s.unwound} for s in self.steps],
            "adl_rounds": rounds,
            "invariants": invariants,
            "timings": timings,
        }


def toward(price: int, target: int, max_move: int) -> int:
    """The price one oracle update can reach on the way from `price` to `target`."""
    step = price * max_move // WAD  # floor: |move| x WAD <= max_move x old price, as the oracle checks
    return max(min(target, price + step), price - step)


def price_updates(current: Sequence[int], targets: Sequence[int], max_move: int) -> list[list[int]]:
    """The oracle updates (all markets in each, so all stay fresh) that reach `targets`."""
    prices, updates = list(current), []
    while not updates or prices != list(targets):
        prices = [toward(price, target, max_move) for price, target in zip(prices, targets)]
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
