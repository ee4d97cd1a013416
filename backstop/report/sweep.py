"""The sweep's report: one row per crowd size, vault size and policy with the mean over the seeds,
then every case (backstop/sim/sweep.py outcomes)."""

from __future__ import annotations

from pathlib import Path

from backstop.report.format import dollars, table

FIGURES = ("deficit", "notional_closed", "notional_absorbed", "vault_pnl", "winners_hit", "gini")
HEADERS = ("deficit D", "force-closed", "absorbed by the vault", "vault PnL", "winners hit", "Gini of haircuts")


def _cells(metrics: dict) -> list[str]:
    return [dollars(metrics[f]) if f not in ("winners_hit", "gini") else (f"{metrics[f]:.3f}" if f == "gini" else f"{metrics[f]:,.1f}")
            for f in FIGURES]


def write_sweep_report(out_dir: Path, outcomes: list[dict]) -> Path:
    groups: dict[tuple, list[dict]] = {}
    for outcome in outcomes:
        case = outcome["case"]
        groups.setdefault((case["traders"], case["vault_fraction"], outcome["metrics"]["policy"]), []).append(outcome["metrics"])
    means = [[f"{traders:,}", f"{vault:.0%}", policy, f"{len(rows)}",
              *_cells({f: sum(row[f] for row in rows) / len(rows) for f in FIGURES})] for (traders, vault, policy), rows in groups.items()]
    cases = [[f"{o['case']['traders']:,}", f"{o['case']['vault_fraction']:.0%}", o["metrics"]["policy"], str(o["case"]["seed"]),
              *_cells(o["metrics"]), "✓" if o["invariants_held"] else "✗", f"{o['seconds']:.1f}"] for o in outcomes]
    lines = ["# Backstop sweep", "", f"{len(outcomes)} model replays. Money in dollars; the exact figures are in result.json.", "",
             "## Means over the seeds", "", *table(["traders", "vault", "policy", "seeds", *HEADERS], means), "",
             "## Every case", "", *table(["traders", "vault", "policy", "seed", *HEADERS, "invariants", "seconds"], cases), ""]
    report = Path(out_dir) / "report.md"
    report.write_text("\n".join(lines))
    return report
