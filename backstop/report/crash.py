"""The crash report: `report.md` with its plots, and a one-screen console summary, from a crash
result (backstop/sim/result_schema.py: integers, money in collateral units) and the ADL policy's
figures (`result["policy"]`, backstop/sim/policy_study.py)."""

from __future__ import annotations

from pathlib import Path

from backstop.report import plots
from backstop.report.format import definitions, dollars, table
from backstop.report.volunteers import TOTALS as AUCTION_TOTALS
from backstop.report.volunteers import comparison_section
from backstop.report.who_paid import who_paid_section
from backstop.sim.policy_study import DEFINITIONS as POLICY_DEFINITIONS

PLOT_FILES = {
    "prices": "prices.png",
    "layers": "layers.png",
    "vault_equity": "vault_equity.png",
    "adl_overshoot": "adl_overshoot.png",
    "haircuts": "haircuts.png",
}
MAX_SUMMARY_LINES = 25
TOTALS = {
    "liquidated": ("notional liquidated by the market", "positions liquidators took over at the mark, summed over blocks"),
    "backstopped": ("notional taken over by the vault", "positions the insurance vault took over with the accounts (Takeover), at the mark"),
    "adl_absorbed": ("notional the vault absorbed inside ADL", "bankrupt positions the vault took onto its books in ADL rounds, at the round's price"),
    "adl_closed": ("notional of winners force-closed by ADL", "winners' positions ADL closed against bankrupt ones, at the round's price"),
    "deficit": ("deficit that reached ADL", "negative value of the bankrupt accounts ADL resolved (or that wait for it)"),
    "vault_pnl": ("vault PnL over the replay", "the vault's equity after the last block minus its equity after its deposit, before the crash"),
    "residual_bad_debt": ("residual bad debt", "negative value left in any account at the end; 0 when every deficit was covered"),
}
COUNTS = {
    "accounts_liquidated": "accounts liquidated (at least one position)",
    "accounts_backstopped": "accounts taken over by the vault",
    "accounts_refused": "accounts the vault refused at least once",
    "accounts_adl": "bankrupt accounts sent to ADL",
    "adl_rounds": "ADL rounds",
    "winners_hit": "winners hit by ADL (haircut or close)",
}
POLICY_COLUMNS = ("deficit", "haircuts", "notional_closed", "min_notional_closed", "notional_absorbed", "closed_over_deficit", "gini",
                  "largest_share", "winners_hit", "hedged_hit", "rounds", "vault_pnl", "vault_equity_low", "residual_bad_debt")


def write_report(out_dir: Path, result: dict) -> Path:
    """Writes `report.md` and its plots into `out_dir`; returns the Markdown file's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scenario, policy = result["scenario"], result.get("policy")
    drawn = [
        ("Price paths (100 = first price)", plots.prices(out_dir, PLOT_FILES["prices"], result["times"], result["prices"], scenario["markets"])),
        ("Notional handled by each layer of the waterfall, per block",
         plots.layers(out_dir, PLOT_FILES["layers"], result["times"], result["layers_by_step"])),
        ("Insurance vault equity", plots.vault_equity(out_dir, PLOT_FILES["vault_equity"], result["times"], {"vault": result["vault_equity"]})),
    ]
    if policy:
        drawn.append(("ADL overshoot", plots.overshoot(out_dir, PLOT_FILES["adl_overshoot"], [policy])))
        drawn.append(("Haircuts per winner", plots.haircuts(out_dir, PLOT_FILES["haircuts"], [policy])))
    lines = ["# Backstop crash replay", "", scenario_line(scenario, policy["policy"] if policy else None), ""]
    lines += ["## Totals", "", auction_line(result.get("auction", {})), "", *totals_table(result["totals"]), ""]
    if "volunteer_step" in result:
        lines += comparison_section(result["volunteer_step"], result.get("auction", {}))
    lines += who_paid_section(result["who_paid"])
    lines += refusals_section(result["refusals"])
    if policy:
        lines += ["## ADL", "", *policy_table([policy]), ""]
    lines += ["## Invariants", "", *table(["invariant", "held", "detail"],
                                          [[check["name"], "✓" if check["held"] else "✗", check["detail"]] for check in result["invariants"]], "lcl"), ""]
    lines += ["## Plots", ""]
    for title, file_name in drawn:
        lines += [f"### {title}", "", f"![{title}]({file_name})", ""]
    lines += ["## Definitions", "", *definitions({label: meaning for label, meaning in (*TOTALS.values(), *AUCTION_TOTALS.values())}),
              *definitions({label: "a count over the whole replay; an account counts once however often it was hit" for label in COUNTS.values()}),
              *definitions(_policy_definitions()), ""]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines))
    return report


def scenario_line(scenario: dict, policy: str | None = None) -> str:
    run_up = f" after a {scenario['run_up_blocks']}-block run-up" if scenario.get("run_up_blocks") else ""
    return (f"Scenario: seed {scenario['seed']}, {scenario['traders']:,} traders, {scenario['steps']} blocks{run_up}, markets "
            f"{', '.join(scenario['markets'])}, vault {dollars(scenario['vault_deposit'])}" + (f"; ADL policy {policy}" if policy else "") + ".")


def auction_line(auction: dict) -> str:
    step = "on: ADL rounds first auction the bankrupt positions to volunteers" if auction.get("volunteers") else "off (--no-volunteers)"
    return f"Volunteer step {step}; the keeper's unwind policy for the vault: {auction.get('unwind', 'none')}."


def totals_table(totals: dict) -> list[str]:
    rows = [[label, dollars(totals[key])] for key, (label, _) in TOTALS.items()]
    rows += [[label, dollars(totals[key])] for key, (label, _) in AUCTION_TOTALS.items() if key in totals]
    rows += [[label, f"{totals[key]:,}"] for key, label in COUNTS.items()]
    return table(["measure", "value"], rows)


def refusals_section(refusals: dict) -> list[str]:
    lines = ["## Takeovers the vault refused, by limit", ""]
    if not refusals:
        return lines + ["The vault refused no takeover.", ""]
    rows = [[reason, f"{counts['attempts']:,}", f"{counts['accounts']:,}"] for reason, counts in refusals.items()]
    return lines + [*table(["limit (the vault's reason)", "refusals", "accounts"], rows), "",
                    "A refused account below zero is flagged bankrupt and goes to ADL; one above zero stays with its positions "
                    "and is tried again at the next block.", ""]


_POLICY_HEADERS = {
    "deficit": "deficit D", "haircuts": "Σ haircuts", "notional_closed": "force-closed", "min_notional_closed": "least to close",
    "notional_absorbed": "absorbed by the vault", "closed_over_deficit": "force-closed / D", "gini": "Gini of haircuts",
    "largest_share": "largest payer's share", "winners_hit": "winners hit", "hedged_hit": "hedged winners hit", "rounds": "rounds",
    "vault_pnl": "vault PnL", "vault_equity_low": "vault equity low", "residual_bad_debt": "residual bad debt",
}


def policy_cell(name: str, value) -> str:
    if name in ("closed_over_deficit",):
        return f"{value:.1f}x"
    if name == "gini":
        return f"{value:.3f}"
    if name == "largest_share":
        return f"{value:.1%}"
    if name in ("winners_hit", "hedged_hit", "rounds"):
        return f"{value:,.0f}" if isinstance(value, int) else f"{value:,.1f}"
    return dollars(value)


def policy_table(metrics: list[dict]) -> list[str]:
    rows = [[m["policy"], *(policy_cell(name, m[name]) for name in POLICY_COLUMNS)] for m in metrics]
    return table(["policy", *(_POLICY_HEADERS[name] for name in POLICY_COLUMNS)], rows)


def _policy_definitions() -> dict:
    return {_POLICY_HEADERS[name]: POLICY_DEFINITIONS[name] for name in POLICY_COLUMNS}


def summary_lines(result: dict) -> list[str]:
    """A plain-text summary for the console, at most MAX_SUMMARY_LINES lines."""
    totals, policy = result["totals"], result.get("policy")
    failed = [check["name"] for check in result["invariants"] if not check["held"]]
    held = len(result["invariants"]) - len(failed)
    vault = result["who_paid"].get("insurance_vault", {})
    lines = [
        "Backstop crash replay",
        scenario_line(result["scenario"], policy["policy"] if policy else None),
        f"liquidated      {dollars(totals['liquidated']):>16}  in {totals['accounts_liquidated']:,} accounts",
        f"backstopped     {dollars(totals['backstopped']):>16}  in {totals['accounts_backstopped']:,} accounts"
        f" ({totals['accounts_refused']:,} refused at least once)",
        f"ADL absorbed    {dollars(totals['adl_absorbed']):>16}  by the vault",
        f"ADL closed      {dollars(totals['adl_closed']):>16}  for {totals['accounts_adl']:,} bankrupt accounts, {totals['winners_hit']:,} winners hit",
        f"deficit         {dollars(totals['deficit']):>16}",
        f"volunteers took {dollars(totals.get('volunteer_taken', 0)):>16}  for a premium of {dollars(totals.get('volunteer_premium', 0))}"
        + ("" if result.get("auction", {}).get("volunteers") else " (volunteer step off)"),
        f"vault unwound   {dollars(totals.get('unwound', 0)):>16}  for {dollars(totals.get('unwind_premium', 0))};"
        f" still open at the end {dollars(totals.get('vault_open_notional', 0))}",
        f"vault PnL       {dollars(totals['vault_pnl']):>16}" + (f"  (deficits covered {dollars(-vault['takeover_deficit'])},"
                                                               f" market moves {dollars(vault['market'])})" if vault else ""),
        f"invariants      {held} of {len(result['invariants'])} held" + (f"; failed: {', '.join(failed)}" if failed else ""),
    ]
    for name, entry in result.get("volunteer_step", {}).get("policies", {}).items():
        lines.append(f"{name}: force-closed {dollars(entry['without']['notional_closed'])} without volunteers, "
                     f"{dollars(entry['with']['notional_closed'])} with (premium {dollars(entry['with']['volunteer_premium'])})")
    if policy:
        lines.append(f"{'policy':<22} {'closed/D':>9} {'Gini':>6} {'winners':>8} {'hedged':>7}")
        lines.append(f"{policy['policy'][:22]:<22} {policy['closed_over_deficit']:>8.1f}x {policy['gini']:>6.2f}"
                     f" {policy['winners_hit']:>8,} {policy['hedged_hit']:>7,}")
    return lines[:MAX_SUMMARY_LINES]
