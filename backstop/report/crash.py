"""The crash report: `report.md` with PNG plots and a one-screen console summary.

A replay hands its outcome over as a `CrashResult` (plain dicts and lists, dollars as floats), so the
on-chain replay and the model replay report alike. Plots are drawn on `matplotlib.figure.Figure`
directly: PNGs go through the Agg canvas and no pyplot state is shared between calls.
"""

from __future__ import annotations

from pathlib import Path
from typing import NotRequired, TypedDict

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter


class ScenarioInfo(TypedDict):
    seed: int
    traders: int
    steps: int
    markets: list[str]


class LayerStep(TypedDict):
    """Notional (dollars) each layer of the waterfall closed or took over in one step."""

    liquidated: float
    backstopped: float
    adl_closed: float


class Totals(TypedDict):
    """Over the whole replay. Notionals, `deficit` (Σ bankrupt deficits ADL covered) and `vault_pnl`
    are dollars; the rest count accounts."""

    liquidated: float
    backstopped: float
    adl_closed: float
    deficit: float
    vault_pnl: float
    accounts_liquidated: int
    accounts_backstopped: int
    accounts_adl: int
    winners_hit: int


class Invariant(TypedDict):
    name: str
    held: bool
    detail: str


class PolicyMetrics(TypedDict):
    """One ADL policy on the scenario (dollars as floats)."""

    policy: str
    deficit: float  # D: Σ of the bankrupt accounts' deficits
    haircuts: float  # Σ haircuts, must equal D
    notional_closed: float  # winners' notional force-closed
    min_notional_closed: float  # the least that had to be closed to offset the bankrupt positions
    closed_over_deficit: float  # notional_closed / D (the "28x" of 10 Oct)
    gini: float  # of the haircuts, see `gini`
    largest_share: float  # of the haircuts, see `largest_share`
    winners_hit: int
    hedged_hit: int  # accounts with positions on both sides among those hit
    vault_pnl: float
    residual_bad_debt: float  # must be 0
    haircuts_list: list[float]  # each winner's haircut, for the distribution plot


class CrashResult(TypedDict):
    """What a replay reports. Per-step lists all have one entry per step of the scenario's path."""

    scenario: ScenarioInfo
    prices: list[list[float]]  # per step, the price of each market in `scenario.markets` order
    times: list[int]  # per step, seconds since the start
    layers_by_step: list[LayerStep]
    vault_equity: list[float]  # per step, dollars
    totals: Totals
    invariants: list[Invariant]
    policies: NotRequired[list[PolicyMetrics]]  # the policy study only


PLOT_FILES = {
    "prices": "prices.png",
    "layers": "layers.png",
    "vault_equity": "vault_equity.png",
    "adl_overshoot": "adl_overshoot.png",
    "haircuts": "haircuts.png",
}
# per layer of the waterfall: legend label and colour
LAYERS = {
    "liquidated": ("liquidated by the market", "tab:blue"),
    "backstopped": ("taken over by the vault", "tab:orange"),
    "adl_closed": ("closed by ADL", "tab:red"),
}
MAX_SUMMARY_LINES = 25


# ---------------------------------------------------------------- report

def write_report(out_dir: Path, result: CrashResult) -> Path:
    """Writes `report.md` and its PNG plots into `out_dir` (created if missing); returns the
    Markdown file's path. The policy plots and table appear only when `result` has "policies"."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = [
        ("Price paths (100 = first price)", _plot_prices(out_dir, result)),
        ("Notional closed by each layer of the waterfall", _plot_layers(out_dir, result)),
        ("Insurance vault equity", _plot_vault_equity(out_dir, result)),
    ]
    policies = result.get("policies")
    if policies:
        plots.append(("ADL overshoot: notional closed per dollar of deficit", _plot_overshoot(out_dir, policies)))
        plots.append(("Haircuts per winner", _plot_haircuts(out_dir, policies)))

    lines = ["# Backstop crash replay", "", _scenario_line(result["scenario"]), ""]
    lines += ["## Totals", "", "| measure | value |", "|---|---:|"]
    lines += [f"| {label} | {value} |" for label, value in _totals_rows(result["totals"])]
    lines += ["", "## Invariants", "", "| invariant | held | detail |", "|---|:---:|---|"]
    lines += [
        f"| {_cell(check['name'])} | {'✓' if check['held'] else '✗'} | {_cell(check['detail'])} |"
        for check in result["invariants"]
    ]
    if policies:
        lines += ["", "## ADL policies", "", _POLICY_HEADER, "|---|" + "---:|" * 11]
        lines += [_policy_row(metrics) for metrics in policies]
    lines += ["", "## Plots", ""]
    for title, file_name in plots:
        lines += [f"### {title}", "", f"![{title}]({file_name})", ""]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines))
    return report


def summary_lines(result: CrashResult) -> list[str]:
    """A plain-text summary for the console, at most MAX_SUMMARY_LINES lines."""
    totals = result["totals"]
    failed = [check["name"] for check in result["invariants"] if not check["held"]]
    held = len(result["invariants"]) - len(failed)
    lines = [
        "Backstop crash replay",
        _scenario_line(result["scenario"]),
        f"liquidated   {_dollars(totals['liquidated']):>16}  in {totals['accounts_liquidated']:,} accounts",
        f"backstopped  {_dollars(totals['backstopped']):>16}  in {totals['accounts_backstopped']:,} accounts",
        f"ADL closed   {_dollars(totals['adl_closed']):>16}  for {totals['accounts_adl']:,} bankrupt accounts,"
        f" {totals['winners_hit']:,} winners hit",
        f"deficit      {_dollars(totals['deficit']):>16}",
        f"vault PnL    {_dollars(totals['vault_pnl']):>16}",
        f"invariants   {held} of {len(result['invariants'])} held" + (f"; failed: {', '.join(failed)}" if failed else ""),
    ]
    policies = result.get("policies") or []
    if policies:
        room = MAX_SUMMARY_LINES - len(lines) - 1
        lines.append(f"{'policy':<22} {'closed/D':>9} {'Gini':>6} {'winners':>8} {'hedged':>7}")
        shown = policies if len(policies) <= room else policies[: room - 1]
        lines += [
            f"{metrics['policy'][:22]:<22} {metrics['closed_over_deficit']:>8.1f}x {metrics['gini']:>6.2f}"
            f" {metrics['winners_hit']:>8,} {metrics['hedged_hit']:>7,}"
            for metrics in shown
        ]
        if len(shown) < len(policies):
            lines.append(f"... and {len(policies) - len(shown)} more policies in the report")
    return lines


# ---------------------------------------------------------------- Markdown pieces

_POLICY_HEADER = (
    "| policy | deficit D | Σ haircuts | notional closed | minimum closed | closed / D | Gini | largest share"
    " | winners hit | hedged hit | vault PnL | residual bad debt |"
)


def _scenario_line(scenario: ScenarioInfo) -> str:
    return (
        f"Scenario: seed {scenario['seed']}, {scenario['traders']:,} traders, {scenario['steps']} steps, "
        f"markets {', '.join(scenario['markets'])}."
    )


def _totals_rows(totals: Totals) -> list[tuple[str, str]]:
    return [
        ("notional liquidated by the market", _dollars(totals["liquidated"])),
        ("notional taken over by the vault", _dollars(totals["backstopped"])),
        ("notional closed by ADL", _dollars(totals["adl_closed"])),
        ("deficit covered by ADL", _dollars(totals["deficit"])),
        ("vault PnL", _dollars(totals["vault_pnl"])),
        ("accounts liquidated", f"{totals['accounts_liquidated']:,}"),
        ("accounts taken over by the vault", f"{totals['accounts_backstopped']:,}"),
        ("bankrupt accounts resolved by ADL", f"{totals['accounts_adl']:,}"),
        ("winners hit by ADL", f"{totals['winners_hit']:,}"),
    ]


def _policy_row(metrics: PolicyMetrics) -> str:
    cells = [
        _cell(metrics["policy"]),
        _dollars(metrics["deficit"]),
        _dollars(metrics["haircuts"]),
        _dollars(metrics["notional_closed"]),
        _dollars(metrics["min_notional_closed"]),
        f"{metrics['closed_over_deficit']:.1f}x",
        f"{metrics['gini']:.3f}",
        f"{metrics['largest_share']:.1%}",
        f"{metrics['winners_hit']:,}",
        f"{metrics['hedged_hit']:,}",
        _dollars(metrics["vault_pnl"]),
        _dollars(metrics["residual_bad_debt"]),
    ]
    return "| " + " | ".join(cells) + " |"


def _dollars(amount: float) -> str:
    return f"-${-amount:,.0f}" if amount < 0 else f"${amount:,.0f}"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


# ---------------------------------------------------------------- plots

_MILLIONS = FuncFormatter(lambda value, _: f"{value / 1e6:,.1f}")


def _minutes(result: CrashResult) -> list[float]:
    return [seconds / 60 for seconds in result["times"]]


def _save(figure: Figure, out_dir: Path, key: str) -> str:
    figure.tight_layout()
    figure.savefig(out_dir / PLOT_FILES[key], dpi=120)
    return PLOT_FILES[key]


def _plot_prices(out_dir: Path, result: CrashResult) -> str:
    figure = Figure(figsize=(8, 4.5))
    axes = figure.subplots()
    minutes = _minutes(result)
    for market, name in enumerate(result["scenario"]["markets"]):
        first = result["prices"][0][market]
        axes.plot(minutes, [100 * step[market] / first for step in result["prices"]], label=name)
    axes.axhline(100, color="grey", linewidth=0.5)
    axes.set(xlabel="minutes", ylabel="price (first = 100)", title="Price paths")
    axes.legend()
    return _save(figure, out_dir, "prices")


def _plot_layers(out_dir: Path, result: CrashResult) -> str:
    figure = Figure(figsize=(8, 4.5))
    axes = figure.subplots()
    minutes = _minutes(result)
    width = 0.8 * (minutes[1] - minutes[0]) if len(minutes) > 1 else 0.8
    bottom = [0.0] * len(minutes)
    for layer, (label, colour) in LAYERS.items():
        heights = [step[layer] for step in result["layers_by_step"]]
        axes.bar(minutes, heights, width=width, bottom=bottom, color=colour, label=label)
        bottom = [below + height for below, height in zip(bottom, heights)]
    axes.yaxis.set_major_formatter(_MILLIONS)
    axes.set(xlabel="minutes", ylabel="notional, $M", title="Liquidations by layer")
    axes.legend()
    return _save(figure, out_dir, "layers")


def _plot_vault_equity(out_dir: Path, result: CrashResult) -> str:
    figure = Figure(figsize=(8, 4.5))
    axes = figure.subplots()
    axes.plot(_minutes(result), result["vault_equity"], color="tab:green")
    axes.axhline(0, color="grey", linewidth=0.5)
    axes.yaxis.set_major_formatter(_MILLIONS)
    axes.set(xlabel="minutes", ylabel="equity, $M", title="Insurance vault equity")
    return _save(figure, out_dir, "vault_equity")


def _plot_overshoot(out_dir: Path, policies: list[PolicyMetrics]) -> str:
    figure = Figure(figsize=(8, 4.5))
    axes = figure.subplots()
    names = [metrics["policy"] for metrics in policies]
    axes.bar(names, [metrics["closed_over_deficit"] for metrics in policies], color="tab:red", label="notional closed / D")
    # the least any policy could have closed, per dollar of the same deficit
    needed = [metrics["min_notional_closed"] / metrics["deficit"] if metrics["deficit"] else 0.0 for metrics in policies]
    axes.scatter(names, needed, color="black", marker="_", s=800, zorder=3, label="minimum needed / D")
    axes.set(ylabel="notional closed per dollar of deficit", title="ADL overshoot by policy")
    axes.legend()
    return _save(figure, out_dir, "adl_overshoot")


def _plot_haircuts(out_dir: Path, policies: list[PolicyMetrics]) -> str:
    figure = Figure(figsize=(8, 4.5))
    axes = figure.subplots()
    # a log scale has no room for zero: only winners who actually paid are drawn
    paid = [[haircut for haircut in metrics["haircuts_list"] if haircut > 0] for metrics in policies]
    axes.boxplot(paid, tick_labels=[metrics["policy"] for metrics in policies])
    if any(paid):
        axes.set_yscale("log")
    axes.set(ylabel="haircut per winner, $", title="Distribution of haircuts by policy")
    return _save(figure, out_dir, "haircuts")
