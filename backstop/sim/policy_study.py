"""The ADL policy study's figures: one replay's outcome under one policy (`policy_metrics`), where a
chain run and a model run of the same policy disagree (`compare_runs`), and the mean and spread of
each figure over seeds (`across_seeds`).

Money is in collateral units (1e6 = $1), as in every result (backstop/sim/result_schema.py).
"""

from __future__ import annotations

import statistics

from backstop.model.adl import POLICY_NAMES
from backstop.sim.inequality import gini, largest_share

# Figures a chain run and a model run of the same scenario and policy must share exactly.
EXACT_FIGURES = ("deficit", "haircuts", "notional_closed", "min_notional_closed", "notional_absorbed", "winners_hit", "hedged_hit",
                 "residual_bad_debt", "vault_pnl", "who_paid", "volunteer_taken", "volunteer_premium", "socialised", "unwound",
                 "unwind_premium", "vault_open_notional")
# Figures summarised over seeds (mean, standard deviation, least, most).
SEED_FIGURES = ("deficit", "notional_closed", "min_notional_closed", "notional_absorbed", "closed_over_deficit", "gini",
                "largest_share", "winners_hit", "hedged_hit", "rounds", "vault_pnl", "vault_equity_low", "residual_bad_debt",
                "volunteer_taken", "volunteer_premium", "socialised", "unwound", "unwind_premium", "vault_open_notional")
# What each figure means: the reports' definitions.
DEFINITIONS = {
    "deficit": "D: the negative value of every bankrupt account ADL resolved (the vault refused them), summed over rounds",
    "haircuts": "Σ of what winners gave up in ADL rounds; equals D to the unit under every policy",
    "notional_closed": "winners' positions force-closed by ADL, at the round's price (notional, summed over rounds)",
    "min_notional_closed": "the least any policy had to force-close: the bankrupt positions the vault's limits could not absorb when each round opened",
    "notional_absorbed": "bankrupt positions the insurance vault took onto its books inside ADL rounds, at the round's price (moves no value)",
    "closed_over_deficit": "notional force-closed per dollar of deficit (10 Oct 2025: about 28x)",
    "gini": "Gini coefficient of the haircuts, over every winner who paid, each winner's haircuts summed over all rounds (0: all paid alike)",
    "largest_share": "the largest single winner's haircuts (summed over rounds) as a share of all haircuts",
    "winners_hit": "distinct accounts that paid a haircut or were force-closed in any round",
    "hedged_hit": "of those, accounts whose book was hedged when hit (net exposure under half their gross exposure)",
    "rounds": "ADL rounds: one per bankrupt account resolved",
    "vault_pnl": "the insurance vault's equity at the end of the replay minus its equity after its deposit, before the crash",
    "vault_equity_low": "the vault's lowest equity after any step of the replay",
    "residual_bad_debt": "negative value still left in any account at the end (0: every deficit was covered)",
    "volunteer_taken": "bankrupt positions volunteers (the scenario's liquidators and market makers) took in the auctions that open ADL "
                       "rounds, at the auction's price (notional)",
    "volunteer_premium": "what those volunteers gained against the mark (the auction's discount); it joins D, so the winners pay it",
    "socialised": "deficit spread over the winners' side by the loss index when rounds closed: rounding, funding, the market's move "
                  "on what volunteers took while a round's auction ran, and the fallback's",
    "unwound": "the vault's positions taken in its unwind auctions (notional, at the auction's price)",
    "unwind_premium": "what the vault gave up against the mark in its unwind auctions (part of its PnL)",
    "vault_open_notional": "the vault's positions left at the end of the replay, at the last marks",
}


def policy_metrics(policy: int, result: dict) -> dict:
    """The figures of one policy over a whole replay (see DEFINITIONS); "haircuts_list" holds each
    paying winner's haircuts summed over all rounds (the distribution plot's data)."""
    rounds = result["adl_rounds"]
    totals = result["totals"]
    by_winner = haircuts_by_winner(rounds)
    deficit = sum(r["deficit"] for r in rounds)
    closed = sum(r["notional_closed"] for r in rounds)
    haircuts = sorted(amount for amount in by_winner.values() if amount > 0)
    return {
        "policy": POLICY_NAMES[policy],
        "deficit": deficit,
        "haircuts": sum(r["haircuts"] for r in rounds),
        "notional_closed": closed,
        "min_notional_closed": sum(r["min_notional_closed"] for r in rounds),
        "notional_absorbed": sum(r["notional_absorbed"] for r in rounds),
        "closed_over_deficit": closed / deficit if deficit else 0.0,
        "gini": gini(haircuts),
        "largest_share": largest_share(haircuts),
        "winners_hit": len(by_winner),
        "hedged_hit": len({winner for r in rounds for winner in r["hedged_winners"]}),
        "rounds": len(rounds),
        "vault_pnl": result["totals"]["vault_pnl"],
        "vault_equity_start": result["vault_equity_start"],
        "vault_equity_low": min(result["vault_equity"], default=result["vault_equity_start"]),
        "residual_bad_debt": result["totals"]["residual_bad_debt"],
        "who_paid": result["who_paid"],
        "volunteer_taken": totals.get("volunteer_taken", 0),
        "volunteer_premium": totals.get("volunteer_premium", 0),
        "socialised": sum(r.get("socialised", 0) for r in rounds),
        "unwound": totals.get("unwound", 0),
        "unwind_premium": totals.get("unwind_premium", 0),
        "vault_open_notional": totals.get("vault_open_notional", 0),
        "haircuts_list": haircuts,
    }


def haircuts_by_winner(rounds: list[dict]) -> dict[str, int]:
    """Each winner hit by any round: its haircuts summed over the rounds (0 if only closed)."""
    by_winner: dict[str, int] = {}
    for round_ in rounds:
        for winner, haircut in round_["haircut_by_winner"].items():
            by_winner[winner] = by_winner.get(winner, 0) + haircut
    return by_winner


def compare_runs(model: dict, chain: dict) -> list[str]:
    """Every figure on which a model run and a chain run of the same policy differ."""
    return [f"{name}: model {model[name]} != chain {chain[name]}" for name in EXACT_FIGURES if model[name] != chain[name]]


def across_seeds(rows: list[dict]) -> dict:
    """Per figure of SEED_FIGURES over `rows` (one policy's metrics, one per seed): "mean", "std"
    (population standard deviation, 0 for one seed), "min" and "max"."""
    summary = {}
    for name in SEED_FIGURES:
        values = [row[name] for row in rows]
        summary[name] = {"mean": statistics.fmean(values), "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
                         "min": min(values), "max": max(values)}
    return summary
