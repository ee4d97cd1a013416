"""The keeper's side of an ADL round: from the book of one market, the winner lists (in policy order)
and declarations that `AdlEngine.execute` accepts and that resolve the market exactly.

The planner uses the engine's own formulas (backstop/model/adl.py), so what it predicts is what the
engine computes. It works on plain `WinnerState` records; `winner_states` reads them from a model,
the on-chain keeper reads the same fields from the chain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backstop.model import adl
from backstop.model.adl import PRO_RATA, RISK_AWARE, Declaration, is_queue, leverage
from backstop.model.protocol import WAD, Account, Model, notional, pnl

DEFAULT_BATCH = 250  # winners per transaction: well under the gas cap at about 40k gas each
LEVEL_CEILING = 10**30  # above any leverage a real account reaches (1e12 x)


@dataclass(frozen=True)
class WinnerState:
    """What the engine reads about one position on the winning side."""

    account: Account
    size: int
    entry_price: int
    # cross-margin account value at the latest prices
    value: int
    # signed notional of the account's other markets at their latest marks (risk-aware)
    other_notional: int = 0
    # the same without signs: gross exposure elsewhere (tells a hedged book from a naked one)
    other_gross: int = 0


@dataclass(frozen=True)
class MarketToResolve:
    """The round's state in one market as the next `execute` sees it (AdlRanking.market_round) and
    the market's latest mark."""

    policy: int
    price: int
    bankrupt_size: int
    size_left: int
    deficit_left: int
    # the latest mark: a winner's haircut room depends on it (adl.haircut_room)
    mark: int

    @classmethod
    def on_model(cls, engine: adl.AdlModel, bankrupt: Account, market: int) -> MarketToResolve:
        state = engine.settled_market_round(bankrupt, market)
        mark = engine.exchange.latest_prices(market)[1]
        return cls(state.policy, state.price, state.bankrupt_size, state.size_left, state.deficit_left, mark)


@dataclass(frozen=True)
class Batch:
    """One `execute` call."""

    winners: list[Account]
    declaration: Declaration


@dataclass(frozen=True)
class _Evaluated:
    account: Account
    size: int
    profit: int
    value: int
    key: int
    net_leverage: int
    net_notional: int


def plan_market(market: MarketToResolve, book: list[WinnerState], batch_size: int = DEFAULT_BATCH) -> list[Batch]:
    """The calls that resolve `market`: the eligible winners in policy order, only as many as the
    policy needs, split into batches; each batch declares the weights of itself and all later ones."""
    winners = _eligible(market, book)
    if is_queue(market.policy):
        return plan_queue(market, sorted(winners, key=lambda w: (-w.key, int(w.account, 16))), batch_size)
    if market.policy == PRO_RATA:
        ordered = sorted(winners, key=lambda w: int(w.account, 16))
        haircut_weights = [w.profit if market.deficit_left > 0 else 0 for w in ordered]
        close_weights = [abs(w.size) if market.size_left > 0 else 0 for w in ordered]
        return _weighted_batches(ordered, haircut_weights, close_weights, 0, 0, batch_size)
    ordered = sorted(winners, key=lambda w: (-w.net_leverage, int(w.account, 16)))
    haircut_level = close_level = 0
    haircut_weights = [0] * len(ordered)
    close_weights = [0] * len(ordered)
    if market.deficit_left > 0:
        haircut_level = _highest_haircut_level(ordered, market.deficit_left)
        haircut_weights = _haircut_weights(ordered, haircut_level)
    if market.size_left > 0:
        close_level = _highest_close_level(ordered, market.price, market.size_left)
        close_weights = _close_weights(ordered, market.price, close_level)
    keep = [i for i in range(len(ordered)) if haircut_weights[i] > 0 or close_weights[i] > 0]
    return _weighted_batches(
        [ordered[i] for i in keep], [haircut_weights[i] for i in keep], [close_weights[i] for i in keep], haircut_level, close_level, batch_size
    )


def winner_states(exchange: Model, bankrupt: Account, market: int, now: int, accounts=None) -> list[WinnerState]:
    """The winning side's positions as the engine would read them from `exchange` (a Model)."""
    bankrupt_size = exchange.position(bankrupt, market).size
    if exchange.in_adl_round.get(bankrupt, False) and exchange.adl is not None:
        # The side is the round's: once the vault absorbed the whole position, the account is flat
        # in this market, but the winners that owe its deficit are still on the other side.
        bankrupt_size = exchange.adl.market_round(bankrupt, market).bankrupt_size
    if accounts is None:
        accounts = [account for (account, m), position in exchange.positions.items() if m == market and position.size != 0]
    states = []
    for account in accounts:
        position = exchange.position(account, market)
        if account == bankrupt or exchange.bankrupt.get(account, False) or position.size == 0 or (position.size > 0) == (bankrupt_size > 0):
            continue
        states.append(winner_state(exchange, account, market, now))
    return states


def winner_state(exchange: Model, account: Account, market: int, now: int) -> WinnerState:
    """One account's position in `market` as the engine reads it (see `winner_states`)."""
    position = exchange.position(account, market)
    other = gross = 0
    for other_market in range(exchange.market_count):
        if other_market == market:
            continue
        other_size = exchange.position(account, other_market).size
        if other_size:
            value = notional(other_size, exchange.latest_prices(other_market)[1])
            other += value if other_size > 0 else -value
            gross += value
    return WinnerState(account, position.size, position.entry_price, exchange.account_value(account, now), other, gross)


def plan_queue(market: MarketToResolve, ordered, batch_size: int = DEFAULT_BATCH) -> list[Batch]:
    """`plan_market` under a queue policy, from the eligible winners in queue order (any iterable,
    read only as far as the queue goes: (-key, address) order, as `plan_market` sorts them)."""
    winners = _queue_prefix(market, ordered)
    return _batches(winners, [Declaration()] * len(winners), batch_size)


def evaluate_winner(market: MarketToResolve, winner: WinnerState) -> _Evaluated | None:
    """The winner as the engine ranks it in `market` (its key, profit, net leverage), or None if
    it is not eligible (same side as the bankrupt account, no value or no profit)."""
    if winner.size == 0 or (winner.size > 0) == (market.bankrupt_size > 0) or winner.value <= 0:
        return None
    profit = max(pnl(winner.size, winner.entry_price, market.price), 0)
    if profit == 0:
        return None
    key = net_leverage = net = 0
    if is_queue(market.policy):
        key = adl.queue_key(market.policy, winner.size, winner.entry_price, market.price, winner.value)
    elif market.policy == RISK_AWARE:
        own = notional(winner.size, market.price)
        net = winner.other_notional + (own if winner.size > 0 else -own)
        net_leverage = key = leverage(abs(net), winner.value)
    return _Evaluated(winner.account, winner.size, profit, winner.value, key, net_leverage, net)


def _eligible(market: MarketToResolve, book: list[WinnerState]) -> list[_Evaluated]:
    evaluated = [evaluate_winner(market, winner) for winner in book]
    return [winner for winner in evaluated if winner is not None]


def _queue_prefix(market: MarketToResolve, ordered) -> list[_Evaluated]:
    """The queue up to the winner that resolves the market, simulated with the engine's formulas
    (`ordered` is read lazily: nothing after that winner is needed)."""
    size_left, deficit_left = market.size_left, market.deficit_left
    chosen = []
    for winner in ordered:
        if size_left == 0 and deficit_left == 0:
            break
        size, haircut = adl.queue_share(size_left, deficit_left, abs(winner.size))
        haircut = min(haircut, adl.haircut_room(winner.size, size, market.price, market.mark, winner.profit, winner.value))
        size_left -= size
        deficit_left -= haircut
        chosen.append(winner)
    return chosen


def _highest_level(weights_at, needed: int) -> int:
    """The highest leverage level whose weights still add up to `needed` (weights fall as the level
    rises); 0 if even the lowest level falls short (then the weights are the fallback).

    The definition, by bisection over the whole range (about 100 sums of every winner's weight);
    `plan_market` finds the same level with `_highest_level_fast`."""
    if sum(weights_at(0)) < needed:
        return 0
    low, high = 0, LEVEL_CEILING
    while high - low > 1:
        middle = (low + high) // 2
        if sum(weights_at(middle)) >= needed:
            low = middle
        else:
            high = middle
    return low


def _haircut_weights(ordered: list[_Evaluated], level: int, indices=None) -> list[int]:
    """adl.risk_aware_haircut_weight of each winner (of `indices` only, if given) at `level`."""
    chosen = ordered if indices is None else [ordered[i] for i in indices]
    if level == 0:
        return [w.profit for w in chosen]
    return [w.profit if w.net_leverage >= level else w.profit * w.net_leverage // level for w in chosen]


def _close_weights(ordered: list[_Evaluated], price: int, level: int, indices=None) -> list[int]:
    """adl.risk_aware_close_weight of each winner (of `indices` only, if given) at `level`."""
    chosen = ordered if indices is None else [ordered[i] for i in indices]
    return [adl.risk_aware_close_weight(w.size, price, w.net_notional, w.value, level) for w in chosen]


def _highest_haircut_level(ordered: list[_Evaluated], needed: int) -> int:
    profit = np.array([float(w.profit) for w in ordered])
    net_leverage = np.array([float(w.net_leverage) for w in ordered])
    product = profit * net_leverage

    def approximate(level: int) -> float:
        if level == 0:
            return float(profit.sum())
        return float(np.where(net_leverage >= float(level), profit, np.floor(product / float(level))).sum())

    return _highest_level_fast(lambda level, indices=None: _haircut_weights(ordered, level, indices), len(ordered), approximate, needed)


def _highest_close_level(ordered: list[_Evaluated], price: int, needed: int) -> int:
    size = np.array([float(abs(w.size)) for w in ordered])
    aligned = np.array([w.net_notional != 0 and (w.net_notional > 0) == (w.size > 0) for w in ordered], dtype=bool)
    value = np.array([float(w.value) for w in ordered])
    exposure = np.array([float(abs(w.net_notional)) for w in ordered])
    scale = float(adl.NOTIONAL_SCALE) / float(price)

    def approximate(level: int) -> float:
        if level == 0:
            return float(size.sum())
        target = np.floor(float(level) * value / WAD)
        excess = np.maximum(exposure - target, 0.0)
        return float(np.where(aligned, np.minimum(size, np.floor(excess * scale)), 0.0).sum())

    return _highest_level_fast(lambda level, indices=None: _close_weights(ordered, price, level, indices), len(ordered), approximate, needed)


def _highest_level_fast(weights_of, count: int, approximate, needed: int) -> int:
    """`_highest_level` without its hundred exact sums over every winner: the same level.

    `weights_of(level, indices=None)`: the exact weights (of the winners at `indices`) at `level`,
    each non-increasing in the level (both risk-aware weights are); `approximate(level)`: their sum
    in floats. Floats only choose where to look: a float bisection puts the level near its place,
    exact sums at the two ends of a bracket around it prove the level inside (the bracket widens
    until they do: at worst to the whole range), and the exact bisection then runs over the
    winners whose weight changes within the bracket (every other winner's weight is constant
    there). As the sum is non-increasing, the highest level below LEVEL_CEILING whose sum reaches
    `needed` is one number, which both searches find."""
    everyone = range(count)
    at_zero = weights_of(0)
    if sum(at_zero) < needed:
        return 0
    low, high = 0, LEVEL_CEILING
    while high - low > max(1, low >> 44):
        middle = (low + high) // 2
        if approximate(middle) >= needed:
            low = middle
        else:
            high = middle
    width = max(2, low >> 36)
    while True:
        bottom, top = max(0, low - width), min(LEVEL_CEILING, low + width)
        at_bottom = at_zero if bottom == 0 else weights_of(bottom)
        if sum(at_bottom) >= needed:
            # `top` must fail, except the ceiling, which the bisection never evaluates
            at_top = weights_of(top if top < LEVEL_CEILING else LEVEL_CEILING - 1)
            if top == LEVEL_CEILING or sum(at_top) < needed:
                break
        if bottom == 0 and top == LEVEL_CEILING:
            raise AssertionError("risk-aware weights that do not fall as the level rises")
        width *= 256
    changing = [i for i in everyone if at_bottom[i] != at_top[i]]
    constant = sum(at_bottom) - sum(at_bottom[i] for i in changing)
    while top - bottom > 1:
        middle = (bottom + top) // 2
        if constant + sum(weights_of(middle, changing)) >= needed:
            bottom = middle
        else:
            top = middle
    return bottom


def _batches(winners: list[_Evaluated], declarations: list[Declaration], batch_size: int) -> list[Batch]:
    batches = []
    for start in range(0, len(winners), batch_size):
        end = min(start + batch_size, len(winners))
        batches.append(Batch([w.account for w in winners[start:end]], declarations[start]))
    return batches


def _weighted_batches(winners, haircut_weights, close_weights, haircut_level, close_level, batch_size) -> list[Batch]:
    """Batches whose declarations carry the weights of their own winners and every later one."""
    declarations = []
    haircut_left, close_left = sum(haircut_weights), sum(close_weights)
    for start in range(0, len(winners), batch_size):
        declarations.extend([Declaration(haircut_level, close_level, haircut_left, close_left)] * min(batch_size, len(winners) - start))
        haircut_left -= sum(haircut_weights[start : start + batch_size])
        close_left -= sum(close_weights[start : start + batch_size])
    return _batches(winners, declarations, batch_size)


def level_wad(level: int) -> float:
    """A leverage level as a plain number (for logs and reports)."""
    return level / WAD


def resolve_on_model(engine: adl.AdlModel, bankrupt: Account, now: int, batch_size: int = DEFAULT_BATCH) -> adl.ClosedRound:
    """Opens `bankrupt`'s round on the model and executes the planned batches, market by market;
    a round the book cannot resolve is finished one second past its deadline (the exchange's
    clock then reads that time). Returns the closed round (its event and hits)."""
    exchange = engine.exchange
    engine.open_round(bankrupt, now)
    for market in range(exchange.market_count):
        if engine.round(bankrupt).markets_left & (1 << market) == 0:
            continue
        for batch in plan_market(MarketToResolve.on_model(engine, bankrupt, market), winner_states(exchange, bankrupt, market, now), batch_size):
            engine.execute(bankrupt, market, batch.winners, batch.declaration, now)
    if engine.round(bankrupt).markets_left:
        engine.finish_round(bankrupt, engine.round(bankrupt).deadline + 1)
    return engine.closed_rounds[-1]
