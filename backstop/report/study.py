"""The policy study's report: `report.md` and its plots from a study result (backstop/sim/study.py
`study_result`): the policies over many seeds (mean and spread), the central trade-off in numbers,
the first seed's replay per policy (layers, vault equity, haircuts, who paid), the vault-size sweep
and the trade-off plot, and the definition of every figure."""

from __future__ import annotations

from pathlib import Path

from backstop.model.adl import is_queue, POLICY_BY_NAME
from backstop.report import plots
from backstop.report.crash import policy_cell, policy_table
from backstop.report.format import definitions, dollars, exact_dollars, table
from backstop.report.volunteers import comparison_section
from backstop.report.who_paid import ROW_NAMES, ROW_ORDER
from backstop.sim.policy_study import DEFINITIONS

PLOT_FILES = {
    "layers": "layers_by_policy.png",
    "vault_equity": "vault_equity.png",
    "haircuts": "haircuts.png",
    "adl_overshoot": "adl_overshoot.png",
    "vault_sweep": "vault_sweep.png",
    "tradeoff": "tradeoff.png",
}
SUMMARY_FIGURES = ("deficit", "notional_closed", "closed_over_deficit", "notional_absorbed", "vault_pnl", "vault_equity_low", "winners_hit",
                   "hedged_hit", "gini", "largest_share", "residual_bad_debt")
SUMMARY_HEADERS = {"deficit": "deficit D", "notional_closed": "force-closed", "closed_over_deficit": "force-closed / D",
                   "notional_absorbed": "absorbed by the vault", "vault_pnl": "vault PnL", "vault_equity_low": "vault equity low",
                   "winners_hit": "winners hit", "hedged_hit": "hedged winners hit", "gini": "Gini of haircuts",
                   "largest_share": "largest payer's share", "residual_bad_debt": "residual bad debt"}


def write_study_report(out_dir: Path, study: dict, agreement: list[str] | None) -> Path:
    """Writes `report.md` and its plots; `agreement`: None if no chain replay ran, else the figures
    on which chain and model disagreed (empty: none)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    reference = study["reference"]
    metrics = [reference[name]["metrics"] for name in study["policies"] if name in reference]
    first = next(iter(reference.values()))
    drawn = [
        ("Notional handled by each layer, per policy (first seed)",
         plots.layers_grid(out_dir, PLOT_FILES["layers"], first["times"], {n: reference[n]["layers_by_step"] for n in reference})),
        ("Insurance vault equity per policy (first seed)",
         plots.vault_equity(out_dir, PLOT_FILES["vault_equity"], first["times"], {n: reference[n]["vault_equity"] for n in reference})),
        ("Haircuts per winner, per policy (first seed)", plots.haircuts(out_dir, PLOT_FILES["haircuts"], metrics)),
        ("ADL overshoot per policy (first seed)", plots.overshoot(out_dir, PLOT_FILES["adl_overshoot"], metrics)),
        *([("Vault size: force-closed notional and vault PnL against the vault's capital (first seed)",
            plots.vault_sweep(out_dir, PLOT_FILES["vault_sweep"], study["vault_sweep"]))] if swept(study["vault_sweep"]) else []),
        ("The trade-off: one point per policy and seed",
         plots.tradeoff(out_dir, PLOT_FILES["tradeoff"], [row | {"policy": name} for name, entry in study["by_policy"].items()
                                                         for row in entry["per_seed"]])),
    ]
    lines = ["# Backstop ADL policy study", "", study_line(study), "", agreement_line(agreement), ""]
    lines += [f"## The policies over {len(study['seeds'])} seed{'s' * (len(study['seeds']) > 1)}", "",
              "Each cell: mean ± standard deviation over the seeds [least – most].", "", *summary_table(study), ""]
    lines += ["## The central trade-off", "", *tradeoff_text(study), ""]
    lines += [f"## The first seed ({study['reference_seed']}) under each policy", "", *policy_table(metrics), "",
              "### Who paid, per policy: PnL per kind of account", "",
              "Exact to the collateral unit; each column sums to zero (the layers behind each cell: result.json, "
              "`reference.<policy>.who_paid`).", "", *who_paid_by_policy(reference), ""]
    lines += comparison_section(study.get("volunteer_step", {}), study.get("auction", {}))
    lines += ["## Vault size", "", *vault_sweep_table(study["vault_sweep"]), ""]
    lines += ["## Plots", ""]
    for title, file_name in drawn:
        lines += [f"### {title}", "", f"![{title}]({file_name})", ""]
    lines += ["## Definitions", "", *definitions({SUMMARY_HEADERS[k]: DEFINITIONS[k] for k in SUMMARY_FIGURES}),
              *definitions({"mean ± standard deviation [least – most]": "over the seeds listed at the top, each a different crowd and price path "
                            "from the same generator; the standard deviation is the population's",
                            "vault capital": "the vault's equity after its deposit (its share of the traders' collateral, see the vault-size table); "
                            "its loss caps and position limits scale with it"}), ""]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines))
    return report


def study_line(study: dict) -> str:
    seeds = study["seeds"]
    listed = ", ".join(map(str, seeds)) if len(seeds) <= 8 else f"{seeds[0]}–{seeds[-1]}"
    auction = study.get("auction", {})
    step = "on" if auction.get("volunteers", True) else "off (--no-volunteers)"
    return (f"Crowd: {study['traders']:,} traders, {study['steps']} blocks after a run-up; seeds {listed} ({len(seeds)}); "
            f"policies {', '.join(study['policies'])}; volunteer step {step}, vault unwind policy {auction.get('unwind', 'profit')}; "
            f"{study['replays']} model replays, all invariants "
            + ("held." if study["invariants_held"] else "**NOT** held: see result.json."))


def agreement_line(agreement: list[str] | None) -> str:
    if agreement is None:
        return "Model only: no chain replay ran (--no-chain, or more traders than the chain limit)."
    if not agreement:
        return "The first seed was also replayed on chain under every policy: chain and model agree on every figure, to the unit."
    return "Chain and model **disagree** on the first seed: " + "; ".join(agreement)


def _spread(name: str, summary: dict) -> str:
    figure = summary[name]
    mean = policy_cell(name, figure["mean"])
    if figure["std"] == 0 and figure["min"] == figure["max"]:
        return mean
    std = policy_cell(name, figure["std"]) if name not in ("gini",) else f"{figure['std']:.3f}"
    return f"{mean} ± {std} [{policy_cell(name, figure['min'])} – {policy_cell(name, figure['max'])}]"


def summary_table(study: dict) -> list[str]:
    rows = [[name, *(_spread(f, entry["summary"]) for f in SUMMARY_FIGURES)] for name, entry in study["by_policy"].items()]
    return table(["policy", *(SUMMARY_HEADERS[f] for f in SUMMARY_FIGURES)], rows)


def tradeoff_text(study: dict) -> list[str]:
    """The trade-off between closing winners and the vault's money, in the study's own numbers."""
    means = {name: {f: figure["mean"] for f, figure in entry["summary"].items()} for name, entry in study["by_policy"].items()}
    queues = [n for n in means if is_queue(POLICY_BY_NAME[n])]
    others = [n for n in means if not is_queue(POLICY_BY_NAME[n])]
    if not queues or not others:
        return ["The trade-off needs a queue policy and pro-rata or risk-aware in the study."]

    def average(names, figure):
        return sum(means[n][figure] for n in names) / len(names)

    q_pnl, o_pnl = average(queues, "vault_pnl"), average(others, "vault_pnl")
    q_closed, o_closed = average(queues, "notional_closed"), average(others, "notional_closed")
    o_absorbed = average(others, "notional_absorbed")

    def volunteered(names):
        taken = average(names, "volunteer_taken")
        return f" after volunteers took {dollars(taken)} of the bankrupt positions in the rounds' auctions" if taken else ""

    closed_more = q_closed - o_closed
    queue_side = (f"{dollars(closed_more)} of winners' positions closed against their will, concentrated on the most levered (queues)"
                  if closed_more > 0 else
                  f"haircuts concentrated on {average(queues, 'winners_hit'):.0f} winners, the most levered first (queues)")
    lines = [
        f"Every policy covers the same deficit (mean {dollars(average(queues, 'deficit'))}); they differ in who takes the bankrupt "
        "positions off the book, and so in who carries them through the rest of the crash.",
        "",
        f"- **The queues** ({', '.join(queues)}) force-close winners: {dollars(q_closed)} of winners' positions on average "
        f"({average(queues, 'closed_over_deficit'):.1f}x the deficit){volunteered(queues)}, hitting {average(queues, 'winners_hit'):.0f} winners, "
        f"{average(queues, 'hedged_hit'):.0f} of them hedged market makers or others whose book was hedged. The vault ends at "
        f"{dollars(q_pnl)} on average: it never holds the bankrupt positions.",
        f"- **Pro-rata and risk-aware** ({', '.join(others)}) let the vault absorb the bankrupt positions ({dollars(o_absorbed)} on average)"
        f"{volunteered(others)} and force-close {dollars(o_closed)}; the deficit is spread over {average(others, 'winners_hit'):.0f} winners "
        f"({average(others, 'hedged_hit'):.0f} hedged) as haircuts, with a Gini of {average(others, 'gini'):.2f}. The vault ends at "
        f"{dollars(o_pnl)} on average: absorbing at the round's price moves no value then, but the vault then carries those positions "
        "through the rest of the path (here a partial recovery), and its depositors take that mark-to-market.",
        "",
        f"So the choice is between {queue_side}, and {dollars(q_pnl - o_pnl)} of vault PnL (the difference of the means), borne by the vault's "
        "depositors, with the haircuts spread thinner (pro-rata, risk-aware).",
    ]
    sweep = study["vault_sweep"]
    if swept(sweep):
        changes = "; ".join(f"{name} force-closes {dollars(curves['notional_closed'][0])} → {dollars(curves['notional_closed'][-1])} "
                            f"and leaves the vault at {dollars(curves['vault_pnl'][0])} → {dollars(curves['vault_pnl'][-1])}"
                            for name, curves in sweep["policies"].items())
        lines += ["", f"In the vault-size sweep (seed {sweep['seed']}), from a vault of {dollars(sweep['vault_capital'][0])} to one of "
                  f"{dollars(sweep['vault_capital'][-1])}: {changes}."]
    return lines


def who_paid_by_policy(reference: dict) -> list[str]:
    kinds = [kind for kind in ROW_ORDER if any(kind in entry["who_paid"] for entry in reference.values())]
    rows = [[ROW_NAMES.get(kind, kind), *(exact_dollars(entry["who_paid"].get(kind, {}).get("pnl", 0)) for entry in reference.values())]
            for kind in kinds]
    return table(["PnL of", *reference], rows)


def swept(sweep: dict) -> bool:
    """Whether the study swept the vault's size (`compare --vault-sweep`): more than the default
    vault replayed."""
    return len(sweep["fractions"]) > 1


def vault_sweep_table(sweep: dict) -> list[str]:
    if not swept(sweep):
        return ["The vault-size sweep did not run (`compare --vault-sweep` replays the first seed with the vault at 5%, 10% and 40% "
                "of the traders' collateral as well)."]
    header = ["vault share of traders' collateral", "vault capital"]
    names = list(sweep["policies"])
    header += [f"{name}: force-closed" for name in names] + [f"{name}: vault PnL" for name in names]
    rows = []
    for index, (fraction, capital) in enumerate(zip(sweep["fractions"], sweep["vault_capital"])):
        rows.append([f"{fraction:.0%}", dollars(capital),
                     *(dollars(sweep["policies"][n]["notional_closed"][index]) for n in names),
                     *(dollars(sweep["policies"][n]["vault_pnl"][index]) for n in names)])
    return [f"Seed {sweep['seed']}; the vault's loss caps and position limits scale with its capital.", "", *table(header, rows)]
