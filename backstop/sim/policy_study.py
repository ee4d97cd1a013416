"""The ADL policy study: one scenario under every policy, on the model and on chain, measured alike.

`policy_metrics` turns a replay's result into the issue's figures for one policy; `compare_runs`
lists where a chain run and a model run of the same policy disagree (they must not).
"""

from __future__ import annotations

from backstop.model.adl import POLICY_NAMES
from backstop.sim.inequality import gini, largest_share

USDC = 10**6
# Figures a chain run and a model run of the same scenario and policy must share exactly.
EXACT_FIGURES = ("deficit", "haircuts", "notional_closed", "min_notional_closed", "winners_hit", "hedged_hit", "residual_bad_debt")


def policy_metrics(policy: int, result: dict) -> dict:
    """The figures of one policy over the whole replay (`PolicyMetrics` of backstop/report/crash.py;
    dollars as floats). Haircut concentration (Gini, largest share) is over each winner's total
    across all rounds."""
    rounds = result["adl_rounds"]
    by_winner: dict[str, int] = {}
    for round_ in rounds:
        for winner, haircut in round_["haircut_by_winner"].items():
            by_winner[winner] = by_winner.get(winner, 0) + haircut
    deficit = sum(r["deficit"] for r in rounds)
    closed = sum(r["notional_closed"] for r in rounds)
    haircuts = [amount for amount in by_winner.values() if amount > 0]
    return {
        "policy": POLICY_NAMES[policy],
        "deficit": deficit / USDC,
        "haircuts": sum(r["haircuts"] for r in rounds) / USDC,
        "notional_closed": closed / USDC,
        "min_notional_closed": sum(r["min_notional_closed"] for r in rounds) / USDC,
        "notional_absorbed": sum(r["notional_absorbed"] for r in rounds) / USDC,
        "closed_over_deficit": closed / deficit if deficit else 0.0,
        "gini": gini(haircuts),
        "largest_share": largest_share(haircuts),
        "winners_hit": len(by_winner),
        "hedged_hit": len({winner for r in rounds for winner in r["hedged_winners"]}),
        "rounds": len(rounds),
        "vault_pnl": result["totals"]["vault_pnl"],
        "residual_bad_debt": result["totals"]["residual_bad_debt"],
        "haircuts_list": [amount / USDC for amount in haircuts],
    }


def compare_runs(model: dict, chain: dict) -> list[str]:
    """Every figure on which a model run and a chain run of the same policy differ."""
    return [
        f"{name}: model {model[name]} != chain {chain[name]}"
        for name in EXACT_FIGURES
        if model[name] != chain[name]
    ]
