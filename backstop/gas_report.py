"""Gas measurements as a table: one row per operation, against an optional target.

`ape run gas` fills a `GasReport`; this module only formats it, as a rich table for the terminal
and as Markdown for reports/gas.md, so both show exactly the same rows.
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

    def add(self, operation: str, gas: int | None, target: int | None = None, error: str | None = None) -> GasRow:
        row = GasRow(operation, gas, target, error)
        self.rows.append(row)
        return row

    @property
    def all_ok(self) -> bool:
        return all(row.ok is not False for row in self.rows)

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
