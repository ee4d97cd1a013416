"""`scale`: the heavy runs timed against their budgets, each end to end through the command line in
a fresh process (as a user runs it), printed as a table and written to --out (report.md,
result.json). A benchmark, not a test: tests/test_scale.py checks what these runs produce, this
command how long they take. A run is stopped at three times its budget.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from backstop.cli.errors import Command
from backstop.cli.options import claim_out_dir, out_options

# name -> (what it is, the command's arguments, budget in seconds)
RUNS = {
    "chain-queue": ("crash on chain, 10,000 traders, queue (pnl-leverage)",
                    ["crash", "--traders", "10000", "--policy", "queue-pnl-leverage"], 300),
    "chain-pro-rata": ("crash on chain, 10,000 traders, pro-rata", ["crash", "--traders", "10000", "--policy", "pro-rata"], 300),
    "study-10k": ("policy study on the model, 10,000 traders, one seed", ["compare", "--no-chain", "--traders", "10000", "--seeds", "1"], 600),
    "study-100k": ("policy study on the model, 100,000 traders, one seed", ["compare", "--no-chain", "--traders", "100000", "--seeds", "1"], 60),
    "study-100k-full": ("the same with the vault-size sweep and the volunteer counterparts",
                        ["compare", "--no-chain", "--traders", "100000", "--seeds", "1", "--vault-sweep", "--volunteer-counterparts"], 300),
}


@click.command(cls=Command)
@click.option("--run", "names", type=click.Choice(list(RUNS)), multiple=True, help="A run (repeatable; default: all).")
@out_options(Path("reports/scale"))
def scale(names, out, force):
    """Time the heavy runs (10,000 traders on chain, 10,000 and 100,000 on the model) against their budgets."""
    out = claim_out_dir(out, force)
    from backstop.cli.writing import write_json

    rows = []
    for name in names or RUNS:
        what, arguments, budget = RUNS[name]
        click.echo(f"scale: {what} (budget {budget} s, stopped at {3 * budget} s) ...")
        with tempfile.TemporaryDirectory() as scratch:
            started = time.perf_counter()
            try:
                done = subprocess.run([sys.executable, "-m", "backstop.cli", *arguments, "--out", scratch],
                                      capture_output=True, text=True, timeout=3 * budget)
                last = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
                outcome = "ok" if done.returncode == 0 else f"failed: {last[0]}"
            except subprocess.TimeoutExpired:
                outcome = "stopped"
            seconds = time.perf_counter() - started
        within = outcome == "ok" and seconds <= budget
        rows.append({"run": name, "what": what, "command": "bin/backstop run " + " ".join(arguments), "budget_s": budget,
                     "seconds": round(seconds, 1), "outcome": outcome, "within_budget": within})
        click.echo(f"scale: {what}: {seconds:.0f} s, {outcome}, {'within' if within else 'over'} its budget")

    lines = ["# Heavy runs against their budgets", "", "| run | command | budget | time | outcome | within |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['what']} | `{r['command']}` | {r['budget_s']} s | {r['seconds']:.0f} s | {r['outcome']} | {'yes' if r['within_budget'] else 'no'} |"
              for r in rows]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    write_json(out / "result.json", {"schema": "backstop.scale", "schema_version": 1, "runs": rows})
    click.echo("\n".join(lines[2:]))
