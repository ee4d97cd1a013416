"""Issue 15's figures in the reports: what the volunteer step took off forced ADL and at what
premium, and what the vault's unwind did, per policy, with and without the step (a comparison
from backstop/sim/study.py `volunteer_step`)."""

from __future__ import annotations

from backstop.report.format import dollars, table

HEADERS = ("policy", "force-closed without", "force-closed with", "drop", "volunteers took", "premium paid", "premium / taken",
           "move spread over winners", "D without → with", "vault PnL without → with", "vault open notional at the end")


def comparison_section(comparison: dict, auction: dict) -> list[str]:
    """The "Volunteers before forced ADL" section: one row per policy, then the queue's sentence."""
    policies = comparison.get("policies", {})
    lines = ["## Volunteers before forced ADL, and the vault's unwind (issue 15)", ""]
    if not policies:
        return lines + ["No replay with the volunteer step switched the other way ran (`compare --volunteer-counterparts` runs one per policy).", ""]
    lines += [
        f"Seed {comparison['seed']}, every policy replayed on the model with and without the volunteer step (the ADL round first "
        "auctions the bankrupt positions; the scenario's liquidators take from 2% off the mark, its market makers from 3%, each with "
        f"half its free margin per block). The keeper's unwind policy for the vault: **{auction.get('unwind', 'profit')}** in both.",
        "",
    ]
    rows = []
    for name, entry in policies.items():
        on, off = entry["with"], entry["without"]
        taken = on["volunteer_taken"]
        rows.append([
            name, dollars(off["notional_closed"]), dollars(on["notional_closed"]),
            f"{dollars(entry['closed_drop'])} ({entry['closed_drop_share']:.0%})", dollars(taken), dollars(on["volunteer_premium"]),
            f"{on['volunteer_premium'] / taken:.2%}" if taken else "–", dollars(on["socialised"] - off["socialised"]),
            f"{dollars(off['deficit'])} → {dollars(on['deficit'])}", f"{dollars(off['vault_pnl'])} → {dollars(on['vault_pnl'])}",
            dollars(on["vault_open_notional"]),
        ])
    lines += [*table(list(HEADERS), rows), ""]
    lines += [*queue_sentence(policies), ""]
    lines += [
        "- *force-closed*: winners' positions ADL closed against their will, at the round's price; *volunteers took*: bankrupt positions "
        "taken in the rounds' auctions, at the auction's price; *premium paid*: what volunteers gained against the mark, added to D and "
        "paid by the winners through their haircuts.",
        "- *move spread over winners*: how much more deficit was spread over the winners' side by the loss index with the step than without: "
        "while a round's auction runs, the positions not yet taken stay with the bankrupt account, and the market's move on what volunteers "
        "then take (the round's price against the mark at the take) is settled when the round closes.",
        "- *vault PnL*: the vault's equity at the end minus after its deposit, its unwind included (the premium it gave up is in it); "
        "*vault open notional*: what it still holds at the end, at the last marks.",
        "",
    ]
    return lines


def queue_sentence(policies: dict) -> list[str]:
    """The issue's question in one sentence per queue policy: by how much, at what premium."""
    sentences = []
    for name, entry in policies.items():
        if not name.startswith("queue"):
            continue
        on, off = entry["with"], entry["without"]
        sentences.append(
            f"Under **{name}**, volunteers cut the winners' notional force-closed from {dollars(off['notional_closed'])} to "
            f"{dollars(on['notional_closed'])} ({dollars(entry['closed_drop'])} less, {entry['closed_drop_share']:.0%}), taking "
            f"{dollars(on['volunteer_taken'])} for a premium of {dollars(on['volunteer_premium'])}"
            + (f" ({on['volunteer_premium'] / on['volunteer_taken']:.2%} of what they took)" if on["volunteer_taken"] else "")
            + f"; the winners hit go from {off['winners_hit']:,} to {on['winners_hit']:,}."
        )
    return sentences


def totals_rows(totals: dict) -> list[list[str]]:
    """Rows for a crash report's totals table."""
    return [[label, dollars(totals.get(key, 0))] for key, (label, _) in TOTALS.items()]


TOTALS = {
    "volunteer_taken": ("notional volunteers took in ADL rounds' auctions",
                        "bankrupt positions the scenario's liquidators and market makers took in the auctions that open ADL rounds"),
    "volunteer_premium": ("premium paid to volunteers", "what they gained against the mark; it joins D, so the winners pay it"),
    "unwound": ("notional of the vault unwound", "the vault's positions taken in its unwind auctions"),
    "unwind_premium": ("premium the vault paid in its unwind", "what it gave up against the mark (part of its PnL)"),
    "vault_open_notional": ("vault open notional at the end", "the vault's positions left at the end of the replay, at the last marks"),
}
