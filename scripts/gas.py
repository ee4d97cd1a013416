"""`ape run gas`: gas per operation of Backstop's margin pool and clearinghouse, against the targets.

What is measured and how, and the targets: backstop/sim/gas_benchmark.py (the operations) and
backstop/sim/adl_benchmark.py (ADL by k and n); the tables: backstop/report/gas.py.

Run:   ape run gas                  (table on the terminal, Markdown in reports/gas.md; ~1.5 min
                                     on 2 cores, the ADL book of 10,000 positions about 30 s of it)
       ape run gas --out FILE.md    (Markdown elsewhere)
       ape run gas --explain all    (where the gas goes, for every row, not only those above target)
       ape run gas --no-adl         (without the ADL benchmark: about 30 s)
       ape run gas --adl-n 100,1000,10000 --adl-k 1,50,300 --adl-policy queue
                                    (other books, k and policies; n up to tens of thousands works,
                                     about 3 s per 1,000 positions to set up)
       ape run gas -v INFO          (also ape's line per transaction)
"""

import time
from pathlib import Path

import click
from ape.cli import ConnectedProviderCommand
from ape.logging import LogLevel, logger
from rich.console import Console

from backstop.chain.deployment import ProtocolConfig
from backstop.report.gas import ConsoleGasProgress, gas_report
from backstop.sim.adl_benchmark import DEFAULT_KS, DEFAULT_NS, DEFAULT_POLICIES
from backstop.sim.gas_benchmark import run

console = Console()


def _int_list(ctx, param, value: str) -> list[int]:
    try:
        numbers = [int(part.replace("_", "")) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"expected whole numbers separated by commas, not {value!r}") from None
    if not numbers or min(numbers) < 1:
        raise click.BadParameter(f"expected positive whole numbers separated by commas, not {value!r}")
    return numbers


def _policy_list(ctx, param, value: str) -> list[str]:
    policies = [part.strip() for part in value.split(",") if part.strip()]
    unknown = [p for p in policies if p not in DEFAULT_POLICIES]
    if not policies or unknown:
        raise click.BadParameter(f"unknown policy {', '.join(unknown) or value!r}: use {' or '.join(DEFAULT_POLICIES)} (comma-separated)")
    return policies


@click.command(cls=ConnectedProviderCommand)
@click.option("--out", type=click.Path(path_type=Path), default=Path("reports") / "gas.md", show_default=True, help="Markdown report.")
@click.option("--explain", type=click.Choice(["misses", "all", "none"]), default="misses", show_default=True,
              help="Break the gas down by contract and opcode class (debug trace) for rows above target, all rows, or none.")
@click.option("--adl/--no-adl", default=True, show_default=True, help="Run the ADL benchmark: gas of AdlEngine.execute by k and n.")
@click.option("--adl-n", "adl_ns", default=",".join(map(str, DEFAULT_NS)), show_default=True, callback=_int_list,
              help="Positions open in the market, one ADL book each, comma-separated.")
@click.option("--adl-k", "adl_ks", default=",".join(map(str, DEFAULT_KS)), show_default=True, callback=_int_list,
              help="Winners one execute touches, comma-separated (a book of n positions holds rounds up to k = n - 3).")
@click.option("--adl-policy", "adl_policies", default=",".join(DEFAULT_POLICIES), show_default=True, callback=_policy_list,
              help="ADL policies to measure, comma-separated.")
def cli(out, explain, adl, adl_ns, adl_ks, adl_policies):
    """Measure gas per operation (deposit, withdraw, fills, liquidation, vault, takeover, ADL by k and n) against the targets."""
    if adl and not any(k <= n - 3 for n in adl_ns for k in adl_ks):
        raise click.BadParameter(f"no k in {adl_ks} fits a book of n in {adl_ns}: k must be at most n - 3", param_hint="--adl-k")
    started = time.perf_counter()
    quiet = LogLevel.WARNING if logger.level == LogLevel.INFO else logger.level
    with logger.at_level(quiet):
        measured = run(ProtocolConfig(), explain, (adl_ns, adl_ks, adl_policies) if adl else None, ConsoleGasProgress(console))
    report = gas_report(measured)
    for table in report.rich_tables():
        console.print(table)
    report.write_markdown(out)
    console.print(f"wrote {out} ({time.perf_counter() - started:.0f} s)")
    if not report.all_ok:
        console.print("[bold red]some operations are above their targets[/]")
