"""The keeper's ADL executors: resolve one bankrupt account's round and measure it.

`ChainAdlExecutor` drives contracts/AdlEngine.vy through raw JSON-RPC; `ModelAdlExecutor` drives the
reference model (backstop/model/adl.py). Both read the book, plan with
backstop/keeper/adl_planner.py and return the same metrics (`RoundMetrics`), so a replay on chain
and one on the model compare figure by figure.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from eth_utils import to_checksum_address

from backstop.chain.events import EventDecoder
from backstop.chain.fast_chain import FastChain
from backstop.keeper.adl_planner import DEFAULT_BATCH, MarketToResolve, WinnerState, plan_market, winner_states
from backstop.model import adl
from backstop.model.protocol import MAX_MARKETS, notional


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

    def as_dict(self) -> dict:
        return asdict(self)


def round_metrics(closed: adl.ClosedRound, min_notional_closed: int, hedged: set[str]) -> RoundMetrics:
    """Metrics of a closed round from its event and hits."""
    haircut_by_winner: dict[str, int] = {}
    for hit in closed.hits:
        if hit.haircut or hit.size_closed:
            haircut_by_winner[hit.winner] = haircut_by_winner.get(hit.winner, 0) + hit.haircut
    return RoundMetrics(
        account=closed.account, deficit=closed.deficit, haircuts=closed.haircuts, notional_closed=closed.notional_closed,
        notional_absorbed=closed.notional_absorbed, min_notional_closed=min_notional_closed, residual=closed.residual,
        socialised=closed.socialised, fallback=closed.fallback,
        haircut_by_winner=haircut_by_winner, winners_hit=len(haircut_by_winner),
        hedged_winners=sorted(hedged & haircut_by_winner.keys()), hedged_hit=len(hedged & haircut_by_winner.keys()),
    )


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
                finished.append(round_metrics(engine.closed_rounds[-1], minimum, hedged))
                del self.open_rounds[account]
        return finished

    def resolve(self, account: str) -> RoundMetrics | None:
        engine, exchange, now = self.engine, self.engine.exchange, self.clock()
        markets = _markets(exchange.open_markets.get(account, 0))
        minimum = sum(
            notional(abs(exchange.position(account, m).size) - engine.vault_capacity_of(account, m, now), exchange.latest_prices(m)[1])
            for m in markets
        )
        engine.open_round(account, now)
        state = engine.round(account)
        if state.markets_left and state.auction_end > now:
            self.auctioning[account] = minimum
            return None
        if not state.markets_left:
            return round_metrics(engine.closed_rounds[-1], minimum, set())
        return self._execute(account, minimum)

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
        return round_metrics(closed, minimum, hedged)


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
            finished.append(round_metrics(closed, minimum, hedged))
            del self.open_rounds[account]
        return finished

    def resolve(self, account: str) -> RoundMetrics | None:
        chain, engine, clearinghouse = self.chain, self.engine, self.clearinghouse
        account = to_checksum_address(account)
        (mask,) = chain.read([clearinghouse.open_markets.call(account)])
        markets = _markets(mask)
        reads = chain.read(
            [clearinghouse.positions.call(account, m) for m in markets]
            + [self.ranking.vault_capacity.call(account, m) for m in markets]
            + [self.oracle.latest_prices.call(m) for m in markets]
        )
        count = len(markets)
        minimum = sum(
            notional(abs(reads[i][0]) - reads[count + i], reads[2 * count + i][1]) for i in range(count)
        )
        hits: list[adl.Hit] = []
        closed = self._send(engine.open_round.call(account), hits)
        if closed is not None:
            closed.hits = hits
            return round_metrics(closed, minimum, set())
        (state,) = chain.read([engine.rounds.call(account)])
        _, now = chain.block()
        if state[7] > now:  # Round.auction_end: volunteers first
            self.auctioning[account] = (minimum, hits)
            return None
        return self._execute(account, minimum, hits)

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
        return round_metrics(closed, minimum, hedged)

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
        closed = None
        for name, fields in self.events.decode(self.chain.last_receipt["logs"]):
            if name == "AdlHit":
                hits.append(adl.Hit(fields["account"], fields["winner"], fields["market"], fields["size_closed"], fields["price"], fields["haircut"]))
            elif name == "AdlRoundClosed":
                closed = adl.ClosedRound(
                    fields["account"], fields["deficit"], fields["haircuts"], fields["notional_closed"], fields["notional_absorbed"],
                    fields["residual"], fields["socialised"], fields["fallback"],
                )
        return closed


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
