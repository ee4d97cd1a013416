"""The shape of the figures a crash replay and the policy study write to `result.json`: one unit
system (the protocol's own: integers, money in collateral units, prices in 1e18 fixed point), a
schema name and version, and what every field means.

A crash result (`crash_result`, schema "backstop.crash"):

- "scenario": seed, traders, steps, run_up_blocks, markets (names), traders_by_kind,
  collateral_by_kind and vault_deposit (money);
- "prices": per step, the mark of each market (price); "times": per step, seconds since the
  start of the walk;
- "layers_by_step": per step, the notional each layer handled: "liquidated" (taken by
  liquidators), "backstopped" (taken over by the vault), "adl_closed" (winners' positions
  force-closed by ADL), "adl_absorbed" (bankrupt positions the vault absorbed inside ADL),
  "volunteer_taken" (bankrupt positions volunteers took in the auctions that open ADL rounds),
  "unwound" (the vault's positions taken in its unwind auctions);
- "vault_equity": per step, the vault's account value after the keeper's pass (money, negative
  while under water); "vault_equity_start": after its deposit, before the crash;
- "totals": those six notionals summed; "deficit" (negative value of the bankrupt accounts ADL
  resolved, or that wait for it, volunteers' premiums included); "vault_pnl" (equity at the end
  minus at the start, its unwind included); "residual_bad_debt" (negative value left in any
  account at the end); "volunteer_premium" (what volunteers gained against the mark, which the
  winners pay through D), "unwind_premium" (what the vault gave up against the mark in its
  unwind), "vault_open_notional" (the vault's positions at the end, at the last marks); counts:
  accounts liquidated, backstopped, refused by the vault, bankrupt (sent to ADL), ADL rounds,
  winners hit, volunteers that took ("volunteers_taking");
- "auction": "volunteers" (whether ADL rounds opened with a volunteer auction), "unwind" (the
  keeper's unwind policy for the vault, backstop/keeper/auctions.py);
- "refusals": per reason the vault gave (the limit that refused), {"attempts", "accounts"};
- "who_paid": the loss attribution of backstop/sim/attribution.py (money);
- "adl_rounds": every round's metrics (backstop/keeper/adl_executor.py RoundMetrics; money);
- "invariants": [{"name", "held", "detail"}]; "timings": seconds per phase.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict

from backstop.sim.attribution import COLUMNS
from backstop.sim.scenario import Scenario

SCHEMA_VERSION = 1
UNITS = {
    "money": "collateral units, integers: 1,000,000 = $1 (the collateral token has 6 decimals)",
    "price": "collateral per base unit, 1e18 fixed point, integers",
    "time": "seconds",
    "ratio": "plain numbers (shares, multiples, Gini)",
}


def scenario_info(scenario: Scenario) -> dict:
    """What a result records of the scenario it replayed."""
    collateral: Counter = Counter()
    for trader in scenario.traders:
        collateral[trader.kind] += trader.collateral
    return {
        "seed": scenario.seed,
        "traders": len(scenario.traders),
        "steps": len(scenario.path),
        "run_up_blocks": len(scenario.run_up),
        "markets": [market.name for market in scenario.markets],
        "traders_by_kind": dict(Counter(trader.kind for trader in scenario.traders)),
        "collateral_by_kind": dict(collateral),
        "vault_deposit": scenario.vault_deposit,
    }


def crash_result(*, scenario: Scenario, steps: list, vault_equity_start: int, totals: dict, refusals: dict, who_paid: dict,
                 adl_rounds: list[dict], invariants: list[dict], timings: dict, auction: dict | None = None) -> dict:
    """A crash result (see the module's docstring); `steps` are backstop/sim/replay.py StepFigures.
    The attribution's sums are checked here and reported as one more invariant."""
    unbalanced = [column for column in ("pnl", *COLUMNS) if who_paid["total"][column] != 0]
    balanced = {
        "name": "who paid: the loss attribution sums to zero in every column",
        "held": not unbalanced and who_paid["total"]["end"] == who_paid["total"]["put_in"],
        "detail": "each layer's transfers and the PnL add up to zero, to the unit" if not unbalanced else f"unbalanced: {unbalanced}",
    }
    return {
        "schema": "backstop.crash",
        "schema_version": SCHEMA_VERSION,
        "units": UNITS,
        "scenario": scenario_info(scenario),
        "prices": [list(step.prices) for step in scenario.path],
        "times": [step.time for step in scenario.path],
        "layers_by_step": [{key: value for key, value in asdict(step).items() if key != "vault_equity"} for step in steps],
        "vault_equity": [step.vault_equity for step in steps],
        "vault_equity_start": vault_equity_start,
        "totals": totals,
        "refusals": refusals,
        "auction": auction or {"volunteers": False, "unwind": "none"},
        "who_paid": who_paid,
        "adl_rounds": adl_rounds,
        "invariants": [*invariants, balanced],
        "timings": timings,
    }
