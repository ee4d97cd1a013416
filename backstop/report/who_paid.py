"""The "who paid" section: backstop/sim/attribution.py's table in dollars, exact to the collateral
unit, with the definition of every column."""

from __future__ import annotations

from backstop.report.format import definitions, exact_dollars, table
from backstop.sim.attribution import COLUMNS, POOL, VAULT

HEADERS = {
    "accounts": "accounts",
    "put_in": "put in",
    "end": "value at the end",
    "pnl": "PnL",
    "market": "market moves",
    "liquidation_discount": "liquidation discount",
    "liquidation_penalty": "liquidation penalty",
    "takeover_collateral": "takeover: collateral",
    "takeover_deficit": "takeover: deficit",
    "adl_haircut": "ADL haircut",
    "adl_residual": "ADL residual",
    "adl_netting": "ADL netting",
    "auction_premium": "auction premium",
}
ROW_NAMES = {
    "crowded_long": "crowded longs",
    "market_maker": "market makers",
    "basis_short": "basis shorts",
    "whale": "whales",
    "liquidator": "liquidators",
    VAULT: "insurance vault (its depositors)",
    POOL: "pool (rounding dust it keeps)",
    "total": "**total**",
}
ROW_ORDER = ("crowded_long", "whale", "market_maker", "basis_short", "liquidator", VAULT, POOL, "total")
DEFINITIONS = {
    "accounts": "accounts of that kind in the scenario (in the refusals table: distinct accounts the vault refused)",
    "put in": "collateral the accounts deposited before the crash (the vault: its depositors' deposit)",
    "value at the end": "the accounts' value at the last block: pool balance + unrealised PnL + unsettled funding, at the last marks",
    "PnL": "value at the end − put in; it is the sum of the columns after it",
    **{HEADERS[column]: meaning for column, meaning in COLUMNS.items()},
    "total": "the sum of the rows: zero in PnL and in every layer's column (every dollar one account lost, another gained or the pool kept); "
             "value at the end equals put in",
}


def who_paid_lines(who_paid: dict) -> list[str]:
    """The table (rows in ROW_ORDER, then any other kind), amounts exact to $0.000001."""
    kinds = [kind for kind in ROW_ORDER if kind in who_paid] + sorted(set(who_paid) - set(ROW_ORDER))
    kinds.remove("total")
    kinds.append("total")
    columns = list(HEADERS)
    rows = []
    for kind in kinds:
        row = who_paid[kind]
        rows.append([ROW_NAMES.get(kind, kind)] + [f"{row[c]:,}" if c == "accounts" else exact_dollars(row[c]) for c in columns])
    return table(["who", *HEADERS.values()], rows)


def who_paid_section(who_paid: dict) -> list[str]:
    return [
        "## Who paid",
        "",
        "Each account's gain or loss, split by the layer of the waterfall that moved it, summed per kind of account. "
        "Amounts are exact to the collateral unit ($0.000001): every layer's column and the PnL add up to zero.",
        "",
        *who_paid_lines(who_paid),
        "",
        *definitions(DEFINITIONS),
        "",
    ]
