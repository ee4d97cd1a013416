"""The keeper's ADL executors: resolve one bankrupt account's round and measure it.

`ChainAdlExecutor` drives contracts/AdlEngine.vy through raw JSON-RPC; `ModelAdlExecutor` drives the
reference model (backstop/model/adl.py). Both read the book, plan with
backstop/keeper/adl_planner.py and return the same metrics (`RoundMetrics`), so a replay on chain
and one on the model compare figure by figure.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

from eth_utils import to_checksum_address

from backstop.chain.events import EventDecoder
from backstop.chain.fast_chain import FastChain, RevertError
from backstop.keeper.adl_planner import DEFAULT_BATCH, MarketToResolve, WinnerState, plan_market, winner_states
from backstop.keeper.chain_venue import send_in_blocks
from backstop.model import adl
from backstop.model.protocol import MAX_MARKETS, ModelRevert, notional


@dataclass(frozen=True)
class RoundMetrics:
    """One ADL round as the issue measures it (collateral units, 1e6 = $1)."""

    account: str
    deficit: int
    haircuts: int
    notional_closed: int
    notional_absorbed: int
    # the notional no policy could avoid closing: what the vault could not absorb at the round's start
    min_notional_closed: int
    residual: int
    # deficit spread over the winners' sides through the loss index (rounding, funding, the fallback)
    socialised: int
    # whether the round ended at its deadline (`finish_round`) rather than by its policy
    fallback: bool
    # haircut per winner hit, and how many winners were hit (haircut or close)
    haircut_by_winner: dict
    winners_hit: int
    # winners hit whose book was hedged (net exposure under half their gross exposure)
    hedged_winners: list
    hedged_hit: int
    # accounts netted into the round (`AdlEngine.join_round`), each with the deficit it brought: [(account, deficit)]
    joined: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def round_metrics(closed: adl.ClosedRound, min_notional_closed: int, hedged: set[str], joined: list | None = None) -> RoundMetrics:
    """Metrics of a closed round from its event, its hits and the accounts netted into it."""
    haircut_by_winner: dict[str, int] = {}
    for hit in closed.hits:
        if hit.haircut or hit.size_closed:
            haircut_by_winner[hit.winner] = haircut_by_winner.get(hit.winner, 0) + hit.haircut
    return RoundMetrics(
        account=closed.account, deficit=closed.deficit, haircuts=closed.haircuts, notional_closed=closed.notional_closed,
        notional_absorbed=closed.notional_absorbed, min_notional_closed=min_notional_closed, residual=closed.residual,
        socialised=closed.socialised, fallback=closed.fallback,
        haircut_by_winner=haircut_by_winner, winners_hit=len(haircut_by_winner),
        hedged_winners=sorted(hedged & haircut_by_winner.keys()), hedged_hit=len(hedged & haircut_by_winner.keys()), joined=list(joined or []),
    )


def netting_groups(accounts: list[str], sides_of, vault: str) -> list[tuple[str, list[str]]]:
    """The accounts bankrupt together, grouped by what they hold: one ADL round per group of the
    same markets on the same sides, the first account its host and the others netted into it
    (`join_round`); the vault and accounts without positions stand alone. `sides_of(account)`:
    its (market, long) pairs. Hosts in the order of `accounts`."""
    groups: dict[tuple, tuple[str, list[str]]] = {}
    alone: list[tuple[str, list[str]]] = []
    order: list[tuple[str, list[str]]] = []
    for account in accounts:
        sides = tuple(sides_of(account))
        if account == vault or not sides:
            alone.append((account, []))
            order.append(alone[-1])
        elif sides in groups:
            groups[sides][1].append(account)
        else:
            groups[sides] = (account, [])
            order.append(groups[sides])
    return order


def _minimum_closed(accounts: list[str], held, capacity, mark, markets: list[int]) -> int:
    """The notional no policy can avoid closing in a round of `accounts` (a host and those netted
    into it): per market, what they hold (`held(account, market)`) beyond what the vault can
    absorb (`capacity(market)`), at the mark."""
    return sum(notional(max(sum(held(a, m) for a in accounts) - capacity(m), 0), mark(m)) for m in markets)


def is_hedged(state: WinnerState, price: int) -> bool:
    own = notional(state.size, price)
    net = abs(state.other_notional + (own if state.size > 0 else -own))
    return 2 * net < own + state.other_gross


class ModelAdlExecutor:
    """Resolves rounds on the reference model; `now` is read from the replay's clock.

    On a model that keeps a winner book (backstop/keeper/model_venue.py's TrackingModel, in a
    replay) the plans and the hedged winners come from the book, which gives what `winner_states`
    and `plan_market` give without reading every position for every round.

    With the volunteer step on, `resolve` only opens the round: its auction runs until
    `auction_end`, and `finish_due` executes it once the auction has ended (what volunteers did
    not take is then force-closed) or sold out (the round then only charges)."""

    def __init__(self, engine: adl.AdlModel, clock, batch_size: int = DEFAULT_BATCH):
        self.engine, self.clock, self.batch_size = engine, clock, batch_size
        # rounds whose volunteer auction runs: account -> minimum notional closed
        self.auctioning: dict[str, int] = {}
        # rounds the book could not resolve: account -> (minimum notional closed, hedged winners)
        self.open_rounds: dict[str, tuple[int, set[str]]] = {}
        # the accounts netted into each open round: host -> [(account, deficit)]
        self.joined: dict[str, list] = {}

    def open_accounts(self) -> list[str]:
        return [*self.auctioning, *self.open_rounds]

    def finish_due(self) -> list[RoundMetrics]:
        """Executes the rounds whose auction has ended, and finishes those past their deadline."""
        engine, now, finished = self.engine, self.clock(), []
        for account, minimum in list(self.auctioning.items()):
            # Once the auction has ended, or sold out in every market left (nothing to force-close,
            # the round may charge at once).
            state = engine.round(account)
            sold_out = all(engine.settled_market_round(account, m).size_left == 0 for m in _markets(state.markets_left))
            if now >= state.auction_end or sold_out:
                del self.auctioning[account]
                metrics = self._execute(account, minimum)
                if metrics is not None:
                    finished.append(metrics)
        for account, (minimum, hedged) in list(self.open_rounds.items()):
            if now > engine.round(account).deadline:
                engine.finish_round(account, now)
                finished.append(round_metrics(engine.closed_rounds[-1], minimum, hedged, self.joined.pop(account, [])))
                del self.open_rounds[account]
        return finished

    def groups(self, accounts: list[str]) -> list[tuple[str, list[str]]]:
        exchange = self.engine.exchange
        return netting_groups(
            accounts, lambda a: [(m, exchange.position(a, m).size > 0) for m in _markets(exchange.open_markets.get(a, 0))], exchange.insurance_account
        )

    def resolve(self, account: str, members: Sequence[str] = ()) -> tuple[RoundMetrics | None, list[str]]:
        """Opens `account`'s round, nets `members` into it and executes it unless its volunteer
        auction runs: (the metrics, or None while the round stays open; the members the engine
        refused to net, each needing a round of its own)."""
        engine, exchange, now = self.engine, self.engine.exchange, self.clock()
        minimum = _minimum_closed(
            [account, *members], lambda a, m: abs(exchange.position(a, m).size),
            lambda m: engine.vault_capacity(exchange.insurance_account, account, m, exchange.latest_prices(m)[1],
                                            exchange.position(account, m).size > 0, now),
            lambda m: exchange.latest_prices(m)[1], _markets(exchange.open_markets.get(account, 0)),
        )
        engine.open_round(account, now)
        joins, refused = len(engine.joins), []
        for member in members:
            try:
                engine.join_round(member, account, now)
            except ModelRevert:
                refused.append(member)
        self.joined[account] = [(joined, deficit) for joined, _, deficit in engine.joins[joins:]]
        state = engine.round(account)
        if state.markets_left and state.auction_end > now:
            self.auctioning[account] = minimum
            return None, refused
        if not state.markets_left:
            return round_metrics(engine.closed_rounds[-1], minimum, set(), self.joined.pop(account)), refused
        return self._execute(account, minimum), refused

    def _execute(self, account: str, minimum: int) -> RoundMetrics | None:
        """The planner's batches for every market left; the metrics if the round closed, else None
        (it waits for its deadline)."""
        engine, exchange, now = self.engine, self.engine.exchange, self.clock()
        winner_book = getattr(exchange, "winner_book", None)
        hedged: set[str] = set()
        planned: list[tuple[int, int, int]] = []
        for market in range(MAX_MARKETS):
            if engine.round(account).markets_left & (1 << market) == 0:
                continue
            state = engine.market_round(account, market)
            to_resolve = MarketToResolve.on_model(engine, account, market)
            if winner_book is None:
                book = winner_states(exchange, account, market, now)
                hedged |= {w.account for w in book if is_hedged(w, state.price)}
                batches = plan_market(to_resolve, book, self.batch_size)
            else:
                batches = winner_book.plan(account, market, to_resolve, now, self.batch_size)
                planned.append((market, state.price, state.bankrupt_size))
            for batch in batches:
                engine.execute(account, market, batch.winners, batch.declaration, now)
        if engine.round(account).markets_left:
            self.open_rounds[account] = (minimum, hedged)
            return None
        closed = engine.closed_rounds[-1]
        if winner_book is not None:
            hedged = winner_book.hedged_hits(closed, planned)
        return round_metrics(closed, minimum, hedged, self.joined.pop(account, []))


class ChainAdlExecutor:
    """Resolves rounds through the deployed AdlEngine from the keeper account.

    accounts: a callable returning the accounts to consider as winners (the keeper's watch list).
    """

    def __init__(self, chain: FastChain, deployment: dict, keeper: str, accounts, batch_size: int = DEFAULT_BATCH):
        contracts = deployment["contracts"]
        self.chain, self.keeper, self.accounts, self.batch_size = chain, to_checksum_address(keeper), accounts, batch_size
        self.engine = chain.contract(contracts["adl_engine"]["address"], contracts["adl_engine"]["abi"])
        self.ranking = chain.contract(contracts["adl_ranking"]["address"], contracts["adl_ranking"]["abi"])
        self.clearinghouse = chain.contract(contracts["clearinghouse"]["address"], contracts["clearinghouse"]["abi"])
        self.oracle = chain.contract(contracts["oracle"]["address"], contracts["oracle"]["abi"])
        self.events = EventDecoder(self.engine.address, contracts["adl_engine"]["abi"])
        (self.market_count,) = chain.read([self.clearinghouse.market_count.call()])
        # rounds whose volunteer auction runs: account -> (minimum notional closed, hits so far)
        self.auctioning: dict[str, tuple[int, list]] = {}
        # rounds the book could not resolve: account -> (minimum notional closed, hedged winners, hits so far)
        self.open_rounds: dict[str, tuple[int, set[str], list]] = {}
        # the accounts netted into each open round: host -> [(account, deficit)]
        self.joined: dict[str, list] = {}
        self.vault = to_checksum_address(deployment["contracts"]["vault"]["address"])

    def open_accounts(self) -> list[str]:
        return [*self.auctioning, *self.open_rounds]

    def finish_due(self) -> list[RoundMetrics]:
        """Executes the rounds whose volunteer auction has ended, and finishes the rounds left
        open whose deadline has passed (anyone may; the keeper does)."""
        finished = []
        if not self.open_rounds and not self.auctioning:
            return finished
        _, now = self.chain.block()
        for account, (minimum, hits) in list(self.auctioning.items()):
            (state,) = self.chain.read([self.engine.rounds.call(account)])
            left = _markets(state[3])  # Round.markets_left
            sizes = self.chain.read([self.ranking.market_round.call(account, m) for m in left])
            if now < state[7] and any(market_round[3] for market_round in sizes):  # Round.auction_end, MarketRound.size_left
                continue
            del self.auctioning[account]
            metrics = self._execute(account, minimum, hits)
            if metrics is not None:
                finished.append(metrics)
        for account, (minimum, hedged, hits) in list(self.open_rounds.items()):
            (state,) = self.chain.read([self.engine.rounds.call(account)])
            if now <= state[6]:  # Round.deadline
                continue
            closed = self._send(self.engine.finish_round.call(account), hits)
            closed.hits = hits
            finished.append(round_metrics(closed, minimum, hedged, self.joined.pop(account, [])))
            del self.open_rounds[account]
        return finished

    def groups(self, accounts: list[str]) -> list[tuple[str, list[str]]]:
        accounts = [to_checksum_address(a) for a in accounts]
        masks = self.chain.read([self.clearinghouse.open_markets.call(a) for a in accounts])
        held = [(a, m) for a, mask in zip(accounts, masks) for m in _markets(mask)]
        sizes = dict(zip(held, (position[0] for position in self.chain.read([self.clearinghouse.positions.call(a, m) for a, m in held]))))
        sides = {a: [(m, sizes[(a, m)] > 0) for m in _markets(mask)] for a, mask in zip(accounts, masks)}
        return netting_groups(accounts, sides.__getitem__, self.vault)

    def resolve(self, account: str, members: Sequence[str] = ()) -> tuple[RoundMetrics | None, list[str]]:
        """As `ModelAdlExecutor.resolve`: the opening and the joins are mined in one block (a join
        that spills into the next block is refused like one the engine refuses)."""
        chain, engine, clearinghouse = self.chain, self.engine, self.clearinghouse
        account, members = to_checksum_address(account), [to_checksum_address(m) for m in members]
        (mask,) = chain.read([clearinghouse.open_markets.call(account)])
        markets = _markets(mask)
        everyone = [account, *members]
        reads = chain.read([clearinghouse.positions.call(a, m) for a in everyone for m in markets] + [self.oracle.latest_prices.call(m) for m in markets])
        count = len(markets)
        held = {(a, m): abs(reads[i * count + j][0]) for i, a in enumerate(everyone) for j, m in enumerate(markets)}
        marks = {m: reads[len(everyone) * count + j][1] for j, m in enumerate(markets)}
        capacities = dict(zip(markets, chain.read([self.ranking.vault_capacity_at.call(account, m, marks[m], reads[j][0] > 0)
                                                   for j, m in enumerate(markets)])))
        minimum = _minimum_closed(everyone, lambda a, m: held[(a, m)], capacities.__getitem__, marks.__getitem__, markets)
        hits: list[adl.Hit] = []
        refused, joined = [], []
        if members:
            # The opening and the joins in one block: a join needs the round's own block time.
            calls = [engine.open_round.call(account)] + [engine.join_round.call(m, account) for m in members]
            opened, *outcomes = send_in_blocks(chain, [(self.keeper, call) for call in calls], ROUND_GAS)
            if isinstance(opened, RevertError):
                raise RuntimeError(f"open_round: {opened}")
            closed = self._decode(opened["logs"], hits)
            for member, outcome in zip(members, outcomes):
                if isinstance(outcome, RevertError):
                    refused.append(member)
                    continue
                joined += [(fields["account"], fields["deficit"]) for name, fields in self.events.decode(outcome["logs"]) if name == "AdlRoundJoined"]
        else:
            closed = self._send(engine.open_round.call(account), hits)
        self.joined[account] = joined
        if closed is not None:
            closed.hits = hits
            return round_metrics(closed, minimum, set(), self.joined.pop(account)), refused
        (state,) = chain.read([engine.rounds.call(account)])
        _, now = chain.block()
        if state[7] > now:  # Round.auction_end: volunteers first
            self.auctioning[account] = (minimum, hits)
            return None, refused
        return self._execute(account, minimum, hits), refused

    def _execute(self, account: str, minimum: int, hits: list) -> RoundMetrics | None:
        """The planner's batches for every market left; the metrics if the round closed, else None
        (it waits for its deadline)."""
        chain, engine = self.chain, self.engine
        closed, hedged = None, set()
        for market in range(self.market_count):
            if closed is not None:
                break
            round_state, state, (_, mark) = chain.read(
                [engine.rounds.call(account), self.ranking.market_round.call(account, market), self.oracle.latest_prices.call(market)]
            )
            if round_state[3] & (1 << market) == 0:  # Round.markets_left
                continue
            policy, price, bankrupt_size, size_left, deficit_left = state[:5]
            book = self.winner_states(account, market, bankrupt_size)
            hedged |= {w.account for w in book if is_hedged(w, price)}
            to_resolve = MarketToResolve(policy, price, bankrupt_size, size_left, deficit_left, mark)
            for batch in plan_market(to_resolve, book, self.batch_size):
                closed = self._send(engine.execute.call(account, market, batch.winners, batch.declaration.as_tuple()), hits)
        if closed is None:
            self.open_rounds[account] = (minimum, hedged, hits)
            return None
        closed.hits = hits
        return round_metrics(closed, minimum, hedged, self.joined.pop(account, []))

    def winner_states(self, bankrupt: str, market: int, bankrupt_size: int) -> list[WinnerState]:
        """The opposite side's positions among the watched accounts, read in one multicall."""
        chain, clearinghouse = self.chain, self.clearinghouse
        accounts = [to_checksum_address(a) for a in self.accounts() if to_checksum_address(a) != bankrupt]
        markets = range(self.market_count)
        calls = [self.oracle.latest_prices.call(m) for m in markets]
        for a in accounts:
            calls += [clearinghouse.bankrupt.call(a), clearinghouse.account_health.call(a)]
            calls += [clearinghouse.positions.call(a, m) for m in markets]
        values = chain.read(calls)
        marks = [prices[1] for prices in values[: self.market_count]]
        states, stride = [], 2 + self.market_count
        for i, a in enumerate(accounts):
            row = values[self.market_count + i * stride : self.market_count + (i + 1) * stride]
            is_bankrupt, health, positions = row[0], row[1], row[2:]
            size, entry_price = positions[market][0], positions[market][1]
            if is_bankrupt or size == 0 or (size > 0) == (bankrupt_size > 0):
                continue
            other = gross = 0
            for m in markets:
                other_size = positions[m][0]
                if m == market or other_size == 0:
                    continue
                value = notional(other_size, marks[m])
                other += value if other_size > 0 else -value
                gross += value
            states.append(WinnerState(a, size, entry_price, health[0], other, gross))
        return states

    def _send(self, call, hits: list) -> adl.ClosedRound | None:
        """Sends from the keeper; collects AdlHit events; returns the round if it closed."""
        failure = self.chain.send(self.keeper, call)
        if failure is not None:
            raise RuntimeError(f"{call.function.name}: {failure}")
        return self._decode(self.chain.last_receipt["logs"], hits)

    def _decode(self, logs: list, hits: list) -> adl.ClosedRound | None:
        """A transaction's AdlHit events into `hits`; the round if it closed."""
        closed = None
        for name, fields in self.events.decode(logs):
            if name == "AdlHit":
                hits.append(adl.Hit(fields["account"], fields["winner"], fields["market"], fields["size_closed"], fields["price"], fields["haircut"]))
            elif name == "AdlRoundClosed":
                closed = adl.ClosedRound(
                    fields["account"], fields["deficit"], fields["haircuts"], fields["notional_closed"], fields["notional_absorbed"],
                    fields["residual"], fields["socialised"], fields["fallback"],
                )
        return closed


# Gas for an `open_round` or a `join_round` sent in one block (a position moved per market, the
# deficit split, the vault's absorption, the auctions started): a node with the usual 30M block
# limit takes seven of them a block, and a join that spills into the next block is refused.
ROUND_GAS = 4_000_000


def set_policy(chain: FastChain, deployment: dict, owner: str, policy: int) -> None:
    """Every market of the deployment on ADL `policy`, sent from the (unlocked) owner."""
    entry = deployment["contracts"]["adl_engine"]
    engine = chain.contract(entry["address"], entry["abi"])
    for market in deployment["markets"].values():
        failure = chain.send(owner, engine.set_policy.call(market, policy))
        if failure is not None:
            raise RuntimeError(f"set_policy({market}, {policy}) reverted: {failure}")


def _markets(mask: int) -> list[int]:
    return [market for market in range(MAX_MARKETS) if mask & (1 << market)]
