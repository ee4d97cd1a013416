"""The reports' plots, drawn on `matplotlib.figure.Figure` directly (PNG through the Agg canvas, no
pyplot state shared between calls). Money arrives in collateral units and is drawn in $M."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from backstop.report.format import USDC

# per layer of the waterfall: legend label and colour
LAYERS = {
    "liquidated": ("liquidated by the market", "tab:blue"),
    "backstopped": ("taken over by the vault", "tab:orange"),
    "adl_absorbed": ("absorbed by the vault in ADL", "tab:purple"),
    "adl_closed": ("winners force-closed by ADL", "tab:red"),
}
_MILLIONS = FuncFormatter(lambda value, _: f"{value / 1e6:,.1f}")


def _save(figure: Figure, out_dir: Path, name: str) -> str:
    figure.tight_layout()
    figure.savefig(Path(out_dir) / name, dpi=110)
    return name


def _minutes(times: list[int]) -> list[float]:
    return [seconds / 60 for seconds in times]


def prices(out_dir: Path, name: str, times: list[int], marks: list[list[int]], markets: list[str]) -> str:
    figure = Figure(figsize=(8, 4.2))
    axes = figure.subplots()
    for market, label in enumerate(markets):
        first = marks[0][market]
        axes.plot(_minutes(times), [100 * step[market] / first for step in marks], label=label)
    axes.axhline(100, color="grey", linewidth=0.5)
    axes.set(xlabel="minutes", ylabel="price (first = 100)", title="Price paths")
    axes.legend()
    return _save(figure, out_dir, name)


def layers(out_dir: Path, name: str, times: list[int], by_step: list[dict], title: str = "Notional handled by each layer") -> str:
    figure = Figure(figsize=(8, 4.2))
    _draw_layers(figure.subplots(), times, by_step, title)
    return _save(figure, out_dir, name)


def layers_grid(out_dir: Path, name: str, times: list[int], by_policy: dict[str, list[dict]]) -> str:
    """One layers panel per policy, sharing the scale."""
    count = len(by_policy)
    figure = Figure(figsize=(8, 2.6 * count))
    axes = figure.subplots(count, 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    for panel, (policy, by_step) in zip(axes, by_policy.items()):
        _draw_layers(panel, times, by_step, policy, legend=panel is axes[0])
    return _save(figure, out_dir, name)


def _draw_layers(axes, times: list[int], by_step: list[dict], title: str, legend: bool = True) -> None:
    minutes = _minutes(times)
    width = 0.8 * (minutes[1] - minutes[0]) if len(minutes) > 1 else 0.8
    bottom = [0.0] * len(minutes)
    for layer, (label, colour) in LAYERS.items():
        heights = [step.get(layer, 0) / USDC for step in by_step]
        axes.bar(minutes, heights, width=width, bottom=bottom, color=colour, label=label)
        bottom = [below + height for below, height in zip(bottom, heights)]
    axes.yaxis.set_major_formatter(_MILLIONS)
    axes.set(xlabel="minutes", ylabel="notional, $M", title=title)
    if legend:
        axes.legend(fontsize="small")


def vault_equity(out_dir: Path, name: str, times: list[int], series: dict[str, list[int]]) -> str:
    """One line per label (a policy, or the one replay)."""
    figure = Figure(figsize=(8, 4.2))
    axes = figure.subplots()
    for label, values in series.items():
        axes.plot(_minutes(times), [value / USDC for value in values], label=label)
    axes.axhline(0, color="grey", linewidth=0.5)
    axes.yaxis.set_major_formatter(_MILLIONS)
    axes.set(xlabel="minutes", ylabel="equity, $M", title="Insurance vault equity")
    if len(series) > 1:
        axes.legend()
    return _save(figure, out_dir, name)


def overshoot(out_dir: Path, name: str, metrics: list[dict]) -> str:
    """Per policy, per dollar of deficit: notional force-closed and notional the vault absorbed,
    each bar labelled with its value (a policy that closes nothing shows "0.0x closed")."""
    figure = Figure(figsize=(8, 4.2))
    axes = figure.subplots()
    names = [m["policy"] for m in metrics]
    closed = [m["notional_closed"] / m["deficit"] if m["deficit"] else 0.0 for m in metrics]
    absorbed = [m["notional_absorbed"] / m["deficit"] if m["deficit"] else 0.0 for m in metrics]
    positions = range(len(names))
    axes.bar([p - 0.2 for p in positions], closed, width=0.4, color="tab:red", label="force-closed / D")
    axes.bar([p + 0.2 for p in positions], absorbed, width=0.4, color="tab:purple", label="absorbed by the vault / D")
    needed = [m["min_notional_closed"] / m["deficit"] if m["deficit"] else 0.0 for m in metrics]
    axes.scatter([p - 0.2 for p in positions], needed, color="black", marker="_", s=500, zorder=3, label="least that had to close / D")
    for position, value, taken in zip(positions, closed, absorbed):
        axes.annotate(f"{value:.1f}x closed", (position - 0.2, value), ha="center", va="bottom", fontsize="small")
        axes.annotate(f"{taken:.1f}x absorbed", (position + 0.2, taken), ha="center", va="bottom", fontsize="small")
    axes.set_ylim(0, 1.3 * max([*closed, *absorbed, *needed, 1.0]))  # room for the labels and the legend
    for position, m in zip(positions, metrics):
        if not m["deficit"]:
            axes.annotate("no ADL round", (position, 0), ha="center", va="bottom")
    axes.set_xticks(list(positions), names)
    axes.set(ylabel="notional per dollar of deficit", title="ADL overshoot: what offsetting the bankrupt positions cost")
    axes.legend(fontsize="small")
    return _save(figure, out_dir, name)


def haircuts(out_dir: Path, name: str, metrics: list[dict]) -> str:
    figure = Figure(figsize=(8, 4.2))
    axes = figure.subplots()
    # a log scale has no room for zero: only winners who paid are drawn
    paid = [[amount / USDC for amount in m["haircuts_list"] if amount > 0] or [float("nan")] for m in metrics]
    axes.boxplot(paid, tick_labels=[m["policy"] for m in metrics])
    if any(len(p) > 1 or p[0] == p[0] for p in paid):
        axes.set_yscale("log")
    axes.set(ylabel="haircuts per winner, $ (all rounds)", title="Who paid the deficit: haircuts per winner")
    return _save(figure, out_dir, name)


def vault_sweep(out_dir: Path, name: str, sweep: dict) -> str:
    """Two panels against the vault's capital, one curve per policy: winners' notional
    force-closed, and the vault's PnL."""
    figure = Figure(figsize=(8, 6.5))
    top, bottom = figure.subplots(2, 1, sharex=True)
    capital = [value / USDC for value in sweep["vault_capital"]]
    for policy, curves in sweep["policies"].items():
        top.plot(capital, [value / USDC for value in curves["notional_closed"]], marker="o", label=policy)
        bottom.plot(capital, [value / USDC for value in curves["vault_pnl"]], marker="o", label=policy)
    for axes in (top, bottom):
        axes.xaxis.set_major_formatter(_MILLIONS)
        axes.yaxis.set_major_formatter(_MILLIONS)
    bottom.axhline(0, color="grey", linewidth=0.5)
    top.set(ylabel="force-closed, $M", title="Vault size: what ADL closes and what the vault makes or loses")
    bottom.set(xlabel="vault capital before the crash, $M", ylabel="vault PnL, $M")
    top.legend(fontsize="small")
    return _save(figure, out_dir, name)


def tradeoff(out_dir: Path, name: str, points: list[dict]) -> str:
    """One point per policy and seed: vault PnL (x) against winners' notional force-closed (y),
    coloured by the Gini of the haircuts; each policy's mean labelled."""
    figure = Figure(figsize=(8, 5))
    axes = figure.subplots()
    markers = "osD^v<>"
    scatter = None
    for index, policy in enumerate(dict.fromkeys(p["policy"] for p in points)):
        mine = [p for p in points if p["policy"] == policy]
        scatter = axes.scatter([p["vault_pnl"] / USDC for p in mine], [p["notional_closed"] / USDC for p in mine],
                               c=[p["gini"] for p in mine], cmap="viridis", vmin=0, vmax=1, marker=markers[index % len(markers)],
                               label=policy, edgecolors="black", linewidths=0.3)
        mean = (sum(p["vault_pnl"] for p in mine) / len(mine) / USDC, sum(p["notional_closed"] for p in mine) / len(mine) / USDC)
        # policies with the same mean (pro-rata and risk-aware often) get their labels stacked
        axes.annotate(policy, mean, textcoords="offset points", xytext=(6, 6 + 11 * index), fontsize="small")
    if scatter is not None:
        figure.colorbar(scatter, ax=axes, label="haircut concentration (Gini)")
    axes.axvline(0, color="grey", linewidth=0.5)
    axes.xaxis.set_major_formatter(_MILLIONS)
    axes.yaxis.set_major_formatter(_MILLIONS)
    axes.set(xlabel="vault PnL, $M (left: the vault's depositors pay)", ylabel="winners force-closed, $M",
             title="The trade-off: closing winners, the vault's money, who pays")
    axes.legend(fontsize="small")
    return _save(figure, out_dir, name)

