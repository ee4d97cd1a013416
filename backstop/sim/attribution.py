"""Who paid for a crash: every account's gain or loss split by the layer of the waterfall that moved
it, summed per kind of trader, exact to the collateral unit (1e-6 dollar).

The exchange is zero-sum: whatever one account loses another account gains (a trader, a liquidator,
the insurance vault), or it stays in the pool as rounding dust. For each account

    PnL = value at the end - collateral put in
        = market + discount + penalty + takeover collateral + takeover deficit + ADL haircut + ADL residual
      + ADL netting + auction premium

where every term but `market` is a transfer the waterfall's events record (it leaves one account and
enters another, so each such column sums to zero over all accounts), and `market` is the rest: what
prices and funding did to the positions the account held, including realised PnL rounding. Over all
accounts the PnL adds up to minus the rounding dust the pool keeps (its books hold a few units more
than the accounts are worth); the table's "pool" row holds that dust, so every column and the PnL
column sum to exactly zero.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

# The columns of the table, in order: the layer each one belongs to, and what it is.
COLUMNS = {
    "market": "prices and funding on the positions held (mark-to-market PnL, realised or not, and its rounding)",
    "liquidation_discount": "the discount a liquidator earns on a position it takes over (paid by the liquidated account)",
    "liquidation_penalty": "the penalty a liquidated account pays into the insurance vault",
    "takeover_collateral": "collateral left in an account the vault took over, handed to the vault",
    "takeover_deficit": "negative value of an account the vault took over, covered by the vault",
    "adl_haircut": "profit a winner gave up in an ADL round, paid to the bankrupt account (which it brings to zero)",
    "adl_residual": "what an ADL round moved between the bankrupt account and the vault after the haircuts (funding and rounding: a few units)",
    "adl_netting": "the deficit of an account netted into another's ADL round (`join_round`), taken over by the round's host "
                   "(whose haircuts then cover it)",
    "auction_premium": "what a taker gained against the mark in an auction (issue 15): paid by a bankrupt account in its round's "
                       "volunteer auction (the winners pay it back through their haircuts), or by the vault in its unwind",
}
POOL = "pool"
VAULT = "insurance_vault"


@dataclass
class Ledger:
    """Per account: money put in, value at the end, and each transfer column (collateral units)."""

    put_in: Counter = field(default_factory=Counter)
    end: Counter = field(default_factory=Counter)
    transfers: dict[str, Counter] = field(default_factory=lambda: {column: Counter() for column in COLUMNS if column != "market"})

    def move(self, column: str, payer: str, payee: str, amount: int) -> None:
        """`amount` leaves `payer` and enters `payee` under `column`."""
        self.transfers[column][payer] -= amount
        self.transfers[column][payee] += amount


def record_liquidations(ledger: Ledger, fees: Iterable[tuple[str, str, int, int]], vault: str) -> None:
    """(account, liquidator, discount, penalty) of every liquidation."""
    for account, liquidator, discount, penalty in fees:
        ledger.move("liquidation_discount", account, liquidator, discount)
        ledger.move("liquidation_penalty", account, vault, penalty)


def record_takeovers(ledger: Ledger, takeovers: Iterable[tuple[str, int]], vault: str) -> None:
    """(account, value handed over) of every takeover: positive, collateral the vault receives;
    negative, a deficit it covers."""
    for account, value in takeovers:
        ledger.move("takeover_collateral" if value >= 0 else "takeover_deficit", account, vault, value)


def record_adl_rounds(ledger: Ledger, rounds: Iterable[dict], vault: str) -> None:
    """Every round's haircuts (winner -> bankrupt account), residual (bankrupt account -> vault)
    and netted deficits (host -> each account netted into its round)."""
    for round_ in rounds:
        for account, deficit in round_.get("joined", ()):
            ledger.move("adl_netting", round_["account"], account, deficit)
        for winner, haircut in round_["haircut_by_winner"].items():
            ledger.move("adl_haircut", winner, round_["account"], haircut)
        ledger.move("adl_residual", round_["account"], vault, round_["residual"])


def record_auction_takes(ledger: Ledger, takes: Iterable) -> None:
    """Every auction take (backstop/keeper/auctions.py AuctionTake): its premium, from the
    auctioned account to the taker."""
    for take in takes:
        ledger.move("auction_premium", take.account, take.taker, take.premium)


def who_paid(ledger: Ledger, kind_of: dict[str, str]) -> dict:
    """The table: one row per kind of account (`kind_of[account]`; the vault as VAULT) plus the
    pool's rounding dust, each with "accounts", "put_in", "end", "pnl" and every column of COLUMNS;
    and "total", the sum of the rows: zero in "pnl" and every column of COLUMNS, "end" == "put_in".
    Collateral units."""
    rows: dict[str, Counter] = {}
    for account, kind in kind_of.items():
        row = rows.setdefault(kind, Counter())
        pnl = ledger.end[account] - ledger.put_in[account]
        row["put_in"] += ledger.put_in[account]
        row["end"] += ledger.end[account]
        row["pnl"] += pnl
        explained = 0
        for column, moves in ledger.transfers.items():
            row[column] += moves[account]
            explained += moves[account]
        row["market"] += pnl - explained
        row["accounts"] += 1
    unknown = {account for moves in ledger.transfers.values() for account in moves if moves[account]} - set(kind_of)
    if unknown:
        raise ValueError(f"transfers to or from accounts of no kind: {sorted(unknown)[:3]}")
    put_in, end = sum(row["put_in"] for row in rows.values()), sum(row["end"] for row in rows.values())
    # The pool keeps what the accounts are no longer worth (its books still hold all that was put
    # in): rounding that favoured it, its "end" and its gain.
    dust = put_in - end
    rows[POOL] = Counter(end=dust, pnl=dust, market=dust)
    columns = ["accounts", "put_in", "end", "pnl", *COLUMNS]
    table = {kind: {column: row[column] for column in columns} for kind, row in rows.items()}
    table["total"] = {column: sum(row[column] for kind, row in table.items()) for column in columns}
    return table
