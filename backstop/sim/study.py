"""The ADL policy study on the model: every policy on many seeds of one crash, the mean and spread of
each figure over the seeds, the whole replay of the first seed per policy (for its plots and its
loss attribution), a sweep of the vault's size, and the first seed per policy with the volunteer
step switched the other way (issue 15: what volunteers take off forced ADL, and at what premium). `study_result` is what `compare` writes to
result.json (schema "backstop.policy-study", units as backstop/sim/result_schema.py says).
"""

from __future__ import annotations

from typing import Callable, Sequence

from backstop.chain.deployment import ProtocolConfig
from backstop.model.adl import POLICY_NAMES
from backstop.sim.policy_study import across_seeds
from backstop.sim.result_schema import SCHEMA_VERSION, UNITS
from backstop.sim.sweep import DEFAULT_VAULT_FRACTION, Case, ProcessRunner, case_config

# The vault's share of the traders' collateral in the vault-size sweep (the default scenario's: 20%).
VAULT_FRACTIONS = (0.05, 0.1, 0.2, 0.4)
# What the per-seed rows keep (the reference seed keeps everything).
_PER_SEED_DROPPED = ("who_paid", "haircuts_list")
# What the reference replay keeps of a crash result (its per-round detail stays out: it is large).
_REFERENCE_KEYS = ("scenario", "prices", "times", "layers_by_step", "vault_equity", "vault_equity_start", "totals", "refusals", "who_paid",
                   "invariants")


def study_cases(traders: int, steps: int, seeds: Sequence[int], policies: Sequence[int],
                vault_fractions: Sequence[float] = VAULT_FRACTIONS, volunteers: bool = True, unwind: str = "profit",
                counterparts: bool = True) -> list[Case]:
    """Every policy on every seed at the default vault size, then every policy at every vault
    size on the first seed, then (with `counterparts`) every policy on the first seed with the
    volunteer step the other way."""
    cases = [Case(traders, seed, policy, DEFAULT_VAULT_FRACTION, steps, volunteers, unwind) for seed in seeds for policy in policies]
    cases += [Case(traders, seeds[0], policy, fraction, steps, volunteers, unwind) for fraction in vault_fractions
              if fraction != DEFAULT_VAULT_FRACTION for policy in policies]
    if counterparts:
        cases += [Case(traders, seeds[0], policy, DEFAULT_VAULT_FRACTION, steps, not volunteers, unwind) for policy in policies]
    return cases


def run_study(traders: int, steps: int, seeds: Sequence[int], policies: Sequence[int], config: ProtocolConfig, scale: bool = True,
              vault_fractions: Sequence[float] = VAULT_FRACTIONS, runner=None, progress: Callable | None = None,
              volunteers: bool = True, unwind: str = "profit", counterparts: bool = True) -> dict:
    """The study's outcomes (`study_result`), replays run by `runner` (default: two processes).
    `volunteers` and `unwind`: the volunteer step and the keeper's unwind policy of every replay
    but the counterparts, which switch the volunteer step the other way (none without
    `counterparts`)."""
    cases = study_cases(traders, steps, seeds, policies, vault_fractions, volunteers, unwind, counterparts)
    reference = seeds[0]
    outcomes = (runner or ProcessRunner()).run(
        cases, config, scale, series=lambda case: (case.seed == reference and case.vault_fraction == DEFAULT_VAULT_FRACTION
                                                   and case.volunteers == volunteers), progress=progress,
    )
    return study_result(traders, steps, seeds, policies, config, scale, vault_fractions, outcomes, volunteers, unwind)


def study_result(traders: int, steps: int, seeds: Sequence[int], policies: Sequence[int], config: ProtocolConfig, scale: bool,
                 vault_fractions: Sequence[float], outcomes: list[dict], volunteers: bool = True, unwind: str = "profit") -> dict:
    names = [POLICY_NAMES[policy] for policy in policies]
    counterparts = [o for o in outcomes if o["case"].get("volunteers", True) != volunteers]
    outcomes = [o for o in outcomes if o["case"].get("volunteers", True) == volunteers]
    default = [o for o in outcomes if o["case"]["vault_fraction"] == DEFAULT_VAULT_FRACTION]
    by_policy = {}
    for policy, name in zip(policies, names):
        rows = [o["metrics"] for o in default if o["case"]["policy"] == policy]
        by_policy[name] = {"per_seed": [{k: v for k, v in row.items() if k not in _PER_SEED_DROPPED} | {"seed": seed}
                                        for row, seed in zip(rows, seeds)],
                           "summary": across_seeds(rows)}
    reference = {}
    for o in default:
        if "result" in o:
            name = POLICY_NAMES[o["case"]["policy"]]
            reference[name] = {key: o["result"][key] for key in _REFERENCE_KEYS} | {"metrics": o["metrics"]}
    return {
        "schema": "backstop.policy-study",
        "schema_version": SCHEMA_VERSION,
        "units": UNITS,
        "traders": traders,
        "steps": steps,
        "seeds": list(seeds),
        "reference_seed": seeds[0],
        "policies": names,
        "vault_limits_scaled": scale,
        "vault_limits": _vault_limits(case_config(config, traders, DEFAULT_VAULT_FRACTION, scale)),
        "by_policy": by_policy,
        "reference": reference,
        "vault_sweep": _vault_sweep(outcomes, policies, seeds[0], sorted({*vault_fractions, DEFAULT_VAULT_FRACTION})),
        "auction": {"volunteers": volunteers, "unwind": unwind},
        "volunteer_step": volunteer_step(default, counterparts, policies, seeds[0], volunteers),
        "invariants_held": all(o["invariants_held"] for o in [*outcomes, *counterparts]),
        "replays": len(outcomes) + len(counterparts),
        "replay_seconds": sum(o["seconds"] for o in [*outcomes, *counterparts]),
    }


# What the volunteer-step comparison keeps of each replay's metrics.
VOLUNTEER_FIGURES = ("deficit", "notional_closed", "volunteer_taken", "volunteer_premium", "socialised", "winners_hit", "vault_pnl",
                     "unwound", "unwind_premium", "vault_open_notional")


def volunteer_step(default: list[dict], counterparts: list[dict], policies: Sequence[int], seed: int, volunteers: bool) -> dict:
    """Per policy, the first seed with and without the volunteer step: VOLUNTEER_FIGURES of each,
    and what the step changed in winners' notional force-closed ("closed_drop", money, and
    "closed_drop_share" of the force-closed without it)."""
    runs = {(o["case"]["policy"], o["case"].get("volunteers", True)): o["metrics"]
            for o in [*default, *counterparts] if o["case"]["seed"] == seed}
    comparison = {}
    for policy in policies:
        if (policy, True) in runs and (policy, False) in runs:
            comparison[POLICY_NAMES[policy]] = _compared(runs[(policy, True)], runs[(policy, False)])
    return {"seed": seed, "policies": comparison}


def volunteer_comparison(runs: dict[bool, dict], policy_name: str, seed: int) -> dict:
    """`volunteer_step`'s shape for one policy: `runs` maps the volunteer step (on, off) to the
    replay's metrics (backstop/sim/policy_study.py `policy_metrics`)."""
    return {"seed": seed, "policies": {policy_name: _compared(runs[True], runs[False])}}


def _compared(on: dict, off: dict) -> dict:
    drop = off["notional_closed"] - on["notional_closed"]
    return {
        "with": {figure: on[figure] for figure in VOLUNTEER_FIGURES},
        "without": {figure: off[figure] for figure in VOLUNTEER_FIGURES},
        "closed_drop": drop,
        "closed_drop_share": drop / off["notional_closed"] if off["notional_closed"] else 0.0,
    }


def _vault_sweep(outcomes: list[dict], policies: Sequence[int], seed: int, fractions: list[float]) -> dict:
    """Per vault size (first seed): the vault's capital and, per policy, winners' notional
    force-closed and the vault's PnL."""
    found = {(o["case"]["policy"], o["case"]["vault_fraction"]): o for o in outcomes if o["case"]["seed"] == seed}
    fractions = [f for f in fractions if all((p, f) in found for p in policies)]
    capital = [found[(policies[0], f)]["metrics"]["vault_equity_start"] for f in fractions]
    return {
        "seed": seed,
        "fractions": fractions,
        "vault_capital": capital,
        "policies": {
            POLICY_NAMES[p]: {"notional_closed": [found[(p, f)]["metrics"]["notional_closed"] for f in fractions],
                              "vault_pnl": [found[(p, f)]["metrics"]["vault_pnl"] for f in fractions],
                              "deficit": [found[(p, f)]["metrics"]["deficit"] for f in fractions]}
            for p in policies
        },
    }


def _vault_limits(config: ProtocolConfig) -> dict:
    return {"loss_cap_per_event": config.vault_loss_cap_per_event, "loss_cap_per_day": config.vault_loss_cap_per_day,
            "max_leverage": config.vault_max_leverage, "max_position": {m.name: m.vault_max_position for m in config.markets}}
