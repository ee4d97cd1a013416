"""Gas measurements as tables: one row per operation, against an optional target.

`ape run gas` measures with backstop/sim/gas_benchmark.py, which returns plain data; this module
only formats it, as rich tables for the terminal and as Markdown for reports/gas.md, so both show
exactly the same rows, and prints the run's progress lines (`ConsoleGasProgress`). Further tables
(the ADL benchmark by k and n, its targets and where its gas goes) are `Section`s of the report.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from backstop.sim.adl_benchmark import (
    MAX_CANDIDATES, RATIO_K, TARGET_PER_POSITION, TARGET_POSITIONS, TARGET_RATIO, TX_GAS_CAP, AdlBenchResult,
)
from backstop.sim.gas_benchmark import SIZE_TARGET, GasMeasurements, GasRow
from backstop.sim.gas_trace import Breakdown

TITLE = "Backstop gas per operation"
COLUMNS = ("operation", "gas", "target", "ok")
# A verdict (True, False or None: no target) as a style on the terminal.
STYLES = {None: "", True: "green", False: "bold red"}


def _verdict(ok: bool | None) -> str:
    return {None: "", True: "yes", False: "NO"}[ok]


def row_cells(row: GasRow) -> tuple[str, str, str, str]:
    """A measured operation as the cells of its table row."""
    gas = f"reverted: {row.error}" if row.gas is None else f"{row.gas:,}"
    target = "—" if row.target is None else f"≤ {row.target:,}"
    return row.operation, gas, target, _verdict(row.ok)


@dataclass
class GasReport:
    """The rows of one run, plus free-text notes printed under the Markdown table."""

    title: str
    rows: list[GasRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # where the gas of some rows went (`breakdown_section`), in order
    breakdowns: list[Section] = field(default_factory=list)
    # further tables after the operations (the ADL benchmark), in order
    sections: list[Section] = field(default_factory=list)

    @property
    def all_ok(self) -> bool:
        return all(row.ok is not False for row in self.rows) and all(section.ok is not False for section in self.sections)

    def rich_table(self) -> Table:
        table = Table(title=self.title)
        table.add_column("operation")
        table.add_column("gas", justify="right")
        table.add_column("target", justify="right")
        table.add_column("ok", justify="center")
        for row in self.rows:
            operation, gas, target, ok = row_cells(row)
            style = STYLES[row.ok]
            table.add_row(operation, gas, target, f"[{style}]{ok}[/]" if style else ok)
        return table

    def rich_tables(self) -> list[Table]:
        """Every table in the terminal's order: the breakdowns, the operations, the sections."""
        return [breakdown.rich_table() for breakdown in self.breakdowns] + [self.rich_table()] + [section.rich_table() for section in self.sections]

    def markdown(self) -> str:
        lines = [f"# {self.title}", "", "| " + " | ".join(COLUMNS) + " |", "|---|---:|---:|:---:|"]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row_cells(row)) + " |" for row in self.rows]
        if self.notes:
            lines += [""] + [f"- {note}" for note in self.notes]
        for section in self.sections:
            lines += ["", section.markdown().rstrip("\n")]
        if self.breakdowns:
            lines += ["", "## Where the gas goes", ""]
            lines += [breakdown.markdown() for breakdown in self.breakdowns]
        return "\n".join(lines) + "\n"

    def write_markdown(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.markdown())


def gas_report(measured: GasMeasurements) -> GasReport:
    """The tables of one run: the operations, the breakdowns and, if it ran, the ADL benchmark."""
    sections = [size_section(measured.sizes)] if measured.sizes else []
    sections += [] if measured.adl is None else adl_sections(measured.adl, measured.opcode)
    breakdowns = [breakdown_section(breakdown) for breakdown in measured.breakdowns]
    return GasReport(TITLE, list(measured.rows), list(measured.notes), breakdowns, sections)


def breakdown_section(breakdown: Breakdown) -> Section:
    """Where one transaction's gas went, per operation (a batch's gas divided by its fills)."""
    per = breakdown.per
    refund = breakdown.intrinsic + sum(gas for _, gas in breakdown.totals.values()) - breakdown.gas_used
    rows = [("—", "intrinsic: 21,000 + calldata", "", f"{breakdown.intrinsic // per:,}")]
    for (contract, what), (count, gas) in sorted(breakdown.totals.items(), key=lambda item: -item[1][1]):
        rows.append((contract, what, f"{count / per:g}", f"{gas // per:,}"))
    rows.append(("—", "refund (cleared slots, restored values)", "", f"-{refund // per:,}"))
    rows.append(("", "gas used", "", f"{breakdown.gas_used // per:,}"))
    columns = [("contract", "left"), ("what", "left"), ("count", "right"), ("gas", "right")]
    return Section(breakdown.title, columns, rows, level=3)


# ---------------------------------------------------------------- progress on the terminal

class ConsoleGasProgress:
    """What `ape run gas` is doing while it measures, on the terminal (the `GasProgress` of
    backstop/sim/gas_benchmark.py)."""

    def __init__(self, console: Console):
        self.console = console

    def step(self, message: str) -> None:
        self.console.print(f"[bold cyan]→[/] {message}")

    def note(self, message: str) -> None:
        self.console.print(f"  {message}")

    def warn(self, message: str) -> None:
        self.console.print(f"  [yellow]{message}[/]")

    def measured(self, row: GasRow) -> None:
        if row.gas is None:
            self.console.print(f"  {row.operation}: [bold red]reverted[/] ({row.error})")
            return
        verdict = {None: "", True: "  [green]within target[/]", False: "  [bold red]above target[/]"}[row.ok]
        self.console.print(f"  {row.operation}: [bold]{row.gas:,}[/] gas{verdict}")

    @contextmanager
    def bars(self) -> Iterator[Callable[[str, int], Callable[[int], None]]]:
        with Progress(console=self.console, transient=True) as progress:
            def bar(description: str, total: int) -> Callable[[int], None]:
                task = progress.add_task(description, total=max(total, 1))

                def advance(done: int) -> None:
                    progress.advance(task, done)
                    if progress.tasks[progress.task_ids.index(task)].finished:
                        progress.remove_task(task)
                return advance

            yield bar


# ---------------------------------------------------------------- further tables

@dataclass
class Section:
    """A table of its own in the report: a title, columns (name, "left" or "right"), rows of cells,
    notes under it. `oks` gives a row's verdict (True, False or None) for its last cell's style and
    for `GasReport.all_ok`."""

    title: str
    columns: list[tuple[str, str]]
    rows: list[tuple[str, ...]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    oks: list[bool | None] = field(default_factory=list)
    level: int = 2  # Markdown heading level

    @property
    def ok(self) -> bool | None:
        verdicts = [ok for ok in self.oks if ok is not None]
        return None if not verdicts else all(verdicts)

    def rich_table(self) -> Table:
        table = Table(title=self.title)
        for name, justify in self.columns:
            table.add_column(name, justify=justify)
        for i, row in enumerate(self.rows):
            ok = self.oks[i] if i < len(self.oks) else None
            style = STYLES[ok]
            cells = list(row)
            if style:
                cells[-1] = f"[{style}]{cells[-1]}[/]"
            table.add_row(*cells)
        return table

    def markdown(self) -> str:
        align = {"left": "---", "right": "---:", "center": ":---:"}
        lines = [f"{'#' * self.level} {self.title}", "", "| " + " | ".join(name for name, _ in self.columns) + " |",
                 "|" + "|".join(align[justify] for _, justify in self.columns) + "|"]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in self.rows]
        if self.notes:
            lines += [""] + [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


def size_section(sizes: list[tuple[str, int]]) -> Section:
    """Each contract's deployed size against the budget."""
    table = Section(
        "Deployed size per contract",
        [("contract", "left"), ("bytes", "right"), ("of EIP-170", "right"), ("target", "right"), ("ok", "center")],
        notes=["Bytes as `eth_getCode` returns them: runtime code plus immutables. EIP-170 allows 24,576."],
    )
    for name, size in sizes:
        ok = size <= SIZE_TARGET
        table.rows.append((name, f"{size:,}", f"{size / 24_576:.0%}", f"≤ {SIZE_TARGET:,}", _verdict(ok)))
        table.oks.append(ok)
    return table


def adl_sections(result: AdlBenchResult, opcode: tuple[str, list, int] | None = None) -> list[Section]:
    """The ADL benchmark (backstop/sim/adl_benchmark.py's `AdlBenchResult`) as report sections: gas
    of one `execute` by policy, n and k; the issue's three targets; where the gas of one more winner
    goes (call tree, and by opcode class when `opcode` = (policy, rows, gas per winner) from
    `adl_benchmark.opcode_marginal` is given); the time each phase took."""
    policies = list(dict.fromkeys(m.policy for m in result.measurements))
    table = Section(
        "ADL: gas of one `AdlEngine.execute` by positions touched (k) and open (n)",
        [("policy", "left"), ("n open", "right"), ("k touched", "right"), ("execute gas", "right"),
         ("gas per position touched", "right"), (f"≤ {TX_GAS_CAP:,}", "center"), ("Σ haircuts == D", "center")],
    )
    entries = [(policies.index(m.policy), m.n, m.k, m) for m in result.measurements]
    entries += [(policies.index(policy), n, k, why) for n, k, why in result.skipped for policy in policies]
    for index, n, k, m in sorted(entries, key=lambda entry: entry[:3]):
        if isinstance(m, str):
            table.rows.append((policies[index], f"{n:,}", str(k), f"— ({m})", "", "", ""))
            table.oks.append(None)
        elif m.gas is None:
            table.rows.append((m.policy, f"{m.n:,}", str(m.k), f"reverted: {m.error}", "", "", "NO"))
            table.oks.append(False)
        else:
            exact = m.haircuts == m.deficit and m.closed and m.hits == m.k
            table.rows.append((m.policy, f"{m.n:,}", str(m.k), f"{m.gas:,}", f"{m.per_position:,}", _verdict(m.under_cap), _verdict(exact)))
            table.oks.append(exact)
    table.notes = [
        "One round per row, from the same snapshot of each book: the bankrupt account's position is k x 0.1 BTC against k "
        "winners of 0.1 BTC each, the rest of the n positions cannot pay (background positions opened 20% lower, and pads on "
        "the bankrupt account's side), the vault holds nothing; the keeper plans with `adl_planner.plan_market` from the "
        "whole opposite side and sends one `execute` of the k winners that resolves and closes the round.",
        "`execute gas` is the receipt's gasUsed: 21,000, calldata, the winners, and closing the round. "
        "Refunds (positions closed to zero) are at their cap, a fifth of the gas, in every row.",
    ]

    targets = Section("ADL targets (issues 6 and 13)", [("target", "left"), ("measured", "left"), ("ok", "center")])
    for policy in policies:
        ratio = result.ratio(policy, RATIO_K)
        if ratio is None:
            targets.rows.append((f"{policy}: gas(k={RATIO_K}, n large) / gas(k={RATIO_K}, n small) ≤ {TARGET_RATIO:.2f}", "not measured (needs two n)", ""))
            targets.oks.append(None)
        else:
            small, large, value = ratio
            targets.rows.append((f"{policy}: gas(k={RATIO_K}, n={large:,}) / gas(k={RATIO_K}, n={small:,}) ≤ {TARGET_RATIO:.2f}", f"{value:.3f}", _verdict(value <= TARGET_RATIO)))
            targets.oks.append(value <= TARGET_RATIO)
        measured = sorted((m for m in result.measurements if m.policy == policy and m.gas), key=lambda m: (m.k, m.n))
        if measured:
            largest = max(measured, key=lambda m: (m.k, m.n))
            at_ratio_k = [m for m in measured if m.k == RATIO_K]
            line = result.fit(policy)
            parts = [f"{largest.per_position:,} at k = {largest.k}"]
            if at_ratio_k and largest.k != RATIO_K:
                parts.append(f"{at_ratio_k[-1].per_position:,} at k = {RATIO_K}")
            if line is not None:
                parts.append(f"{line[1]:,.0f} per extra winner")
            ok = largest.per_position <= TARGET_PER_POSITION
            targets.rows.append((f"{policy}: gas per position touched ≤ {TARGET_PER_POSITION:,}", "; ".join(parts), _verdict(ok)))
            targets.oks.append(ok)
            fitted = result.max_under_cap(policy)
            biggest = result.largest_measured_under_cap(policy)
            text = f"k = {biggest} measured under the cap" if biggest else "none measured under the cap"
            if line is not None and fitted is not None:
                text += (f"; by the fit ({line[0]:,.0f} + {line[1]:,.0f} per winner) {int((TX_GAS_CAP - line[0]) // line[1])} "
                         f"would fit; the engine takes at most {MAX_CANDIDATES} per call")
            if max(m.k for m in measured) >= TARGET_POSITIONS:
                ok = (biggest or 0) >= TARGET_POSITIONS
            else:
                ok = None if fitted is None else fitted >= TARGET_POSITIONS
            targets.rows.append((f"{policy}: ≥ {TARGET_POSITIONS} positions in one transaction under {TX_GAS_CAP:,} gas", text, _verdict(ok)))
            targets.oks.append(ok)

    sections = [table, targets]
    if result.fallbacks:
        fallback = Section(
            "ADL: gas of `AdlEngine.finish_round`, the fallback, by positions open",
            [("n open", "right"), ("k winners never executed", "right"), ("finish_round gas", "right")],
            [(f"{n:,}", str(k), f"{gas:,}") for n, k, gas in sorted(result.fallbacks)],
            notes=["A round of the same book that nobody executes, ended one second past its deadline: the vault takes the "
                   "bankrupt position at the mark and D is spread over the shorts through the clearinghouse's loss index. "
                   "Its gas depends on the markets of the round, not on the positions open."],
        )
        measured = sorted(result.fallbacks)
        if len(measured) > 1:
            (small, _, low), (large, _, high) = measured[0], measured[-1]
            targets.rows.append((f"finish_round: gas(n={large:,}) / gas(n={small:,}) ≤ {TARGET_RATIO:.2f}", f"{high / low:.3f}", _verdict(high / low <= TARGET_RATIO)))
            targets.oks.append(high / low <= TARGET_RATIO)
        sections.append(fallback)
    for title, rows in result.breakdowns:
        sections.append(Section(
            f"ADL: where the gas goes — {title}", [("call (from AdlEngine.execute)", "left"), ("calls per winner", "right"), ("gas per winner", "right")],
            [(label, f"{count:g}" if count else "— (one per call)", f"{gas:,}") for label, count, gas in rows], level=3,
            notes=["A call's gas includes the calls under it (→) and excludes its own call overhead (warm access, argument "
                   "memory), which stays with the caller. Refunds (a winner's position and open-market bit cleared) come off "
                   "only at the end of the transaction, so the engine's own line is net of them (about 10,100 per winner)."],
        ))
    if opcode is not None:
        policy, rows, per_winner = opcode
        sections.append(Section(
            f"ADL: gas of one more winner by contract and opcode class ({policy}, from step traces at k = 1 and k = 10)",
            [("contract", "left"), ("what", "left"), ("count per winner", "right"), ("gas per winner", "right")],
            [(contract, what, f"{count:g}", f"{gas:,}") for contract, what, count, gas in rows]
            + [("", "gas used per winner", "", f"{per_winner:,}")], level=3,
        ))
    if result.timings:
        total = sum(seconds for _, seconds in result.timings)
        sections.append(Section(
            f"ADL benchmark: time per phase ({total:.1f} s)", [("phase", "left"), ("seconds", "right")],
            [(label, f"{seconds:.1f}") for label, seconds in result.timings], level=3,
        ))
    return sections
