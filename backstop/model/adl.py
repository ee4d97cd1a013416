"""The executable specification of contracts/AdlEngine.vy and modules/adl_math.vy, and the record
of each round it closes (`ClosedRound`, with its hits).

Same rules, order of checks, revert strings and rounding as the contracts. `AdlModel` attaches to a
`Model` (its rounds are part of the exchange model's transactions). The keeper's side, which turns
a book into the winner lists the engine accepts, is backstop/keeper/adl_planner.py.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

from backstop.model.protocol import MAX_MARKETS, NOTIONAL_SCALE, WAD, Account, Model, Position, _require, atomic, ceil_div, notional, pnl

QUEUE_PNL_LEVERAGE = 0
QUEUE_HYPERLIQUID = 1
PRO_RATA = 2
RISK_AWARE = 3
POLICY_NAMES = {
    QUEUE_PNL_LEVERAGE: "queue-pnl-leverage",
    QUEUE_HYPERLIQUID: "queue-hyperliquid",
    PRO_RATA: "pro-rata",
    RISK_AWARE: "risk-aware",
}
POLICY_BY_NAME = {name: policy for policy, name in POLICY_NAMES.items()}
MAX_CANDIDATES = 400  # AdlEngine.MAX_CANDIDATES
MIN_ROUND_DURATION, MAX_ROUND_DURATION = 60, 7 * 86400  # AdlEngine's bounds of `round_duration`
# AdlEngine's skip reasons (the AdlSkipped event's)
SKIP_BANKRUPT = "winner bankrupt"
SKIP_SIDE = "winner not on the opposite side"
SKIP_UNPROFITABLE = "winner not profitable at the round price"
SKIP_NO_VALUE = "winner has no account value"
SKIP_ORDER = "winner out of policy order"
SKIP_WEIGHT = "winner's weight above the declaration"
SKIP_RESOLVED = "market already resolved"


# ---------------------------------------------------------------- adl_math.vy


def is_queue(policy: int) -> bool:
    return policy in (QUEUE_PNL_LEVERAGE, QUEUE_HYPERLIQUID)


def leverage(notional_value: int, account_value: int) -> int:
    """notional / account value (1e18), floor; `account_value` > 0."""
    return notional_value * WAD // account_value


def queue_key(policy: int, size: int, entry_price: int, price: int, account_value: int) -> int:
    """PnL% x effective leverage, or (Hyperliquid) the price ratio in the position's favour x leverage."""
    mark_leverage = leverage(notional(size, price), account_value)
    if policy == QUEUE_PNL_LEVERAGE:
        entry_value = max(notional(size, entry_price), 1)
        return pnl(size, entry_price, price) * mark_leverage // entry_value
    favour = price * WAD // entry_price if size > 0 else entry_price * WAD // price
    return favour * mark_leverage // WAD


def share(amount_left: int, weight: int, weight_left: int) -> int:
    """The part of `amount_left` for `weight` of `weight_left`: floor, all of it for the last weight."""
    if weight == 0:
        return 0
    if weight >= weight_left:
        return amount_left
    return amount_left * weight // weight_left


def queue_share(size_left: int, deficit_left: int, position: int) -> tuple[int, int]:
    """A queue winner's (close, haircut) before the cap: as much of the size left as its position,
    and the same share of the deficit left; once the size is matched, the deficit left."""
    size = min(position, size_left)
    return size, share(deficit_left, size, size_left) if size_left > 0 else deficit_left


def haircut_room(size: int, closed: int, price: int, mark: int, profit: int, value: int) -> int:
    """adl_math.haircut_room: the most a winner holding `size` can pay while `closed` of it closes
    at the round's `price`: its profit there, and what its account (worth `value` at `mark`) can
    lose without going below zero, after the move given up by closing at `price` (rounded up) and
    the rounding of the entry shift and of realised PnL (two units, one more per 1e12 base units)."""
    signed_closed = closed if size > 0 else -closed
    close_cost = max(-pnl(-signed_closed, price, mark), 0)
    return min(profit, max(value - close_cost - 2 - abs(size) // NOTIONAL_SCALE, 0))


def risk_aware_haircut_weight(profit: int, account_leverage: int, level: int) -> int:
    if account_leverage >= level:
        return profit
    return profit * account_leverage // level


def risk_aware_close_weight(size: int, price: int, net_notional: int, account_value: int, level: int) -> int:
    if level == 0:
        return abs(size)
    if (net_notional > 0) != (size > 0) or net_notional == 0:
        return 0
    target = level * account_value // WAD
    exposure = abs(net_notional)
    if exposure <= target:
        return 0
    return min(abs(size), (exposure - target) * NOTIONAL_SCALE // price)


# ---------------------------------------------------------------- AdlEngine.vy


@dataclass
class Round:
    deficit: int = 0
    haircuts: int = 0
    markets: int = 0
    markets_left: int = 0
    notional_closed: int = 0
    notional_absorbed: int = 0
    deadline: int = 0
    auction_end: int = 0
    opened_at: int = 0


@dataclass
class MarketRound:
    policy: int = 0
    price: int = 0
    bankrupt_size: int = 0
    size_left: int = 0
    deficit_left: int = 0
    deficit_share: int = 0
    size_absorbed: int = 0
    size_closed: int = 0


@dataclass(frozen=True)
class Declaration:
    haircut_level: int = 0
    close_level: int = 0
    haircut_weight: int = 0
    close_weight: int = 0

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.haircut_level, self.close_level, self.haircut_weight, self.close_weight)


@dataclass(frozen=True)
class Candidate:
    size: int
    profit: int
    value: int
    key: int = 0
    net_leverage: int = 0
    net_notional: int = 0


@dataclass(frozen=True)
class Hit:
    """One AdlHit event."""

    account: Account
    winner: Account
    market: int
    size_closed: int
    price: int
    haircut: int


@dataclass
class ClosedRound:
    """One AdlRoundClosed event plus the hits of the round."""

    account: Account
    deficit: int
    haircuts: int
    notional_closed: int
    notional_absorbed: int
    residual: int
    socialised: int = 0
    fallback: bool = False
    hits: list[Hit] = field(default_factory=list)


@dataclass(frozen=True)
class Skip:
    """One AdlSkipped event."""

    account: Account
    winner: Account
    market: int
    reason: str


def _address_number(account: Account) -> int:
    return int(account, 16)




class AdlModel:
    """Storage names as in the contract; `hits`, `skips`, `absorptions`, `volunteer_takes`, `joins` and `closed_rounds` are its events."""

    def __init__(self, exchange: Model, round_duration: int):
        self.exchange = exchange
        self.policy: dict[int, int] = {}
        self.rounds: dict[Account, Round] = {}
        self.market_rounds: dict[tuple[Account, int], MarketRound] = {}
        self.hits: list[Hit] = []
        self.skips: list[Skip] = []
        self.round_hits: dict[Account, list[Hit]] = {}
        self.absorptions: list[tuple[Account, int, int]] = []
        self.closed_rounds: list[ClosedRound] = []
        # AdlVolunteerTakes events: (account, market, size, premium, size_left, deficit).
        self.volunteer_takes: list[tuple[Account, int, int, int, int, int]] = []
        # AdlRoundJoined events: (account, host, deficit).
        self.joins: list[tuple[Account, Account, int]] = []
        self._set_round_duration(round_duration)
        exchange.adl = self

    def snapshot(self) -> dict:
        return {
            "policy": dict(self.policy),
            "round_duration": self.round_duration,
            "rounds": _copies(self.rounds),
            "market_rounds": _copies(self.market_rounds),
            "round_hits": {account: list(hits) for account, hits in self.round_hits.items()},
            "lengths": (len(self.hits), len(self.skips), len(self.absorptions), len(self.closed_rounds)),
            "volunteer_takes": len(self.volunteer_takes),
            "joins": len(self.joins),
        }

    def restore(self, saved: dict) -> None:
        self.policy = dict(saved["policy"])
        self.round_duration = saved["round_duration"]
        self.rounds = _copies(saved["rounds"])
        self.market_rounds = _copies(saved["market_rounds"])
        self.round_hits = {account: list(hits) for account, hits in saved["round_hits"].items()}
        hits, skips, absorptions, closed = saved["lengths"]
        del self.hits[hits:], self.skips[skips:], self.absorptions[absorptions:], self.closed_rounds[closed:]
        del self.volunteer_takes[saved.get("volunteer_takes", 0):]
        del self.joins[saved.get("joins", 0):]

    def round(self, account: Account) -> Round:
        return self.rounds.get(account, Round())

    def market_round(self, account: Account, market: int) -> MarketRound:
        return self.market_rounds.get((account, market), MarketRound())

    def settled_market_round(self, account: Account, market: int) -> MarketRound:
        """AdlRanking.market_round: the round in `market` as the next `execute` sees it."""
        state = self.market_round(account, market)
        held = abs(self.exchange.position(account, market).size)
        if held < state.size_left and self.round(account).markets_left & (1 << market):
            return replace(state, size_left=held, deficit_left=state.deficit_left + self.exchange.liquidation.volunteer_premium(account, market))
        return state

    # ------------------------------------------------------------ owner

    @atomic
    def set_policy(self, market: int, policy: int) -> None:
        _require(market < self.exchange.market_count, "AdlEngine: unknown market")
        _require(0 <= policy < len(POLICY_NAMES), "AdlEngine: unknown policy")
        self.policy[market] = policy

    @atomic
    def set_round_duration(self, duration: int) -> None:
        self._set_round_duration(duration)

    def _set_round_duration(self, duration: int) -> None:
        _require(MIN_ROUND_DURATION <= duration <= MAX_ROUND_DURATION, "AdlEngine: round duration out of range")
        self.round_duration = duration

    # ------------------------------------------------------------ rounds

    @atomic
    def open_round(self, account: Account, now: int) -> None:
        exchange = self.exchange
        _require(
            exchange.bankrupt.get(account, False) and not exchange.in_adl_round.get(account, False), "AdlEngine: not flagged or round open"
        )
        value = exchange.account_health(account, now, fresh=True).value
        _require(value < 0, "AdlEngine: account solvent")
        exchange.set_account_flags(account, True, True)
        deficit = -value
        open_mask = exchange.open_markets.get(account, 0)
        losses, sizes = {}, {}
        for market in _markets(open_mask):
            price = exchange.fresh_prices(market, now)[1]
            position = exchange.position(account, market)
            losses[market] = max(-pnl(position.size, position.entry_price, price), 0)
            sizes[market] = abs(position.size)
            self.market_rounds[(account, market)] = MarketRound(
                policy=self.policy.get(market, QUEUE_PNL_LEVERAGE), price=price, bankrupt_size=position.size, size_left=sizes[market],
            )
            exchange.set_adl_exposure(market, position.size < 0, True)
        auction_end = now + exchange.liquidation.volunteer_window()
        self.rounds[account] = Round(
            deficit=deficit, markets=open_mask, markets_left=open_mask, deadline=auction_end + self.round_duration, auction_end=auction_end,
            opened_at=now,
        )
        self._add_deficit(account, deficit, open_mask, losses, sizes, now)
        if open_mask == 0:
            self._close_round(account, now)
        elif auction_end > now and self.round(account).markets_left != 0:
            exchange.liquidation.start_volunteer_auctions(account, auction_end, now)

    @atomic
    def join_round(self, account: Account, host: Account, now: int) -> None:
        exchange = self.exchange
        _require(
            exchange.bankrupt.get(account, False) and not exchange.in_adl_round.get(account, False), "AdlEngine: not flagged or round open"
        )
        _require(exchange.insurance_account not in (account, host), "AdlEngine: the vault is not netted")
        joined = self.round(host)
        open_mask = joined.markets
        _require(joined.opened_at == now and joined.haircuts == 0 and joined.markets_left == open_mask, "AdlEngine: host round not joinable")
        _require(exchange.open_markets.get(account, 0) == open_mask, "AdlEngine: markets differ from the host round")
        losses, sizes = {}, {}
        for market in _markets(open_mask):
            state = self.market_rounds[(host, market)]
            position = exchange.position(account, market)
            _require((position.size > 0) == (state.bankrupt_size > 0), "AdlEngine: side differs from the host round")
            _require(state.size_closed == 0 and abs(exchange.position(host, market).size) == state.size_left, "AdlEngine: host round not joinable")
            losses[market] = max(-pnl(position.size, position.entry_price, state.price), 0)
            sizes[market] = abs(position.size)
            exchange.transfer_positions(account, market, state.price, [(host, position.size, 0)], now)
            state.bankrupt_size += position.size
            state.size_left += sizes[market]
        balance = exchange.balance(account)
        _require(balance < 0, "AdlEngine: account solvent")
        exchange.transfer_balance(host, account, -balance)
        exchange.set_account_flags(account, False, False)
        joined.deficit -= balance
        self.joins.append((account, host, -balance))
        self._add_deficit(host, -balance, open_mask, losses, sizes, now)
        if joined.auction_end > now:
            exchange.liquidation.start_volunteer_auctions(host, joined.auction_end, now)

    @atomic
    def execute(self, account: Account, market: int, winners: list[Account], declaration: Declaration, now: int) -> None:
        _require(self.round(account).markets_left & (1 << market) != 0, "AdlEngine: no open round in this market")
        state = copy.copy(self._settle_volunteer_takes(account, market))
        _require(state.size_left == 0 or now >= self.rounds[account].auction_end, "AdlEngine: volunteer auction running")
        entries = [self._entry(winner, market, state, now) for winner in winners]
        # The order, from the back: an entry is processed only if it ranks above every later valid entry.
        best = None
        for i in reversed(range(len(entries))):
            winner, skip, candidate = entries[i]
            if skip:
                continue
            rank = (candidate.key, -_address_number(winner))
            if best is not None and not rank > best:
                entries[i] = (winner, SKIP_ORDER, candidate)
                continue
            best = rank

        direction = 1 if state.bankrupt_size > 0 else -1
        mark = self.exchange.latest_prices(market)[1]
        haircut_weight_left, close_weight_left = declaration.haircut_weight, declaration.close_weight
        transfers, hits, skips = [], [], []
        haircuts = closed = 0
        for winner, skip, candidate in entries:
            if not skip and state.size_left == 0 and state.deficit_left == 0:
                skip = SKIP_RESOLVED
            position = abs(candidate.size) if candidate else 0
            size = haircut = 0
            if not skip:
                if is_queue(state.policy):
                    size, haircut = queue_share(state.size_left, state.deficit_left, position)
                else:
                    haircut_weight, close_weight = _weights(state, candidate, declaration)
                    if haircut_weight > haircut_weight_left or close_weight > close_weight_left:
                        skip = SKIP_WEIGHT
                    else:
                        haircut = share(state.deficit_left, haircut_weight, haircut_weight_left)
                        size = min(position, share(state.size_left, close_weight, close_weight_left))
                        haircut_weight_left -= haircut_weight
                        close_weight_left -= close_weight
            if skip:
                skips.append(Skip(account, winner, market, skip))
                continue
            haircut = min(haircut, haircut_room(candidate.size, size, state.price, mark, candidate.profit, candidate.value))
            state.size_left -= size
            state.deficit_left -= haircut
            haircuts += haircut
            closed += size
            transfers.append((winner, size * direction, haircut))
            hits.append(Hit(account, winner, market, size, state.price, haircut))

        if transfers:
            self.exchange.transfer_positions(account, market, state.price, transfers, now)
        self.hits.extend(hits)
        self.skips.extend(skips)
        self.round_hits.setdefault(account, []).extend(hits)
        state.size_closed += closed
        self.market_rounds[(account, market)] = state
        self.rounds[account].haircuts += haircuts
        self.rounds[account].notional_closed += notional(closed, state.price)
        self._resolve_if_done(account, market, now)

    @atomic
    def finish_round(self, account: Account, now: int) -> None:
        exchange = self.exchange
        current = self.rounds.get(account, Round())
        _require(current.markets_left != 0, "AdlEngine: no open round")
        _require(now > current.deadline, "AdlEngine: round before its deadline")
        vault = exchange.insurance_account
        weights = {}
        for market in _markets(current.markets_left):
            state = self._settle_volunteer_takes(account, market)
            mark = exchange.latest_prices(market)[1]
            size = exchange.position(account, market).size
            if size != 0 and account != vault:
                exchange.transfer_positions(account, market, mark, [(vault, size, 0)], now)
                current.notional_absorbed += notional(size, mark)
                state.size_absorbed += abs(size)
                self.absorptions.append((account, market, abs(size)))
            weights[market] = state.deficit_left if state.deficit_left > 0 else notional(state.size_left, state.price)
            exchange.set_adl_exposure(market, state.bankrupt_size < 0, False)
        self._finish_round(account, current, weights, True, now)

    # ------------------------------------------------------------ views

    def ranking_key(self, account: Account, market: int, long_side: bool, now: int) -> int:
        exchange = self.exchange
        if exchange.bankrupt.get(account, False):
            return 0
        position = exchange.position(account, market)
        if position.size == 0 or (position.size > 0) != long_side:
            return 0
        policy = self.policy.get(market, QUEUE_PNL_LEVERAGE)
        candidate = self._evaluate(account, market, position, exchange.latest_prices(market)[1], policy, now)
        if candidate.profit == 0 or candidate.value <= 0:
            return 0
        if policy == PRO_RATA:
            return candidate.profit
        return max(candidate.key, 1)

    def ranking_keys(self, market: int, long_side: bool, accounts: list[Account], now: int) -> list[int]:
        return [self.ranking_key(account, market, long_side, now) for account in accounts]

    def adl_indicator(self, account: Account, market: int, accounts: list[Account], now: int) -> int:
        long_side = self.exchange.position(account, market).size > 0
        key = self.ranking_key(account, market, long_side, now)
        if key == 0:
            return 0
        ahead, ranked = 0, 1
        for other in accounts:
            if other == account:
                continue
            other_key = self.ranking_key(other, market, long_side, now)
            if other_key == 0:
                continue
            ranked += 1
            if other_key > key or (other_key == key and _address_number(other) < _address_number(account)):
                ahead += 1
        return 5 - 5 * ahead // ranked

    def vault_capacity_of(self, account: Account, market: int, now: int) -> int:
        """The contract's `vault_capacity` view."""
        exchange = self.exchange
        size = exchange.position(account, market).size
        if size == 0:
            return 0
        price = exchange.latest_prices(market)[1]
        return min(abs(size), self.vault_capacity(exchange.insurance_account, account, market, price, size > 0, now))

    # ------------------------------------------------------------ internals

    def _add_deficit(self, account: Account, deficit: int, open_mask: int, losses: dict[int, int], sizes: dict[int, int], now: int) -> None:
        """D split by the loss in each market (by size if no market shows a loss); then the vault absorbs (pro-rata, risk-aware)."""
        weights = losses if sum(losses.values()) > 0 else sizes
        deficit_left, weight_left = deficit, sum(weights.values())
        for market in _markets(open_mask):
            part = share(deficit_left, weights[market], weight_left)
            deficit_left -= part
            weight_left -= weights[market]
            state = self.market_rounds[(account, market)]
            state.deficit_left += part
            state.deficit_share += part
            if not is_queue(state.policy):
                self._absorb(account, market, now)
            self._resolve_if_done(account, market, now)

    def _absorb(self, account: Account, market: int, now: int) -> None:
        exchange = self.exchange
        state = self.market_rounds[(account, market)]
        vault = exchange.insurance_account
        size = min(state.size_left, self.vault_capacity(vault, account, market, state.price, state.bankrupt_size > 0, now))
        if size == 0:
            return
        direction = 1 if state.bankrupt_size > 0 else -1
        exchange.transfer_positions(account, market, state.price, [(vault, size * direction, 0)], now)
        state.size_left -= size
        state.size_absorbed += size
        self.rounds[account].notional_absorbed += notional(size, state.price)
        self.absorptions.append((account, market, size))

    def _settle_volunteer_takes(self, account: Account, market: int) -> MarketRound:
        """The round in `market` with the volunteer takes since the engine last acted there."""
        state = self.market_rounds[(account, market)]
        held = abs(self.exchange.position(account, market).size)
        if held < state.size_left:
            premium = self.exchange.liquidation.settle_volunteer_premium(account, market)
            self.rounds[account].deficit += premium
            self.volunteer_takes.append((account, market, state.size_left - held, premium, held, self.rounds[account].deficit))
            state.size_left = held
            state.deficit_left += premium
        return state

    def _resolve_if_done(self, account: Account, market: int, now: int) -> None:
        state = self.market_rounds[(account, market)]
        if state.size_left > 0 or state.deficit_left > 0:
            return
        self.exchange.set_adl_exposure(market, state.bankrupt_size < 0, False)
        current = self.rounds[account]
        current.markets_left &= ~(1 << market)
        if current.markets_left == 0:
            self._close_round(account, now)

    def _close_round(self, account: Account, now: int) -> None:
        current = self.rounds[account]
        weights = {market: self.market_rounds[(account, market)].deficit_share for market in _markets(current.markets)}
        self._finish_round(account, current, weights, False, now)

    def _finish_round(self, account: Account, current: Round, weights: dict[int, int], fallback: bool, now: int) -> None:
        exchange = self.exchange
        vault = exchange.insurance_account
        if account != vault:
            _require(exchange.open_markets.get(account, 0) == 0, "AdlEngine: round leaves a position")
        value = exchange.account_value(account, now)
        socialised = 0
        if value < 0:
            socialised = self._socialise(account, -value, current.markets, weights)
            value += socialised
        if account != vault:
            if value > 0:
                exchange.transfer_balance(account, vault, value)
            elif value < 0:
                exchange.transfer_balance(vault, account, -value)
        exchange.set_account_flags(account, False, False)
        hits = self.round_hits.pop(account, [])
        self.closed_rounds.append(ClosedRound(
            account, current.deficit, current.haircuts, current.notional_closed, current.notional_absorbed, value,
            socialised=socialised, fallback=fallback, hits=hits,
        ))
        del self.rounds[account]

    def _socialise(self, account: Account, amount: int, markets: int, weights: dict[int, int]) -> int:
        left, weight_left = amount, sum(weights.get(market, 0) for market in _markets(markets))
        for market in _markets(markets):
            weight = weights.get(market, 0)
            if weight == 0:
                continue
            part = share(left, weight, weight_left)
            weight_left -= weight
            left -= self.exchange.socialise_loss(account, market, self.market_rounds[(account, market)].bankrupt_size < 0, part)
        for market in _markets(markets):
            if left == 0:
                break
            left -= self.exchange.socialise_loss(account, market, self.market_rounds[(account, market)].bankrupt_size < 0, left)
        return amount - left

    def _entry(self, winner: Account, market: int, state: MarketRound, now: int) -> tuple[Account, str, Candidate | None]:
        """(winner, skip reason or "", the winner evaluated at the round's price)."""
        exchange = self.exchange
        if exchange.bankrupt.get(winner, False):
            return winner, SKIP_BANKRUPT, None
        position = exchange.position(winner, market)
        if position.size == 0 or (position.size > 0) == (state.bankrupt_size > 0):
            return winner, SKIP_SIDE, None
        candidate = self._evaluate(winner, market, position, state.price, state.policy, now)
        if candidate.profit == 0:
            return winner, SKIP_UNPROFITABLE, candidate
        if candidate.value <= 0:
            return winner, SKIP_NO_VALUE, candidate
        return winner, "", candidate

    def _evaluate(self, account: Account, market: int, position: Position, price: int, policy: int, now: int) -> Candidate:
        exchange = self.exchange
        size = position.size
        profit = max(pnl(size, position.entry_price, price), 0)
        value = exchange.account_value(account, now)
        if profit == 0 or value <= 0:
            return Candidate(size, profit, value)
        if is_queue(policy):
            return Candidate(size, profit, value, key=queue_key(policy, size, position.entry_price, price, value))
        if policy == RISK_AWARE:
            net = self.net_notional(account, market, size, price)
            net_leverage = leverage(abs(net), value)
            return Candidate(size, profit, value, key=net_leverage, net_leverage=net_leverage, net_notional=net)
        return Candidate(size, profit, value)

    def net_notional(self, account: Account, market: int, size: int, price: int) -> int:
        exchange = self.exchange
        net = 0
        for other in _markets(exchange.open_markets.get(account, 0)):
            other_size, other_price = size, price
            if other != market:
                other_size = exchange.position(account, other).size
                other_price = exchange.latest_prices(other)[1]
            value = notional(other_size, other_price)
            net += value if other_size > 0 else -value
        return net

    def vault_capacity(self, vault: Account, account: Account, market: int, price: int, taking_long: bool, now: int) -> int:
        exchange = self.exchange
        if vault == account or exchange.bankrupt.get(vault, False) or exchange.in_adl_round.get(vault, False):
            return 0
        value = exchange.account_value(vault, now)
        if value <= 0:
            return 0
        held = exchange.position(vault, market).size
        held_abs = abs(held)
        opposite = held != 0 and (held > 0) != taking_long
        limit = exchange.vault.max_position.get(market, 0)
        position_room = held_abs + limit if opposite else max(limit - held_abs, 0)
        gross = 0
        for other in _markets(exchange.open_markets.get(vault, 0)):
            gross += ceil_div(abs(exchange.position(vault, other).size) * exchange.latest_prices(other)[1], NOTIONAL_SCALE)
        allowed = exchange.vault.max_leverage * value // WAD
        leverage_room = 2 * held_abs if opposite else 0
        if allowed > gross:
            leverage_room += (allowed - gross) * NOTIONAL_SCALE // price
        return min(position_room, leverage_room)


def _weights(state: MarketRound, candidate: Candidate, declaration: Declaration) -> tuple[int, int]:
    """Haircut and close weights of a winner under pro-rata or risk-aware (zero once nothing is left to split)."""
    haircut_weight = close_weight = 0
    if state.deficit_left > 0:
        haircut_weight = candidate.profit
        if state.policy == RISK_AWARE:
            haircut_weight = risk_aware_haircut_weight(candidate.profit, candidate.net_leverage, declaration.haircut_level)
    if state.size_left > 0:
        close_weight = abs(candidate.size)
        if state.policy == RISK_AWARE:
            close_weight = risk_aware_close_weight(candidate.size, state.price, candidate.net_notional, candidate.value, declaration.close_level)
    return haircut_weight, close_weight


def _copies(states: dict) -> dict:
    """A copy of a dict of Rounds or MarketRounds (dataclasses of integers, changed in place)."""
    return {key: copy.copy(state) for key, state in states.items()}


def _markets(mask: int):
    return [market for market in range(MAX_MARKETS) if mask & (1 << market)]

