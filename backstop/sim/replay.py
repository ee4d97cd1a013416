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

import cchecksum
import coincurve
import sha3

from backstop.keeper.auctions import Volunteer, summarise
from backstop.keeper.waterfall import USDC, WAD, Keeper, KeeperReport
from backstop.model.protocol import reachable_price
from backstop.sim.attribution import VAULT, Ledger, record_adl_rounds, record_auction_takes, record_liquidations, record_takeovers, who_paid
from backstop.sim.result_schema import crash_result
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
    (about 50 µs each: coincurve's public key is most of it; kept for the next replay of the same
    scenario)."""
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
    """EIP-55 checksum form of a 20-byte address (cchecksum's C implementation: the Python one,
    with eth_utils' validation layers, costs more than the key itself at 100,000 accounts)."""
    return cchecksum.to_checksum_address(address)


def keccak_256(data: bytes):
    """Keccak-256 (pysha3's C implementation, a twentieth of pycryptodome's cost per call)."""
    return sha3.keccak_256(data)


@dataclass
class StepFigures:
    """What the keeper did in one price step (notionals and equity in collateral units)."""

    liquidated: int
    backstopped: int
    adl_closed: int
    adl_absorbed: int
    vault_equity: int
    # notional volunteers took in ADL rounds' auctions, and of the vault's positions in its unwinds
    volunteer_taken: int = 0
    unwound: int = 0


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
    """The phases of a replay, in order: prepare_markets, fund_accounts, open_positions (the
    `setup_phases`), walk_path, check_invariants, result (`run` does them all). A venue implements
    the hooks."""

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
        self.vault_equity_start = 0  # collateral units, after the vault's deposit
        self.steps: list[StepFigures] = []
        self.reports: list[KeeperReport] = []
        # Whether the replay's own keeper runs the waterfall after each price step (off: a keeper
        # beside the replay does, e.g. `run keeper` on a persistent node), and the wall-clock
        # seconds to wait after each step, so that such a keeper sees every block's prices.
        self.keeper_acts = True
        self.step_pause = 0.0

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

    def setup_phases(self) -> tuple:
        """The phases before the walk (a venue may have a shortcut to their outcome)."""
        return self.prepare_markets, self.fund_accounts, self.open_positions

    def run(self, progress: Progress | None = None) -> dict:
        """Every phase; the result with the seconds each phase took under "timings"."""
        timings = {}
        for phase in self.setup_phases():
            started = time.perf_counter()
            phase()
            timings[phase.__name__] = time.perf_counter() - started
        started = time.perf_counter()
        self.walk_path(progress or (lambda step, total, message: None))
        timings["walk_path"] = time.perf_counter() - started
        started = time.perf_counter()
        state = self.final_state()
        invariants = self.check_invariants(state)
        timings["check_invariants"] = time.perf_counter() - started
        return self.result(state, invariants, timings)

    def walk_path(self, progress: Progress) -> None:
        """Each step: time moves to the step's, prices move to its marks (within the oracle's move
        limits, an update per block), the keeper runs the waterfall with the step's liquidation depth."""
        total = len(self.scenario.path)
        watched = [*self.traders]
        for index, step in enumerate(self.scenario.path):
            self.advance_to(step.time)
            self.push_prices(list(step.prices))
            if self.keeper_acts:
                report = self.keeper.run_once(watched, liquidation_depth=dict(enumerate(step.liquidation_depth)))
            else:
                report = KeeperReport()
            if self.step_pause:
                time.sleep(self.step_pause)
            self.reports.append(report)
            self.steps.append(StepFigures(
                liquidated=sum(report.liquidated.values()),
                backstopped=sum(report.backstopped.values()),
                adl_closed=report.adl_closed,
                adl_absorbed=sum(round_.get("notional_absorbed", 0) for round_ in report.adl_rounds),
                vault_equity=self.vault_equity(),
                volunteer_taken=report.volunteer_taken,
                unwound=report.unwound,
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
            last.adl_closed += report.adl_closed
            last.adl_absorbed += sum(round_.get("notional_absorbed", 0) for round_ in report.adl_rounds)
            last.volunteer_taken += report.volunteer_taken
            last.unwound += report.unwound
            last.vault_equity = self.vault_equity()

    def check_invariants(self, state: FinalState) -> list[dict]:
        """The design's invariants over every account of the replay and the vault, in `state` (the end's)."""
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

    def result(self, state: FinalState, invariants: list[dict], timings: dict[str, float]) -> dict:
        """The figures of the replay (schema in backstop/sim/result_schema.py, `crash_result`) from
        the end's `state`: money in collateral units, prices in 1e18 fixed point, exact integers
        throughout."""
        scenario, reports = self.scenario, self.reports
        rounds = [round_ for report in reports for round_ in report.adl_rounds]
        pending = reports[-1].adl_pending if reports else []
        # An account whose round is still open at the end is pending without being in the last
        # pass's bankrupt accounts (the keeper leaves it to its round): its deficit is the round's.
        deficit = sum(round_.get("deficit", 0) for round_ in rounds) + sum(reports[-1].bankrupt.get(a, 0) for a in pending)
        refused: dict[str, list[str]] = {}
        for report in reports:
            for account, reason in report.refusals:
                refused.setdefault(reason, []).append(account)
        takes = [take for report in reports for take in report.auction_takes]
        auctions = summarise(takes)
        return crash_result(
            scenario=scenario,
            steps=self.steps,
            vault_equity_start=self.vault_equity_start,
            totals={
                "liquidated": sum(s.liquidated for s in self.steps),
                "backstopped": sum(s.backstopped for s in self.steps),
                "adl_closed": sum(s.adl_closed for s in self.steps),
                "adl_absorbed": sum(s.adl_absorbed for s in self.steps),
                "deficit": deficit,
                "vault_pnl": (self.steps[-1].vault_equity if self.steps else self.vault_equity_start) - self.vault_equity_start,
                "residual_bad_debt": -sum(v for v in state.values if v < 0),
                "accounts_liquidated": len({a for r in reports for a in r.liquidated_accounts}),
                "accounts_backstopped": len({a for r in reports for a in r.backstopped_accounts}),
                "accounts_refused": len({a for accounts in refused.values() for a in accounts}),
                "accounts_adl": len({a for r in reports for a in r.bankrupt}),
                "adl_rounds": len(rounds),
                "winners_hit": len({winner for round_ in rounds for winner in round_["haircut_by_winner"]}),
                "volunteer_taken": auctions["volunteer_notional"],
                "volunteer_premium": auctions["volunteer_premium"],
                "unwound": auctions["unwind_notional"],
                "unwind_premium": auctions["unwind_premium"],
                "volunteers_taking": auctions["takers"],
                "vault_open_notional": self.vault_open_notional(),
            },
            refusals={reason: {"attempts": len(accounts), "accounts": len(set(accounts))} for reason, accounts in sorted(refused.items())},
            who_paid=self._who_paid(state, rounds, takes),
            auction={"volunteers": self.volunteer_step, "unwind": self.unwind},
            adl_rounds=rounds,
            invariants=invariants,
            timings=timings,
        )

    def _who_paid(self, state: FinalState, rounds: list[dict], takes: list) -> dict:
        """The loss attribution of backstop/sim/attribution.py over every account of the replay."""
        ledger = Ledger()
        kind_of = {address: trader.kind for address, trader in zip(self.traders, self.scenario.traders)}
        kind_of[self.vault_address] = VAULT
        for address, trader in zip(self.traders, self.scenario.traders):
            ledger.put_in[address] += trader.collateral
        ledger.put_in[self.vault_address] += self.scenario.vault_deposit
        for address, value in zip([*self.traders, self.vault_address], state.values):
            ledger.end[address] = value
        for report in self.reports:
            record_liquidations(ledger, report.liquidation_fees, self.vault_address)
            record_takeovers(ledger, report.takeovers, self.vault_address)
        record_adl_rounds(ledger, rounds, self.vault_address)
        record_auction_takes(ledger, takes)
        return who_paid(ledger, kind_of)


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
