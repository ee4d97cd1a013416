"""Numbers and cells of the reports: money arrives in collateral units (1e6 = $1, integers, as every
result holds it, backstop/sim/result_schema.py) and is shown in dollars."""

from __future__ import annotations

USDC = 10**6
WAD = 10**18


def dollars(units: float) -> str:
    """Whole dollars: "$1,235", "-$400,000"."""
    amount = units / USDC
    return f"-${-amount:,.0f}" if amount < 0 else f"${amount:,.0f}"


def exact_dollars(units: int) -> str:
    """Dollars to the collateral unit ($0.000001), so that a column of them adds up exactly."""
    sign, units = ("-" if units < 0 else ""), abs(int(units))
    return f"{sign}${units // USDC:,}.{units % USDC:06d}"


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: list[list[str]], align: str | None = None) -> list[str]:
    """A Markdown table; `align`: one character per column, "l" or "r" (default: first left)."""
    align = align or "l" + "r" * (len(header) - 1)
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"]
    return lines + ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]


def text_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A table for the terminal: the first column left-aligned, the others right-aligned, each as
    wide as its widest cell (figures at 100,000 traders run to 13 characters and more)."""
    widths = [max(len(str(line[i])) for line in [header, *rows]) for i in range(len(header))]
    return ["  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(line, widths))).rstrip()
            for line in [header, *rows]]


def definitions(terms: dict[str, str]) -> list[str]:
    """A definitions list: one "- **term**: meaning" line per term."""
    return [f"- **{term}**: {meaning}" for term, meaning in terms.items()]
