"""The executable specification of contracts/AdlEngine.vy and modules/adl_math.vy, and the record
of each round it closes (`ClosedRound`, with its hits).

Same rules, order of checks, revert strings and rounding as the contracts. `AdlModel` attaches to a
`Model` (its rounds are part of the exchange model's transactions). The keeper's side, which turns
a book into the winner lists the engine accepts, is backstop/keeper/adl_planner.py.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

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
MAX_UINT256 = 2**256 - 1


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


def capped_haircut(haircut: int, size: int, position: int, profit: int, value: int) -> int:
    """A haircut capped by the winner's profit and account value; a partial close realises its PnL
    rounded down, up to one unit below the marked value, so that unit stays with the winner."""
    return min(haircut, profit, value - (1 if 0 < size < position else 0))


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
    markets_left: int = 0
    notional_closed: int = 0
    notional_absorbed: int = 0


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
    last_key: int = MAX_UINT256
    last_account: Account = "0x" + "00" * 20


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
    hits: list[Hit] = field(default_factory=list)


def _address_number(account: Account) -> int:
    return int(account, 16)




class AdlModel:
    """Storage names as in the contract; `hits`, `absorptions` and `closed_rounds` are its events."""

    def __init__(self, exchange: Model):
        self.exchange = exchange
        self.policy: dict[int, int] = {}
        self.rounds: dict[Account, Round] = {}
        self.market_rounds: dict[tuple[Account, int], MarketRound] = {}
        self.hits: list[Hit] = []
        self.round_hits: dict[Account, list[Hit]] = {}
        self.absorptions: list[tuple[Account, int, int]] = []
        self.closed_rounds: list[ClosedRound] = []
        exchange.adl = self

    def snapshot(self) -> dict:
        return {
            "policy": dict(self.policy),
            "rounds": copy.deepcopy(self.rounds),
            "market_rounds": copy.deepcopy(self.market_rounds),
            "round_hits": {account: list(hits) for account, hits in self.round_hits.items()},
            "lengths": (len(self.hits), len(self.absorptions), len(self.closed_rounds)),
        }

    def restore(self, saved: dict) -> None:
        self.policy = dict(saved["policy"])
        self.rounds = copy.deepcopy(saved["rounds"])
        self.market_rounds = copy.deepcopy(saved["market_rounds"])
        self.round_hits = {account: list(hits) for account, hits in saved["round_hits"].items()}
        hits, absorptions, closed = saved["lengths"]
        del self.hits[hits:], self.absorptions[absorptions:], self.closed_rounds[closed:]

    def round(self, account: Account) -> Round:
        return self.rounds.get(account, Round())

    def market_round(self, account: Account, market: int) -> MarketRound:
        return self.market_rounds.get((account, market), MarketRound())

    # ------------------------------------------------------------ owner

    @atomic
    def set_policy(self, market: int, policy: int) -> None:
        _require(market < self.exchange.market_count, "AdlEngine: unknown market")
        _require(0 <= policy < len(POLICY_NAMES), "AdlEngine: unknown policy")
        self.policy[market] = policy

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
        self.rounds[account] = Round(deficit=deficit, markets_left=open_mask)

        total_loss = sum(losses.values())
        weights = losses if total_loss > 0 else sizes
        deficit_left, weight_left = deficit, sum(weights.values())
        for market in _markets(open_mask):
            part = share(deficit_left, weights[market], weight_left)
            deficit_left -= part
            weight_left -= weights[market]
            state = self.market_rounds[(account, market)]
            state.deficit_left = state.deficit_share = part
            if not is_queue(state.policy):
                self._absorb(account, market, now)
            self._resolve_if_done(account, market, False)
        if open_mask == 0:
            self._close_round(account)

    @atomic
    def execute(self, account: Account, market: int, winners: list[Account], declaration: Declaration, last: bool, now: int) -> None:
        _require(self.round(account).markets_left & (1 << market) != 0, "AdlEngine: no open round in this market")
        state = copy.copy(self.market_rounds[(account, market)])
        direction = 1 if state.bankrupt_size > 0 else -1
        haircut_weight_left, close_weight_left = declaration.haircut_weight, declaration.close_weight
        settlements, hits = [], []
        haircuts = closed = 0
        for winner in winners:
            _require(state.size_left > 0 or state.deficit_left > 0, "AdlEngine: market already resolved")
            candidate = self._candidate(winner, market, state.price, state.bankrupt_size, state.policy, now)
            _require(
                candidate.key < state.last_key
                or (candidate.key == state.last_key and _address_number(winner) > _address_number(state.last_account)),
                "AdlEngine: winner out of policy order",
            )
            state.last_key, state.last_account = candidate.key, winner
            position = abs(candidate.size)
            if is_queue(state.policy):
                size, haircut = queue_share(state.size_left, state.deficit_left, position)
            else:
                haircut_weight, close_weight = _weights(state, candidate, declaration)
                _require(
                    haircut_weight <= haircut_weight_left and close_weight <= close_weight_left,
                    "AdlEngine: declared weights below the winners' weights",
                )
                haircut = share(state.deficit_left, haircut_weight, haircut_weight_left)
                size = min(position, share(state.size_left, close_weight, close_weight_left))
                haircut_weight_left -= haircut_weight
                close_weight_left -= close_weight
            haircut = capped_haircut(haircut, size, position, candidate.profit, candidate.value)
            state.size_left -= size
            state.deficit_left -= haircut
            haircuts += haircut
            closed += size
            settlements.append((winner, size * direction, haircut))
            hits.append(Hit(account, winner, market, size, state.price, haircut))

        self.exchange.transfer_positions(account, market, state.price, settlements, now)
        self.hits.extend(hits)
        self.round_hits.setdefault(account, []).extend(hits)
        state.size_closed += closed
        self.market_rounds[(account, market)] = state
        self.rounds[account].haircuts += haircuts
        self.rounds[account].notional_closed += notional(closed, state.price)
        self._resolve_if_done(account, market, last)

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
        state.size_absorbed = size
        self.rounds[account].notional_absorbed += notional(size, state.price)
        self.absorptions.append((account, market, size))

    def _resolve_if_done(self, account: Account, market: int, must_resolve: bool) -> None:
        state = self.market_rounds[(account, market)]
        if state.size_left > 0 or state.deficit_left > 0:
            _require(not must_resolve, "AdlEngine: deficit or position left unresolved")
            return
        current = self.rounds[account]
        current.markets_left &= ~(1 << market)
        if current.markets_left == 0:
            self._close_round(account)

    def _close_round(self, account: Account) -> None:
        exchange = self.exchange
        current = self.rounds[account]
        _require(exchange.open_markets.get(account, 0) == 0, "AdlEngine: round leaves a position")
        residual = exchange.balance(account)
        vault = exchange.insurance_account
        if account != vault:
            if residual > 0:
                exchange.transfer_balance(account, vault, residual)
            elif residual < 0:
                exchange.transfer_balance(vault, account, -residual)
        exchange.set_account_flags(account, False, False)
        hits = self.round_hits.pop(account, [])
        self.closed_rounds.append(
            ClosedRound(account, current.deficit, current.haircuts, current.notional_closed, current.notional_absorbed, residual, hits)
        )
        del self.rounds[account]

    def _candidate(self, winner: Account, market: int, price: int, bankrupt_size: int, policy: int, now: int) -> Candidate:
        exchange = self.exchange
        _require(not exchange.bankrupt.get(winner, False), "AdlEngine: winner bankrupt")
        position = exchange.position(winner, market)
        _require(position.size != 0 and (position.size > 0) != (bankrupt_size > 0), "AdlEngine: winner not on the opposite side")
        candidate = self._evaluate(winner, market, position, price, policy, now)
        _require(candidate.profit > 0, "AdlEngine: winner not profitable")
        _require(candidate.value > 0, "AdlEngine: winner has no account value")
        return candidate

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


def _markets(mask: int):
    return [market for market in range(MAX_MARKETS) if mask & (1 << market)]

