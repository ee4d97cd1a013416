"""`sweep`: model replays over seeds x policies x vault sizes x crowd sizes on Dask's distributed
scheduler (a local cluster by default; `--scheduler tcp://HOST:8786` for a running one, whose
workers need this checkout importable), or `--serial` in this process; the same numbers either
way. Writes result.json (every case's figures) and report.md (a table) to --out.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from backstop.cli.errors import Command
from backstop.cli.options import chosen_policies, claim_out_dir, config_option, out_options, policy_choice, scale_option


@click.command(cls=Command)
@click.option("--traders", "crowds", type=click.IntRange(min=10), multiple=True, help="Crowd size (repeatable; default 1000).")
@click.option("--seeds", type=click.IntRange(min=1), default=5, show_default=True, help="Seeds 0 .. N-1 (or from --seed).")
@click.option("--seed", type=int, default=0, show_default=True, help="First seed.")
@click.option("--steps", type=click.IntRange(min=4), default=48, show_default=True, help="Blocks in the price path.")
@click.option("--policy", "policies", type=policy_choice(), multiple=True, help="Policy (repeatable; default: all four).")
@click.option("--vault", "vaults", type=click.FloatRange(min=0, max=1, min_open=True), multiple=True,
              help="Vault's share of the traders' collateral (repeatable; default 0.2).")
@click.option("--scheduler", default=None, help="Address of a running Dask scheduler (default: a local cluster of --workers processes).")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True, help="Processes of the local cluster.")
@click.option("--serial", is_flag=True, help="Run every case in this process instead (no Dask).")
@config_option
@scale_option
@out_options(Path("reports/sweep"))
def sweep(crowds, seeds, seed, steps, policies, vaults, scheduler, workers, serial, config, scale_vault, out, force):
    """Sweep seeds x policies x vault sizes x crowd sizes on the model."""
    out = claim_out_dir(out, force)
    policy_ids = chosen_policies(policies)

    from backstop.cli.progress import progress_bar
    from backstop.cli.writing import write_json
    from backstop.report.sweep import write_sweep_report
    from backstop.sim.sweep import Case, DaskRunner, SerialRunner

    cases = [Case(traders, s, policy, vault, steps) for traders in (crowds or (1000,)) for vault in (vaults or (0.2,))
             for s in range(seed, seed + seeds) for policy in policy_ids]
    runner = SerialRunner() if serial else DaskRunner(scheduler, workers)
    where = "this process" if serial else (f"the Dask scheduler at {scheduler}" if scheduler else f"a local Dask cluster of {workers} workers")
    click.echo(f"sweep: {len(cases)} replays on {where}")
    started = time.perf_counter()
    with progress_bar("sweep", len(cases)) as progress:
        outcomes = runner.run(cases, config, scale_vault, progress=progress)
    document = {"schema": "backstop.sweep", "schema_version": 1, "cases": [o["case"] for o in outcomes],
                "outcomes": [{k: v for k, v in o.items() if k != "result"} for o in outcomes], "seconds": time.perf_counter() - started}
    write_json(out / "result.json", document)
    report = write_sweep_report(out, outcomes)
    click.echo(f"{len(cases)} replays in {document['seconds']:.1f} s; report: {report}")
