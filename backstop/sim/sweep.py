"""A sweep of model replays over seeds x policies x vault sizes x crowd sizes, one `Case` per replay,
run one after the other, in local processes, or on a Dask cluster; every runner returns the same
numbers in the same order.

A case is self-contained (the crowd, the seed, the policy, the vault's size and the deployment
parameters), so any worker can run it: it generates its scenario, scales the vault's limits with
the crowd and the vault (`case_config`), replays on the model and returns the policy's figures
(`run_case`). A process keeps the last scenario and its model opening (backstop/sim/model_replay.py
`model_opening`) for the next case of the same crowd, seed and vault, and the runners hand the
cases out in that order (`by_opening`): at 100,000 traders the opening is 10 s of a 25 s replay.
Dask's distributed scheduler (`DaskRunner`) starts a local cluster by default or connects to any
scheduler address; its workers need this package importable (the same checkout on their path).
"""

from __future__ import annotations

import functools
import multiprocessing
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Callable, Sequence

from backstop.chain.deployment import ProtocolConfig, scaled_vault_limits
from backstop.model.adl import POLICY_NAMES
from backstop.sim.model_replay import model_opening, replay_on_model
from backstop.sim.policy_study import policy_metrics
from backstop.sim.scenario import Scenario, generate

Progress = Callable[[int, int, str], None]
# The vault holds this share of the traders' collateral in the default scenario, and the default
# deployment's vault limits are sized for it and 1,000 traders.
DEFAULT_VAULT_FRACTION = 0.2
DEFAULT_CROWD = 1000


@dataclass(frozen=True)
class Case:
    """One replay of the sweep."""

    traders: int
    seed: int
    policy: int
    vault_fraction: float = DEFAULT_VAULT_FRACTION
    steps: int = 48
    # the volunteer step (ADL rounds open with an auction) and the keeper's unwind policy (issue 15)
    volunteers: bool = True
    unwind: str = "profit"

    def label(self) -> str:
        return (f"{self.traders:,} traders, seed {self.seed}, {POLICY_NAMES.get(self.policy, self.policy)}, vault {self.vault_fraction:.0%}"
                + ("" if self.volunteers else ", no volunteers"))


def case_config(config: ProtocolConfig, traders: int, vault_fraction: float, scale: bool = True) -> ProtocolConfig:
    """`config` with the vault's loss caps and position limits scaled to the case: in proportion to
    the crowd and to the vault's share of the traders' collateral, so that a vault twice as big may
    lose and hold twice as much (unscaled if `scale` is False)."""
    if not scale:
        return config
    factor = Fraction(traders, DEFAULT_CROWD) * Fraction(vault_fraction).limit_denominator(10**6) / Fraction(DEFAULT_VAULT_FRACTION).limit_denominator()
    return scaled_vault_limits(config, factor)


def run_case(case: Case, config: ProtocolConfig, scale: bool = True, series: bool = False) -> dict:
    """The replay of `case` on the model: {"case", "metrics"} (backstop/sim/policy_study.py
    `policy_metrics`), and with `series` the whole result of the replay under "result"."""
    config = case_config(config, case.traders, case.vault_fraction, scale)
    scenario, opening = _opening(case.traders, case.seed, case.steps, case.vault_fraction, config)
    result = replay_on_model(scenario, case.policy, config, volunteers=case.volunteers, unwind=case.unwind, opening=opening)
    outcome = {"case": asdict(case), "metrics": policy_metrics(case.policy, result),
               "seconds": sum(result["timings"].values()), "invariants_held": all(check["held"] for check in result["invariants"])}
    if series:
        outcome["result"] = result
    return outcome


@functools.lru_cache(maxsize=1)
def _opening(traders: int, seed: int, steps: int, vault_fraction: float, config: ProtocolConfig) -> tuple[Scenario, bytes]:
    """The scenario of the cases with this crowd, seed, length and vault, and its model opening
    under `config` (the same for every policy and volunteer step)."""
    scenario = generate(traders, seed, steps, vault_fraction=vault_fraction)
    return scenario, model_opening(scenario, config)


def by_opening(cases: Sequence[Case]) -> list[int]:
    """The indices of `cases`, big crowds first (so that processes finish together), the cases
    that share an opening together."""
    return sorted(range(len(cases)), key=lambda i: (-cases[i].traders, cases[i].seed, cases[i].steps, cases[i].vault_fraction))


# ---------------------------------------------------------------- runners

class SerialRunner:
    """Every case in this process, in order."""

    def run(self, cases: Sequence[Case], config: ProtocolConfig, scale: bool = True, series: Callable[[Case], bool] = lambda case: False,
            progress: Progress | None = None) -> list[dict]:
        outcomes: dict[int, dict] = {}
        for index in by_opening(cases):
            outcomes[index] = run_case(cases[index], config, scale, series(cases[index]))
            (progress or _silent)(len(outcomes), len(cases), cases[index].label())
        return [outcomes[index] for index in range(len(cases))]


class ProcessRunner:
    """Up to `processes` cases at once, each in a process of its own on this machine."""

    def __init__(self, processes: int = 2):
        self.processes = processes

    def run(self, cases: Sequence[Case], config: ProtocolConfig, scale: bool = True, series: Callable[[Case], bool] = lambda case: False,
            progress: Progress | None = None) -> list[dict]:
        if self.processes <= 1 or len(cases) <= 1:
            return SerialRunner().run(cases, config, scale, series, progress)
        jobs = [(index, cases[index], config, scale, series(cases[index])) for index in by_opening(cases)]
        outcomes: dict[int, dict] = {}
        context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
        with context.Pool(min(self.processes, len(jobs))) as pool:
            for index, outcome in pool.imap_unordered(_run_job, jobs, chunksize=1):
                outcomes[index] = outcome
                (progress or _silent)(len(outcomes), len(cases), cases[index].label())
        return [outcomes[index] for index in range(len(cases))]


class DaskRunner:
    """The cases as tasks on Dask's distributed scheduler: a local cluster of `workers` processes
    (one thread each: a replay holds the GIL) unless `address` names a running scheduler."""

    def __init__(self, address: str | None = None, workers: int = 2):
        self.address, self.workers = address, workers

    def run(self, cases: Sequence[Case], config: ProtocolConfig, scale: bool = True, series: Callable[[Case], bool] = lambda case: False,
            progress: Progress | None = None) -> list[dict]:
        from dask.distributed import Client, LocalCluster, as_completed

        if self.address is None:
            cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True, dashboard_address=None)
            client = Client(cluster)
        else:
            cluster, client = None, Client(self.address)
        try:
            futures = {client.submit(run_case, cases[index], config, scale, series(cases[index]), pure=False, key=f"case-{index}"): index
                       for index in by_opening(cases)}
            outcomes: dict[int, dict] = {}
            for future in as_completed(futures):
                index = futures[future]
                outcomes[index] = future.result()
                (progress or _silent)(len(outcomes), len(cases), cases[index].label())
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
        return [outcomes[index] for index in range(len(cases))]


def _run_job(job: tuple) -> tuple[int, dict]:
    index, case, config, scale, with_series = job
    return index, run_case(case, config, scale, with_series)


def _silent(done: int, total: int, note: str) -> None:
    pass
