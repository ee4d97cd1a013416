"""The keeper's auction step: volunteers take positions in the LiquidationEngine's descending-price
auctions, and the vault offers what it took over (docs/design.md 4.2).

The keeper runs the waterfall as liquidation -> vault -> auction -> ADL (backstop/keeper/waterfall.py):
between the vault's takeovers and the ADL rounds, `AuctionDesk.run`

1. offers the vault's positions (`start_unwind`, sent by the keeper, whose role lets it offer any
   part at any time), in each market where no unwind runs. Policies: "targets" offers only what the
   contract lets anyone offer (the part above the vault's position or leverage limit); the others
   add, in each market, the whole position: "profit" (the default) while the mark is above the
   position's entry, cancelling the unwind (`cancel_unwind`) if the mark falls back to it (the
   vault trades out of what it took over once the rebound has carried it into profit, giving up
   at most the premium its takers wait for); "rebound" once the mark has come back from the worst
   mark the desk saw by the auction's premium cap (a long above its low, a short below its high);
   "all" as soon as the vault holds it (it sells into the crash); "none" offers nothing;
2. lets the volunteers take, auction by auction (a bankrupt account's volunteer auctions first, then
   the vault's unwinds, each in order of the premium it reached): a volunteer takes once the
   auction's premium has reached its `threshold`, as much as half (`margin_use`) of its free margin
   (value above initial margin) can carry at the market's initial margin (reducing a position it
   holds on the other side costs no margin), never leaving less than the auction's minimum notional.

The desk reads and acts through the keeper's venue: `ModelVenue` (the reference model) or
`ChainVenue` (the contracts), with `now`, `auction_params`, `auctions`, `unwind_need` and the
actions `take` and `start_unwind`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from backstop.keeper.waterfall import NOTIONAL_SCALE, WAD, _dollars
from backstop.model.liquidation import offered, premium_reached, price_at_premium
from backstop.model.protocol import ZERO_ADDRESS

UNWIND_POLICIES = ("profit", "rebound", "targets", "all", "none")


@dataclass(frozen=True)
class Volunteer:
    """An account that takes positions in auctions once the discount is worth its while."""

    account: str
    # the premium (1e18 = 100%) from which it takes: the price is at least this far in its favour
    threshold: int
    # the share (1e18) of its free margin (value above initial margin) it commits in one pass
    margin_use: int = WAD // 2


@dataclass(frozen=True)
class RunningAuction:
    """An auction as the desk reads it (`LiquidationEngine.auctions`)."""

    account: str
    market: int
    # the size still offered, signed as the auctioned position
    lot: int
    start: int
    end: int
    # True for a bankrupt account's auction in its ADL round, False for the vault's unwind
    volunteer: bool


@dataclass(frozen=True)
class AuctionTake:
    """One take, from its `AuctionTaken` event (collateral units, 1e6 = $1)."""

    account: str
    taker: str
    market: int
    size: int
    price: int
    # the taker's gain against the mark: size x |mark - price|
    premium: int
    # size x price: what changed hands
    notional: int
    # True in a bankrupt account's volunteer auction, False in the vault's unwind
    volunteer: bool


class AuctionDesk:
    """The auction step of the keeper.

    venue: the keeper's venue; keeper: the account that starts unwinds (it holds the keeper role);
    volunteers: who takes, and from which premium; unwind: one of UNWIND_POLICIES;
    log: receives one line per action.
    """

    READ_BATCH = 64  # volunteers read at once (one multicall on chain)

    def __init__(self, venue, keeper: str, volunteers: Sequence[Volunteer] = (), unwind: str = "profit",
                 log: Callable[[str], None] = print):
        if unwind not in UNWIND_POLICIES:
            raise ValueError(f"unwind must be one of {', '.join(UNWIND_POLICIES)} (got {unwind!r})")
        self.venue, self.keeper, self.unwind, self.log = venue, keeper, unwind, log
        # the most eager first (lowest threshold), then by address, so that runs are reproducible
        self.volunteers = sorted(volunteers, key=lambda v: (v.threshold, v.account.lower()))
        # accounts whose volunteer auctions may still run (the keeper hands each bankrupt account over)
        self.watched: dict[str, None] = {}
        # per market, the lowest and highest mark seen (the "rebound" policy)
        self.lows: dict[int, int] = {}
        self.highs: dict[int, int] = {}
        # markets whose running unwind the "profit" policy started (it cancels them below the entry)
        self.profit_offers: set[int] = set()

    def watch(self, account: str) -> None:
        """An account whose ADL round may open with a volunteer auction."""
        self.watched[account] = None

    def run(self, report, offer: bool = True) -> None:
        """One pass: the vault's offers (unless `offer` is False), then every take the volunteers
        want; the takes go into `report.auction_takes`, the unwinds started into `report.unwinds`."""
        venue = self.venue
        for market, mark in enumerate(venue.read([])[1]):
            self.lows[market] = min(self.lows.get(market, mark), mark)
            self.highs[market] = max(self.highs.get(market, mark), mark)
        if offer and self.unwind != "none":
            self._offer_vault(report)
        accounts = [*self.watched, venue.vault]
        running = venue.auctions(accounts)
        auctioned = {a.account for a in running}
        for account in list(self.watched):
            if account not in auctioned:
                del self.watched[account]
        if not running or not self.volunteers:
            return
        now = venue.now()
        premium_cap, ramp, min_notional = venue.auction_params()
        marks = venue.read([])[1]
        reached = {(a.account, a.market): premium_reached(premium_cap, ramp, a.start, now) for a in running}
        # The ADL round's auctions first (they stand between winners and a forced close), then
        # the deepest discounts.
        running.sort(key=lambda a: (not a.volunteer, -reached[(a.account, a.market)], a.account.lower(), a.market))
        eager = [v for v in self.volunteers if v.threshold <= max(reached.values())]
        # A volunteer's free margin (None: flagged, and the contract refuses a bankrupt taker) and
        # positions, read when it is first offered a lot, with the next READ_BATCH volunteers: at
        # 100,000 traders thousands are eager and the lots run out after a few.
        free: dict[str, int | None] = {}
        held: dict[str, dict[int, int]] = {}
        fractions = venue.initial_margin_fractions()
        for auction in running:
            premium = reached[(auction.account, auction.market)]
            offered = self._offered(auction)
            for index, volunteer in enumerate(eager):
                if offered == 0:
                    break
                if volunteer.threshold > premium or volunteer.account == auction.account:
                    continue
                if volunteer.account not in free:
                    batch = [v.account for v in eager[index:index + self.READ_BATCH] if v.account not in free]
                    for account, health in zip(batch, venue.healths(batch)):
                        free[account] = None if health.bankrupt else _free_margin(health)
                    held.update(venue.positions(batch))
                if free[volunteer.account] is None:
                    continue
                price = price_at_premium(auction.lot, marks[auction.market], premium)
                size = self._size(volunteer, auction, offered, price, marks[auction.market], free, held, fractions, min_notional)
                if size == 0:
                    continue
                # Its limit is the price it computed: a later block only moves the price its way.
                outcome = venue.act(volunteer.account, "take", auction.account, auction.market, size, price)
                if not isinstance(outcome, list):
                    report.failures.append((f"take {auction.account} market {auction.market}", outcome.reason))
                    self.log(f"take {auction.account} market {auction.market} by {volunteer.account}: failed: {outcome.reason}")
                    continue
                event = next(fields for name, fields in outcome if name == "AuctionTaken")
                take = AuctionTake(
                    auction.account, volunteer.account, auction.market, event["size"], event["price"], event["premium"],
                    event["size"] * event["price"] // NOTIONAL_SCALE, auction.volunteer,
                )
                report.auction_takes.append(take)
                offered = event["remaining"]
                free[volunteer.account] = _free_margin(venue.health(volunteer.account))
                held.update(venue.positions([volunteer.account]))
                kind = "volunteer" if auction.volunteer else "unwind"
                self.log(f"{kind} take: {volunteer.account} took {_dollars(take.notional)} of {auction.account} market "
                         f"{auction.market} at {premium / WAD:.2%} off the mark (premium {_dollars(take.premium)})")

    # ------------------------------------------------------------ the vault's offers

    def _offer_vault(self, report) -> None:
        venue = self.venue
        vault = venue.vault
        if venue.health(vault).bankrupt:
            return  # its own ADL round auctions it
        positions = venue.entries(vault)
        if not positions:
            return
        running = {a.market for a in venue.auctions([vault])}
        marks = venue.read([])[1]
        premium_cap = venue.auction_params()[0]
        for market, (size, entry) in sorted(positions.items()):
            mark = marks[market]
            in_profit = mark > entry if size > 0 else mark < entry
            if market in running:
                if market in self.profit_offers and not in_profit:
                    self._cancel(market, report)
                continue
            self.profit_offers.discard(market)
            need = venue.unwind_need(market)
            whole = (
                self.unwind == "all"
                or (self.unwind == "profit" and in_profit)
                or (self.unwind == "rebound" and self._rebounded(market, size, mark, premium_cap))
            )
            amount = abs(size) if whole else need
            if amount == 0:
                continue
            if self.unwind == "profit" and in_profit and need == 0:
                self.profit_offers.add(market)
            outcome = venue.act(self.keeper, "start_unwind", market, amount, ZERO_ADDRESS)
            if not isinstance(outcome, list):
                report.failures.append((f"start an unwind in market {market}", outcome.reason))
                self.log(f"start an unwind of the vault in market {market}: failed: {outcome.reason}")
                continue
            event = next(fields for name, fields in outcome if name == "AuctionStarted")
            report.unwinds.append((market, event["size"], event["mark"]))
            self.log(f"unwind: the vault offers {abs(event['size']) / WAD:,.4f} in market {market} at {event['mark'] / WAD:,.2f}")

    def _cancel(self, market: int, report) -> None:
        outcome = self.venue.act(self.keeper, "cancel_unwind", market)
        if not isinstance(outcome, list):
            report.failures.append((f"cancel the unwind in market {market}", outcome.reason))
            self.log(f"cancel the vault's unwind in market {market}: failed: {outcome.reason}")
            return
        event = next(fields for name, fields in outcome if name == "AuctionCancelled")
        self.profit_offers.discard(market)
        report.unwinds_cancelled.append((market, event["remaining"]))
        self.log(f"unwind cancelled in market {market}: the mark is back below the vault's entry")

    def _rebounded(self, market: int, size: int, mark: int, premium_cap: int) -> bool:
        """Whether the market has come back from its worst mark for the position by the cap."""
        if size > 0:
            return mark * WAD >= self.lows[market] * (WAD + premium_cap)
        return mark * WAD <= self.highs[market] * (WAD - premium_cap)

    # ------------------------------------------------------------ sizing

    def _offered(self, auction: RunningAuction) -> int:
        """What the auction offers of what the account still holds (LiquidationEngine._offered)."""
        return offered(auction.lot, self.venue.positions([auction.account])[auction.account].get(auction.market, 0))

    @staticmethod
    def _size(volunteer: Volunteer, auction: RunningAuction, offered: int, price: int, mark: int, free: dict, held: dict,
              fractions: dict, min_notional: int) -> int:
        """What `volunteer` takes of `offered`: the part that reduces a position it holds on the
        other side (no margin needed), plus what `margin_use` of its free margin carries at the
        market's initial margin; never a remainder under the auction's minimum notional."""
        # The taker's side is the auctioned position's: it buys a long lot, sells a short one.
        own = held.get(volunteer.account, {}).get(auction.market, 0)
        reducing = min(abs(own), offered) if own and (own > 0) != (auction.lot > 0) else 0
        budget = free.get(volunteer.account, 0) * volunteer.margin_use // WAD
        per_unit = mark * fractions[auction.market] // WAD  # initial margin per base unit (x 1e30)
        carried = budget * NOTIONAL_SCALE // per_unit if per_unit else 0
        size = min(offered, reducing + carried)
        if size <= 0:
            return 0
        left = offered - size
        if left and left * price // NOTIONAL_SCALE < min_notional:
            # Leave at least the minimum (one unit more than its ceiling) or take nothing.
            size = offered - (-(-min_notional * NOTIONAL_SCALE // price) + 1)
        return max(size, 0)


def _free_margin(health) -> int:
    """Value above initial margin: what a volunteer may commit."""
    return max(health.value - health.initial_margin, 0)


def summarise(takes: Sequence[AuctionTake]) -> dict:
    """Totals of a run's takes (collateral units): notional and premium per kind, and volunteers."""
    volunteer = [t for t in takes if t.volunteer]
    unwind = [t for t in takes if not t.volunteer]
    return {
        "volunteer_notional": sum(t.notional for t in volunteer),
        "volunteer_premium": sum(t.premium for t in volunteer),
        "unwind_notional": sum(t.notional for t in unwind),
        "unwind_premium": sum(t.premium for t in unwind),
        "takers": len({t.taker for t in takes}),
    }
