"""Gas measurements as a table: one row per operation, against an optional target.

`ape run gas` fills a `GasReport`; this module only formats it, as a rich table for the terminal
and as Markdown for reports/gas.md, so both show exactly the same rows. Further tables (the ADL
benchmark by k and n, its targets and where its gas goes) are `Section`s of the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.table import Table

COLUMNS = ("operation", "gas", "target", "ok")


@dataclass(frozen=True)
class GasRow:
    """One measured operation. `gas` is per operation (a batch's total divided by its size), or None
    with the revert reason in `error` when the transaction failed."""

    operation: str
    gas: int | None
    target: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool | None:
        """False if it reverted, else True or False against the target; None with no target."""
        if self.gas is None:
            return False
        return None if self.target is None else self.gas <= self.target

    def cells(self) -> tuple[str, str, str, str]:
        gas = f"reverted: {self.error}" if self.gas is None else f"{self.gas:,}"
        target = "—" if self.target is None else f"≤ {self.target:,}"
        ok = {None: "", True: "yes", False: "NO"}[self.ok]
        return self.operation, gas, target, ok


@dataclass
class GasReport:
    """The rows of one run, plus free-text notes printed under the Markdown table."""

    title: str
    rows: list[GasRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    breakdowns: list["Breakdown"] = field(default_factory=list)
    # further tables after the operations (the ADL benchmark), in order
    sections: list["Section"] = field(default_factory=list)

    def add(self, operation: str, gas: int | None, target: int | None = None, error: str | None = None) -> GasRow:
        row = GasRow(operation, gas, target, error)
        self.rows.append(row)
        return row

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
            operation, gas, target, ok = row.cells()
            style = {None: "", True: "green", False: "bold red"}[row.ok]
            table.add_row(operation, gas, target, f"[{style}]{ok}[/]" if style else ok)
        return table

    def markdown(self) -> str:
        lines = [f"# {self.title}", "", "| " + " | ".join(COLUMNS) + " |", "|---|---:|---:|:---:|"]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row.cells()) + " |" for row in self.rows]
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


# ---------------------------------------------------------------- where the gas goes

CALL_OPS = {"CALL", "STATICCALL", "DELEGATECALL", "CALLCODE"}
ECRECOVER = 1


def calldata_gas(data: bytes) -> int:
    """Intrinsic calldata cost: 4 per zero byte, 16 per non-zero byte."""
    return sum(4 if byte == 0 else 16 for byte in data)


def step_costs(struct_logs: list[dict]) -> list[int]:
    """The gas each step itself consumed. A call's cost is its overhead (cold or warm account,
    memory, a precompile's work) without the gas its callee's own steps used."""
    costs = [log["gasCost"] for log in struct_logs]
    open_calls: dict[int, int] = {}
    for i, log in enumerate(struct_logs):
        depth = log["depth"]
        following = struct_logs[i + 1] if i + 1 < len(struct_logs) else None
        if following is not None and following["depth"] == depth:
            costs[i] = log["gas"] - following["gas"]
        elif following is not None and following["depth"] > depth:
            open_calls[depth] = i
        if i > 0 and struct_logs[i - 1]["depth"] > depth:
            call = open_calls.pop(depth)
            last = struct_logs[i - 1]
            callee_used = struct_logs[call + 1]["gas"] - (last["gas"] - last["gasCost"])
            costs[call] = struct_logs[call]["gas"] - log["gas"] - callee_used
    return costs


def _category(op: str, cost: int, target: int | None) -> str:
    if op == "SSTORE":
        if cost >= 20_000:
            return "SSTORE zero → non-zero (22,100 cold / 20,000 warm)"
        if cost >= 2_900:
            return "SSTORE non-zero → other value (2,900 + 2,100 if cold)"
        return "SSTORE same value or rewrite of a dirty slot (100 + 2,100 if cold)"
    if op == "SLOAD":
        return "SLOAD cold (2,100)" if cost >= 2_100 else "SLOAD warm (100)"
    if op in CALL_OPS:
        if target == ECRECOVER:
            return "ecrecover precompile call (3,000 + call)"
        return "external call, cold account (2,600)" if cost >= 2_600 else "external call, warm account (100)"
    if op.startswith("LOG"):
        return "LOG (events)"
    if op == "KECCAK256":
        return "KECCAK256"
    return "other opcodes (arithmetic, memory, ABI)"


def gas_breakdown(struct_logs: list[dict], entry: str, names: dict[str, str]) -> dict[tuple[str, str], list[int]]:
    """(contract, category) → [count, gas] over a transaction's struct logs (stack enabled).
    `entry` is the address called; `names` maps lowercase addresses to contract names."""
    costs = step_costs(struct_logs)
    frames = {1: entry.lower()}
    totals: dict[tuple[str, str], list[int]] = {}
    for log, cost in zip(struct_logs, costs):
        address = frames.get(log["depth"], "?")
        target = None
        if log["op"] in CALL_OPS:
            target_address = int(log["stack"][-2], 16)
            target = target_address
            frames[log["depth"] + 1] = f"0x{target_address:040x}"
        key = (names.get(address, address), _category(log["op"], cost, target))
        entry_totals = totals.setdefault(key, [0, 0])
        entry_totals[0] += 1
        entry_totals[1] += cost
    return totals


@dataclass
class Breakdown:
    """Where one transaction's gas went: `gas_breakdown`'s totals, divided by `per` (fills in a batch)."""

    title: str
    totals: dict[tuple[str, str], list[int]]
    gas_used: int
    intrinsic: int
    per: int = 1

    def rows(self) -> list[tuple[str, str, str, str]]:
        per = self.per
        refund = self.intrinsic + sum(gas for _, gas in self.totals.values()) - self.gas_used
        rows = [("—", "intrinsic: 21,000 + calldata", "", f"{self.intrinsic // per:,}")]
        for (contract, what), (count, gas) in sorted(self.totals.items(), key=lambda item: -item[1][1]):
            rows.append((contract, what, f"{count / per:g}", f"{gas // per:,}"))
        rows.append(("—", "refund (cleared slots, restored values)", "", f"-{refund // per:,}"))
        rows.append(("", "gas used", "", f"{self.gas_used // per:,}"))
        return rows

    def rich_table(self) -> Table:
        table = Table(title=self.title)
        for name, justify in (("contract", "left"), ("what", "left"), ("count", "right"), ("gas", "right")):
            table.add_column(name, justify=justify)
        for row in self.rows():
            table.add_row(*row)
        return table

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| contract | what | count | gas |", "|---|---|---:|---:|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows()]
        return "\n".join(lines) + "\n"


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
            style = {None: "", True: "green", False: "bold red"}[ok]
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


def _verdict(ok: bool | None) -> str:
    return {None: "", True: "yes", False: "NO"}[ok]


def adl_sections(result, opcode: tuple[str, list, int] | None = None) -> list[Section]:
    """The ADL benchmark (`backstop.adl_benchmark.AdlBenchResult`) as report sections: gas of one
    `execute` by policy, n and k; the issue's three targets; where the gas of one more winner goes
    (call tree, and by opcode class when `opcode` = (policy, rows, gas per winner) from
    `adl_benchmark.opcode_marginal` is given); the time each phase took."""
    from backstop.adl_benchmark import MAX_CANDIDATES, RATIO_K, TARGET_PER_POSITION, TARGET_POSITIONS, TARGET_RATIO, TX_GAS_CAP

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
        "`execute gas` is the receipt's gasUsed: 21,000, calldata, the winners, and closing the round (`adl_close`). "
        "Refunds (positions closed to zero) are at their cap, a fifth of the gas, in every row.",
    ]

    targets = Section("ADL targets (issue 6)", [("target", "left"), ("measured", "left"), ("ok", "center")])
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
