"""The ADL policy study on the model: every policy on many seeds of one crash, the mean and spread of
each figure over the seeds, the whole replay of the first seed per policy (for its plots and its
loss attribution), and a sweep of the vault's size. `study_result` is what `compare` writes to
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
                vault_fractions: Sequence[float] = VAULT_FRACTIONS) -> list[Case]:
    """Every policy on every seed at the default vault size, then every policy at every vault
    size on the first seed."""
    cases = [Case(traders, seed, policy, DEFAULT_VAULT_FRACTION, steps) for seed in seeds for policy in policies]
    cases += [Case(traders, seeds[0], policy, fraction, steps) for fraction in vault_fractions if fraction != DEFAULT_VAULT_FRACTION
              for policy in policies]
    return cases


def run_study(traders: int, steps: int, seeds: Sequence[int], policies: Sequence[int], config: ProtocolConfig, scale: bool = True,
              vault_fractions: Sequence[float] = VAULT_FRACTIONS, runner=None, progress: Callable | None = None) -> dict:
    """The study's outcomes (`study_result`), replays run by `runner` (default: two processes)."""
    cases = study_cases(traders, steps, seeds, policies, vault_fractions)
    reference = seeds[0]
    outcomes = (runner or ProcessRunner()).run(
        cases, config, scale, series=lambda case: case.seed == reference and case.vault_fraction == DEFAULT_VAULT_FRACTION, progress=progress,
    )
    return study_result(traders, steps, seeds, policies, config, scale, vault_fractions, outcomes)


def study_result(traders: int, steps: int, seeds: Sequence[int], policies: Sequence[int], config: ProtocolConfig, scale: bool,
                 vault_fractions: Sequence[float], outcomes: list[dict]) -> dict:
    names = [POLICY_NAMES[policy] for policy in policies]
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
        "invariants_held": all(o["invariants_held"] for o in outcomes),
        "replays": len(outcomes),
        "replay_seconds": sum(o["seconds"] for o in outcomes),
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
