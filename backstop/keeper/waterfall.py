"""The waterfall keeper: liquidation through the market, then the insurance vault, then ADL.

One `Keeper` serves the on-chain crash replay (backstop/sim/chain_replay.py), the long-running
`ape run keeper` and, through backstop/keeper/model_venue.py, the reference model. Each
`run_once(accounts)`:

1. accrues funding in every market, so account values include it;
2. reads every watched account's health (and the vault's) in one batch, and lifts the bankruptcy
   flag of accounts the prices have brought back above zero (else they stay frozen);
3. liquidates, through the market, accounts below maintenance margin but above the backstop line:
   position by position, largest first, full size, while that market's liquidation depth lasts
   and a liquidator can carry the position at initial margin; an account healthy again keeps the
   rest;
4. hands to the insurance vault (`Clearinghouse.backstop`, from the keeper account, whose role
   allows it below maintenance margin) what the market did not take, and every account below the
   backstop line or under water. The vault may refuse (its limits); the contract flags a refused
   account with negative value bankrupt;
5. runs the auctions, if it has an auction desk (backstop/keeper/auctions.py): offers the vault's
   positions, and lets the volunteers take from the running auctions (the vault's unwinds and the
   volunteer auctions that open ADL rounds);
6. executes the ADL rounds whose volunteer auction has ended and finishes those past their
   deadline (`adl.finish_due()`), then gives each new bankrupt account to the ADL executor
   (`adl.resolve(account)`), which opens its round (and with it, when the volunteer step is on,
   its volunteer auction), or, without one, logs it as "ADL pending". An account whose round is
   open waits for it (it is reported as pending meanwhile).

The keeper decides; a venue reads and acts: `ChainVenue` (backstop/keeper/chain_venue.py) the
deployed contracts on an Anvil node, `ModelVenue` (backstop/keeper/model_venue.py) the reference
model.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Callable, Mapping, Protocol, Sequence

from eth_utils import to_checksum_address

WAD = 10**18
USDC = 10**6
NOTIONAL_SCALE = 10**30  # size (1e18) x price (1e18) / NOTIONAL_SCALE = collateral units (1e6)

# The watched list is checksummed on every pass: cached, as keccak per address per pass is the
# keeper's own hot spot at 100,000 accounts.
_CHECKSUMMED: dict = {}


def _checksum(address) -> str:
    checksummed = _CHECKSUMMED.get(address)
    if checksummed is None:
        checksummed = _CHECKSUMMED[address] = to_checksum_address(address)
    return checksummed


def remember_checksummed(addresses) -> None:
    """Tells the keeper that `addresses` came from `to_checksum_address` (a replay's traders), so
    its first pass does not hash them again."""
    _CHECKSUMMED.update((address, address) for address in addresses)


# ---------------------------------------------------------------- what the keeper reads and returns

@dataclass
class Health:
    """An account as one read saw it (collateral units)."""

    account: str
    value: int
    initial_margin: int
    maintenance_margin: int
    bankrupt: bool

    @property
    def failing(self) -> bool:
        """Below maintenance margin with a position open."""
        return self.maintenance_margin > 0 and self.value < self.maintenance_margin

    @property
    def margin_ratio(self) -> float:
        """Value per unit of maintenance margin: below 1 liquidatable; the lower, the more urgent."""
        return self.value / self.maintenance_margin


class AdlExecutor(Protocol):
    """Resolves a bankrupt account by auto-deleveraging (the ADL engine's keeper side).

    `resolve` runs one ADL round for `account` and returns its metrics: a dict, or a dataclass
    (such as backstop/keeper/adl_executor.py's RoundMetrics), read as a dict; or None when the
    book could not resolve the round, which then stays open until its deadline. `finish_due`
    finishes every round the executor left open whose deadline has passed (the engine's
    fallback) and returns their metrics. The keeper and the replay read these keys (collateral
    units, 1e6 = $1) and pass the others through: "deficit" (the D the round covered),
    "notional_closed" (winners' positions force-closed) and "winners_hit" (winners that paid a
    haircut or were closed).
    """

    def resolve(self, account: str, members: Sequence[str] = ()) -> tuple[dict | None, list[str]]:
        """Opens `account`'s round, nets `members` into it, and resolves it if it can now: (the
        metrics, or None while it stays open; the members the engine refused to net)."""

    def groups(self, accounts: list[str]) -> list[tuple[str, list[str]]]:
        """The accounts grouped for netting: (host, members), one round each."""

    def finish_due(self) -> list[dict]: ...

    def open_accounts(self) -> list[str]:
        """The accounts whose round is open (its volunteer auction running, or waiting for its deadline)."""


class Venue(Protocol):
    """Where the keeper reads and acts: backstop/keeper/chain_venue.py's `ChainVenue`, or
    backstop/keeper/model_venue.py's model.

    An action is a Clearinghouse function name and its arguments; its outcome is the list of
    (event name, fields) it emitted, or a failure with a `reason`. `act_all` performs several
    (in order per sender, independent across senders); a venue without it acts one by one."""

    vault: str
    market_count: int

    def read(self, accounts: list[str]) -> tuple[list[Health], list[int], int, int]:
        """(healths, marks, backstop ratio, vault loss allowance). Healths may leave out accounts
        that are comfortably above maintenance margin, never one below it."""

    def health(self, account: str) -> Health: ...

    def healths(self, accounts: list[str]) -> list[Health]:
        """Every account's exact health (on chain in one multicall)."""

    def positions(self, accounts: list[str]) -> dict[str, dict[int, int]]:
        """account -> {market: signed size} of its open positions."""

    def initial_margin_fractions(self) -> dict[int, int]: ...

    def act(self, sender: str, action: str, *args): ...


@dataclass
class KeeperReport:
    """What one `run_once` did. Notionals are collateral units (1e6 = $1) per market id."""

    liquidated: Counter = field(default_factory=Counter)
    backstopped: Counter = field(default_factory=Counter)
    liquidated_accounts: list[str] = field(default_factory=list)
    backstopped_accounts: list[str] = field(default_factory=list)
    # (account, the vault's reason) for every takeover the vault refused
    refusals: list[tuple[str, str]] = field(default_factory=list)
    # (account, liquidator, discount, penalty) of every liquidation, collateral units
    liquidation_fees: list[tuple[str, str, int, int]] = field(default_factory=list)
    # (account, value handed to the vault: negative for a deficit it covered) of every takeover
    takeovers: list[tuple[str, int]] = field(default_factory=list)
    # account -> deficit, for every bankrupt account that went on to ADL
    bankrupt: dict[str, int] = field(default_factory=dict)
    # the ADL executor's metrics, one dict per round
    adl_rounds: list[dict] = field(default_factory=list)
    # bankrupt accounts left for ADL because there is no executor
    adl_pending: list[str] = field(default_factory=list)
    # flagged accounts whose value is back above zero, unfrozen
    cleared: list[str] = field(default_factory=list)
    # every auction take (backstop/keeper/auctions.py's AuctionTake): volunteers and the vault's unwind
    auction_takes: list = field(default_factory=list)
    # (market, signed size offered, mark) of every unwind of the vault the keeper started
    unwinds: list[tuple[int, int, int]] = field(default_factory=list)
    # (market, size still offered) of every unwind the keeper cancelled
    unwinds_cancelled: list[tuple[int, int]] = field(default_factory=list)
    # (action, revert reason) of every action that failed
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def adl_closed(self) -> int:
        return sum(round_.get("notional_closed", 0) for round_ in self.adl_rounds)

    @property
    def volunteer_taken(self) -> int:
        """Notional volunteers took in the auctions that open ADL rounds (collateral units)."""
        return sum(take.notional for take in self.auction_takes if take.volunteer)

    @property
    def unwound(self) -> int:
        """Notional of the vault's positions taken in its unwinds (collateral units)."""
        return sum(take.notional for take in self.auction_takes if not take.volunteer)

    def line(self) -> str:
        return (
            f"liquidated {_dollars(sum(self.liquidated.values()))} ({len(self.liquidated_accounts)} accounts), "
            f"backstopped {_dollars(sum(self.backstopped.values()))} ({len(self.backstopped_accounts)}), "
            f"{len(self.refusals)} refused, {len(self.bankrupt)} bankrupt, {len(self.adl_rounds)} ADL rounds "
            f"({_dollars(self.adl_closed)} closed), {len(self.adl_pending)} ADL pending, {len(self.cleared)} cleared, "
            f"volunteers took {_dollars(self.volunteer_taken)}, vault unwound {_dollars(self.unwound)}, "
            f"{len(self.failures)} failed"
        )


# ---------------------------------------------------------------- the keeper

class Keeper:
    """Runs the waterfall on a venue.

    keeper: the account that sends accruals and takeovers; it needs the clearinghouse's keeper role.
    liquidators: accounts with collateral in the pool that take positions over at the mark.
    adl: the ADL executor; None logs bankrupt accounts as "ADL pending".
    auctions: the auction step (backstop/keeper/auctions.py's AuctionDesk); None skips it.
    log: receives one line per action.
    """

    def __init__(self, venue: Venue, keeper: str, liquidators: Sequence[str] = (), adl: AdlExecutor | None = None,
                 log: Callable[[str], None] = print, auctions=None):
        self.venue = venue
        self.keeper = to_checksum_address(keeper)
        self.liquidators = [to_checksum_address(liquidator) for liquidator in liquidators]
        self.adl = adl
        self.auctions = auctions
        self.log = log
        # the last list of accounts `run_once` was given and the watch list made of it: a replay
        # passes the same 100,000 accounts every block
        self._watching: tuple[list[str], list[str]] = ([], [])

    def run_once(self, accounts: Sequence[str], liquidation_depth: Mapping[int, int] | None = None) -> KeeperReport:
        """One pass over `accounts` (the vault is always watched too). `liquidation_depth`: per
        market id, the notional (collateral units) liquidators take over in this pass; a market
        left out has none; None means unlimited."""
        venue, report = self.venue, KeeperReport()
        self._accrue_funding(report)
        healths, marks, ratio, allowance = venue.read(self._watch_list(accounts))
        # An account in an open round waits for it: its auction, its execution or its deadline.
        in_round = set(self._open_rounds())
        self._clear_recovered([h for h in healths if h.bankrupt and h.value >= 0 and h.account not in in_round], report)
        failing = sorted((h for h in healths if h.failing and h.account not in in_round), key=lambda h: h.margin_ratio)
        if not failing:
            self._auctions_and_adl(report)
            return report
        positions = venue.positions([h.account for h in failing])

        # Between the backstop line and maintenance margin the market gets the first go; the vault
        # itself can only ever be liquidated through the market.
        def market_first(h: Health) -> bool:
            return not h.bankrupt and h.value >= 0 and (h.value >= h.maintenance_margin * ratio // WAD or h.account == venue.vault)

        to_market = [h for h in failing if market_first(h)]
        to_vault = [h for h in failing if not market_first(h)]
        if to_market:
            to_vault += self._liquidate(to_market, positions, marks, liquidation_depth, {h.account: h for h in healths}, report)
        to_vault.sort(key=lambda h: h.margin_ratio)

        vault = next((h for h in to_vault if h.account == venue.vault), None)
        if vault is not None and vault.value < 0:
            self._flag_vault(vault, report)
        self._backstop([h for h in to_vault if h.account != venue.vault], positions, marks, allowance, report)
        self._auctions_and_adl(report)
        return report

    def _watch_list(self, accounts: Sequence[str]) -> list[str]:
        """`accounts` checksummed, then the vault and the liquidators, each once."""
        given, watched = self._watching
        if list(accounts) != given:
            watched = list(dict.fromkeys([*map(_checksum, accounts), self.venue.vault, *self.liquidators]))
            self._watching = (list(accounts), watched)
        return watched

    def settle_auctions(self) -> KeeperReport:
        """A pass without prices moving or anyone failing anew (the tail of a replay): volunteers
        take from the auctions still running, rounds whose auction ended are executed; the vault
        offers nothing new."""
        report = KeeperReport()
        self._accrue_funding(report)
        self._auctions_and_adl(report, offer=False)
        return report

    def _open_rounds(self) -> list[str]:
        open_accounts = getattr(self.adl, "open_accounts", None)
        return list(open_accounts()) if open_accounts is not None else []

    # ------------------------------------------------------------ the layers

    def _accrue_funding(self, report: KeeperReport) -> None:
        markets = range(self.venue.market_count)
        outcomes = self._act_all([(self.keeper, "accrue_funding", (m,)) for m in markets])
        accrued = [m for m, outcome in zip(markets, outcomes) if self._succeeded(outcome, f"accrue funding in market {m}", report)]
        self.log(f"funding accrued in markets {accrued}")

    def _clear_recovered(self, recovered: list[Health], report: KeeperReport) -> None:
        outcomes = self._act_all([(self.keeper, "clear_bankruptcy", (h.account,)) for h in recovered])
        for health, outcome in zip(recovered, outcomes):
            if self._succeeded(outcome, f"clear the bankruptcy of {health.account}", report):
                health.bankrupt = False
                report.cleared.append(health.account)
                self.log(f"cleared the bankruptcy of {health.account}: value back to {_dollars(health.value)}")

    def _liquidate(self, candidates: list[Health], positions: dict[str, dict[int, int]], marks: list[int],
                   depth: Mapping[int, int] | None, known: dict[str, Health], report: KeeperReport) -> list[Health]:
        """Liquidates in rounds, one block each: every candidate's largest position that the
        market's depth and a liquidator can take, then a fresh read of who is still failing.
        Returns the accounts the market left below maintenance margin, for the vault."""
        venue = self.venue
        budget = None if depth is None else {m: depth.get(m, 0) for m in range(venue.market_count)}
        fractions = venue.initial_margin_fractions()
        # A liquidator must end at or above initial margin with the position on its books.
        free_margin = {}
        for liquidator in self.liquidators:
            health = known.get(liquidator) or venue.health(liquidator)
            free_margin[liquidator] = health.value - health.initial_margin
        left_over = []
        listed = set(report.liquidated_accounts)  # thousands in a crash block: a list lookup each is quadratic
        while candidates:
            actions, taken = [], []
            for health in candidates:
                account = health.account
                choice = self._next_liquidation(account, positions[account], marks, budget, free_margin, fractions)
                if choice is None:
                    left_over.append(health)
                    continue
                market, notional, liquidator, needed = choice
                actions.append((liquidator, "liquidate", (account, market, abs(positions[account][market]))))
                taken.append((health, market, liquidator, needed))
                free_margin[liquidator] -= needed
                if budget is not None:
                    budget[market] -= notional
            if not actions:
                break
            still_open = []
            for (health, market, liquidator, needed), outcome in zip(taken, self._act_all(actions)):
                account = health.account
                if not self._succeeded(outcome, f"liquidate {account} market {market}", report):
                    free_margin[liquidator] += needed
                    if budget is not None:
                        budget[market] += abs(positions[account][market]) * marks[market] // NOTIONAL_SCALE
                    left_over.append(health)
                    continue
                event = next(fields for name, fields in outcome if name == "Liquidation")
                notional = event["size"] * event["price"] // NOTIONAL_SCALE
                report.liquidated[market] += notional
                report.liquidation_fees.append((account, liquidator, event["discount"], event["penalty"]))
                if account not in listed:
                    listed.add(account)
                    report.liquidated_accounts.append(account)
                free_margin[liquidator] += event["discount"]
                del positions[account][market]
                self.log(f"liquidated {account} market {market}: {_dollars(notional)} to {liquidator} (penalty {_dollars(event['penalty'])})")
                if positions[account]:
                    still_open.append(account)
            # An account healthy again once a position is gone keeps the rest.
            candidates = [h for h in venue.read(still_open)[0] if h.failing] if still_open else []
        return left_over

    def _next_liquidation(self, account: str, positions: dict[int, int], marks: list[int], budget: dict[int, int] | None,
                          free_margin: dict[str, int], fractions: dict[int, int]) -> tuple[int, int, str, int] | None:
        """(market, notional, liquidator, initial margin it needs) of the account's largest
        position that the market can take now, or None."""
        for market in sorted(positions, key=lambda m: -abs(positions[m]) * marks[m]):
            notional = abs(positions[market]) * marks[market] // NOTIONAL_SCALE
            if budget is not None and budget[market] < notional:
                self.log(f"liquidate {account} market {market}: {_dollars(notional)} is beyond the market's depth left ({_dollars(budget[market])})")
                continue
            needed = -(-notional * fractions[market] // WAD)
            liquidator = next((l for l in self.liquidators if l != account and free_margin[l] >= needed), None)
            if liquidator is None:
                self.log(f"liquidate {account} market {market}: no liquidator can carry {_dollars(notional)}")
                continue
            return market, notional, liquidator, needed
        return None

    def _backstop(self, accounts: list[Health], positions: dict[str, dict[int, int]], marks: list[int], allowance: int,
                  report: KeeperReport) -> None:
        """Hands the accounts to the vault, in one block, most urgent first."""
        to_send = []
        for health in accounts:
            deficit = max(-health.value, 0)
            if health.bankrupt and deficit > allowance:
                # Flagged in an earlier pass and the vault still cannot cover it: straight to ADL.
                report.bankrupt[health.account] = deficit
            else:
                to_send.append(health)
        outcomes = self._act_all([(self.keeper, "backstop", (h.account,)) for h in to_send])
        for health, outcome in zip(to_send, outcomes):
            account = health.account
            if not self._succeeded(outcome, f"backstop {account}", report):
                continue
            for name, event in outcome:
                if name == "Takeover":
                    for market, size in positions[account].items():
                        report.backstopped[market] += abs(size) * marks[market] // NOTIONAL_SCALE
                    report.backstopped_accounts.append(account)
                    report.takeovers.append((account, event["value"]))
                    self.log(f"backstopped {account}: the vault took {len(positions[account])} positions and value {_dollars(event['value'])}")
                elif name == "TakeoverRefused":
                    report.refusals.append((account, event["reason"]))
                    self.log(f"backstop {account} refused: {event['reason']}")
                    if health.value < 0:
                        report.bankrupt[account] = -health.value

    def _flag_vault(self, health: Health, report: KeeperReport) -> None:
        """The vault under water: nobody can take it over, so it is flagged and goes to ADL."""
        if health.bankrupt or self._succeeded(self.venue.act(self.keeper, "flag_bankruptcy", health.account), "flag the vault bankrupt", report):
            report.bankrupt[health.account] = -health.value

    def _auctions_and_adl(self, report: KeeperReport, offer: bool = True) -> None:
        """The auction step, then ADL: the rounds due (auction ended, or past the deadline), the
        new bankrupt accounts' rounds, and the rounds still open reported as pending."""
        if self.auctions is not None:
            self.auctions.run(report, offer=offer)
        if self.adl is not None:
            for metrics in self.adl.finish_due():
                self._record_round(metrics, "finished", report)
        in_round = set(self._open_rounds())
        new = {account: deficit for account, deficit in report.bankrupt.items() if account not in in_round}
        if self.adl is not None and new:
            # Accounts bankrupt together on the same markets and sides: one round each group.
            for host, members in self.adl.groups(list(new)):
                for refused in self._adl(host, sum(new[a] for a in (host, *members)), report, members):
                    self._adl(refused, new[refused], report)
        else:
            for account, deficit in new.items():
                self._adl(account, deficit, report)
        pending = set(report.adl_pending)
        report.adl_pending += [account for account in self._open_rounds() if account not in pending]

    def _adl(self, account: str, deficit: int, report: KeeperReport, members: Sequence[str] = ()) -> list[str]:
        """`account`'s round with `members` netted into it; the members the engine refused."""
        if self.adl is None:
            report.adl_pending.append(account)
            self.log(f"ADL pending: {account} (deficit {_dollars(deficit)})")
            return []
        if self.auctions is not None:
            self.auctions.watch(account)
        metrics, refused = self.adl.resolve(account, members)
        if metrics is None:
            netted = f" with {len(members) - len(refused)} accounts netted into it" if members else ""
            self.log(f"ADL round of {account}{netted} open (deficit {_dollars(deficit)}): its volunteer auction runs, or the book "
                     "cannot resolve it and it ends at its deadline")
        else:
            self._record_round(metrics, "resolved", report)
        return refused

    def _record_round(self, metrics, how: str, report: KeeperReport) -> None:
        # Shallow: dataclasses.asdict deep-copies each round's per-winner dict (thousands of
        # entries a round at 10,000 traders), a tenth of a model replay's time.
        metrics = {f.name: getattr(metrics, f.name) for f in fields(metrics)} if is_dataclass(metrics) else dict(metrics)
        report.adl_rounds.append(metrics)
        self.log(f"ADL {how} {metrics.get('account')}: deficit {_dollars(metrics.get('deficit', 0))}, "
                 f"{_dollars(metrics.get('notional_closed', 0))} closed, {metrics.get('winners_hit', 0)} winners hit")

    # ------------------------------------------------------------ acting

    def _act_all(self, actions: list[tuple[str, str, tuple]]) -> list:
        if not actions:
            return []
        act_all = getattr(self.venue, "act_all", None)
        if act_all is None:  # a venue without batches (the model) acts one by one
            return [self.venue.act(sender, action, *args) for sender, action, args in actions]
        return act_all(actions)

    def _succeeded(self, outcome, action: str, report: KeeperReport) -> bool:
        """True for a list of events; a failure is recorded and logged."""
        if isinstance(outcome, list):
            return True
        report.failures.append((action, outcome.reason))
        self.log(f"{action}: failed: {outcome.reason}")
        return False


def _dollars(units: int) -> str:
    return f"${units / USDC:,.2f}"
