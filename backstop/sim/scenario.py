"""Crash scenarios: traders, their opening trades spread over a run-up, and a price path shaped like
10 October 2025.

A scenario is plain data (integers in the protocol's units), so the on-chain replay and the
reference-model replay run exactly the same thing. `generate` builds one from a seed; `positions`,
`entry_prices`, `account_values` and `summary` read one without replaying it.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass

from backstop.chain.deployment import ProtocolConfig
from backstop.model.protocol import NOTIONAL_SCALE, blended_entry_price, margin_requirement, notional, pnl

WAD = 10**18
USDC = 10**6


@dataclass(frozen=True)
class ScenarioMarket:
    """One market of the scenario."""

    name: str
    # first oracle price (1e18)
    price: int
    # initial and maintenance margin fractions (1e18 = 100%)
    initial_margin: int
    maintenance_margin: int


@dataclass(frozen=True)
class Trader:
    """One account of the scenario."""

    # kind of trader: "crowded_long", "market_maker", "whale", "liquidator", ...
    kind: str
    # collateral deposited before trading (1e6 units)
    collateral: int


@dataclass(frozen=True)
class OpeningTrade:
    """A matched trade in the run-up: trader `buyer` buys `size` from trader `seller`."""

    market: int
    buyer: int
    seller: int
    # base units (1e18), positive
    size: int
    # fill price (1e18): the mark of the run-up block it is opened in
    price: int
    # the run-up block (index into `Scenario.run_up`) it is opened in; 0 without a run-up
    block: int = 0


@dataclass(frozen=True)
class PriceStep:
    """One block of the replay."""

    # seconds since the start of the replay
    time: int
    # mark price per market (1e18); the index price equals the mark
    prices: tuple[int, ...]
    # notional (1e6 units) market liquidators are willing to take over in this block, per market
    liquidation_depth: tuple[int, ...]


@dataclass(frozen=True)
class Scenario:
    """Everything a replay needs; `traders[i]` is account i."""

    seed: int
    markets: tuple[ScenarioMarket, ...]
    traders: tuple[Trader, ...]
    trades: tuple[OpeningTrade, ...]
    path: tuple[PriceStep, ...]
    # collateral (1e6 units) deposited into the insurance vault before the crash
    vault_deposit: int
    # the marks (1e18, per market) of the blocks before the crash in which the trades open, in
    # order; the last is the path's first prices. Empty: every trade at the first prices.
    run_up: tuple[tuple[int, ...], ...] = ()

    def trades_by_block(self) -> list[list[OpeningTrade]]:
        """The opening trades grouped by run-up block, in order (one group without a run-up)."""
        groups: list[list[OpeningTrade]] = [[] for _ in range(max(1, len(self.run_up)))]
        for trade in self.trades:
            groups[trade.block].append(trade)
        return groups

    def block_prices(self, block: int) -> tuple[int, ...]:
        """The marks at which the trades of run-up block `block` open (without a run-up: the
        markets' first prices)."""
        return self.run_up[block] if self.run_up else tuple(market.price for market in self.markets)


# ---------------------------------------------------------------- markets and how they crash

# The default deployment's markets (backstop/chain/deployment.py), so a scenario runs on it
# unchanged.
DEFAULT_MARKETS = tuple(
    ScenarioMarket(market.name, market.price, market.initial_margin, market.maintenance_margin)
    for market in ProtocolConfig().markets
)


@dataclass(frozen=True)
class MarketProfile:
    """How one market behaves in the crash and who trades it."""

    # the fall at the low, as a fraction of the first price; None: the `alt_crash` argument
    low: float | None
    # standard deviation of the per-step relative noise on the path
    noise: float
    # share of the crowded longs' money going into this market
    crowd_weight: float
    # part of the crowd's long notional that market makers sell (0: the market they hedge in)
    market_maker_share: float
    # share of the whales trading this market (none in the alt: its book is too thin for them)
    whale_weight: float
    # whether the market gaps down in one block (by the `alt_gap` argument) on its way to the low
    gaps: bool = False
    # how far the price rises over the run-up to the first price, as a fraction of where it starts
    rise: float = 0.0


# The run-up rises at most 10% (the alt): a short at 3x (the most any short is levered) that opened
# at its start is then 30% of its collateral down, and keeps more than the 20% x 3 = 60% the alt's
# initial margin asks of it to add the rest of its position, so every fill of the run-up clears
# initial margin.
MARKET_PROFILES = {
    "BTC-PERP": MarketProfile(low=-0.15, noise=0.004, crowd_weight=0.35, market_maker_share=0.0, whale_weight=0.5, rise=0.05),
    "ETH-PERP": MarketProfile(low=-0.30, noise=0.008, crowd_weight=0.20, market_maker_share=0.30, whale_weight=0.3, rise=0.08),
    "SOL-PERP": MarketProfile(low=None, noise=0.015, crowd_weight=0.45, market_maker_share=0.35, whale_weight=0.0, gaps=True,
                              rise=0.10),
}
# Market makers sell the crowd's alts and ETH and hedge the delta with a long here.
HEDGE_MARKET = "BTC-PERP"

# The default oracle refuses a move of more than 25% within its one-minute window (a step, with the
# default `step_seconds`); every step but the alt's gap (20% by default) stays under this. The replay
# splits each step into updates of one block each, within the oracle's 3% per block.
MAX_STEP_MOVE = 0.19
# Where the low falls (fraction of the path) and how much of the fall (in log price) is recovered after it.
LOW_AT = 0.6
RECOVERED = 0.5
# The fall in log price grows as time ** CASCADE_POWER up to the low: slow at first, then gapping.
CASCADE_POWER = 4
# Where the alt's gap falls, as a fraction of the way (in time) to the low: once the slide has
# liquidated the most levered alt longs and thinned the book, while the rest are still open.
GAP_AT = 0.7
# Prices are rounded to this relative precision so they read cleanly.
PRICE_PRECISION = 10**8

MIN_TRADERS = 10
# Whales' leverage (uniform): deep pockets at low leverage, so they ride the crash out (a long whale at
# 2.5x in ETH keeps 10% of its notional at ETH's -30% low) and are among the winners when short.
WHALE_LEVERAGE = (1.5, 2.5)
# Median collateral of a crowded long, dollars (lognormal, clipped to 200..1,000,000).
CROWD_MEDIAN = 8_000


# ---------------------------------------------------------------- generator

def generate(
    traders: int = 1000,
    seed: int = 0,
    steps: int = 48,
    *,
    run_up: int = 12,
    alt_crash: float = -0.75,
    alt_gap: float = -0.2,
    step_seconds: int = 60,
    vault_fraction: float = 0.2,
    depth_fraction: float = 0.4,
    depth_floor: float = 0.03,
    depth_exponent: float = 4.0,
) -> Scenario:
    """A seeded 10-Oct-2025-style crash on the default markets; the same arguments give the same scenario.

    `traders` accounts, liquidators included:
    - crowded longs (about 78%; most of the long side): 50-95% of their collateral used as initial
      margin, i.e. 5-9.5x in BTC and ETH and 2.5-4.75x in the alt (20% initial margin), in one
      market or two, mostly the alt and BTC;
    - market makers (5%): short the alt or ETH against the crowd, long about as much BTC, 1.5-3x;
    - basis traders (15%): short against spot held elsewhere (naked on this exchange), 1.5-3x; they
      take exactly the long size nobody else sold, so open interest balances;
    - whales (one per 200): $0.25-2.5M at 1.5-2.5x in BTC or ETH, 60% long;
    - liquidators (3; 2 below 100 traders): collateral and no positions.
    Sizes are set at the first prices (the top of the run-up). The trades open over `run_up`
    blocks before the crash, at each block's mark: prices rise monotonically to the first prices
    (BTC 5%, ETH 8%, the alt 10%, with noise in the increments); each account starts trading in a
    block of its own (crowded longs late, chasing the rise; everyone else anywhere) and a trade
    opens in the later of its two accounts' blocks. So entries, and with them the winners' PnL
    ratios, differ, and the two queue policies rank winners differently. Every fill leaves both
    accounts at or above initial margin at its block's marks. `run_up=0`: every trade at the first
    prices, each account starting at value == collateral.

    The path has `steps` blocks `step_seconds` apart. Step 0 is at the first prices; the fall in
    log price grows as time**4 to a low at 60% of the path (BTC -15%, ETH -30%, the alt
    `alt_crash`, plus noise), then half of it (in log price) comes back. On the way down the alt
    gaps: in the one block at GAP_AT (70%) of the way to the low it falls by exactly `alt_gap`
    (-20%: twice its 10% maintenance buffer), as on 10 October when alts fell 40-90% within
    minutes while oracles and liquidators lagged; the rest of its fall follows the curve. Every
    other step moves a price by less than 19% (the default oracle refuses more than 25% within a
    minute; the replay splits each step into updates of one block each, within its 3% per block),
    so with few steps a deep crash stops short of its low. Liquidation depth (notional liquidators take per block and market) is
    `depth_fraction` of the market's open interest, times (1 - progress) ** `depth_exponent` where
    progress runs from 0 at the first price to 1 at the market's low (in log price), never below
    `depth_floor` of it. `vault_fraction` of the traders' collateral goes into the insurance vault.

    With the default deployment (config/local.toml) the defaults tell the waterfall's whole story on
    the model replay (backstop/sim/model_replay.py, 1,000 traders; ranges over seeds 0-9): the slide
    liquidates 350-410 accounts through the market and hands 350-420 to the vault as the depth dries
    up; the gap throws 90-150 alt longs from above maintenance margin to below zero at once. The
    vault covers the worst deficits until its daily loss budget is spent, then refuses the rest
    ("loss above the vault's allowance") while it still has equity and room: 60-125 ADL rounds. A
    queue closes every bankrupt position against the winners, 17-31 times the deficit it covers;
    pro-rata and risk-aware let the vault absorb the positions (which moves no value) and close
    nothing; every policy covers the deficit exactly. The vault (a fifth of the traders'
    collateral, at most 5x leverage) stays solvent throughout; at half that size its leverage
    limit refuses takeovers that then sink into ADL with no room left to absorb them.
    """
    if run_up < 0:
        raise ValueError(f"run_up is a number of blocks and must not be negative (got {run_up}).")
    if traders < MIN_TRADERS:
        raise ValueError(f"traders must be at least {MIN_TRADERS} so that every kind of account is present (got {traders}).")
    if steps < 4:
        raise ValueError(f"steps must be at least 4 so that the path can fall and recover (got {steps}).")
    if not -0.95 < alt_crash < 0:
        raise ValueError(f"alt_crash is the alt's fall at the low and must lie strictly between -0.95 and 0 (got {alt_crash}).")
    if not alt_crash <= alt_gap <= 0:
        raise ValueError(f"alt_gap is the alt's fall in its one-block gap and must lie between alt_crash ({alt_crash}) and 0 (got {alt_gap}).")
    if step_seconds <= 0:
        raise ValueError(f"step_seconds must be positive (got {step_seconds}).")
    if not 0 <= vault_fraction <= 1:
        raise ValueError(f"vault_fraction is a share of the traders' collateral and must lie in [0, 1] (got {vault_fraction}).")
    if depth_fraction <= 0 or not 0 < depth_floor <= 1 or depth_exponent < 0:
        raise ValueError(
            "liquidation depth needs depth_fraction > 0, 0 < depth_floor <= 1 and depth_exponent >= 0 "
            f"(got {depth_fraction}, {depth_floor}, {depth_exponent})."
        )

    rng = random.Random(seed)
    markets = DEFAULT_MARKETS
    profiles = [MARKET_PROFILES[market.name] for market in markets]
    book = _Book(markets)
    n_liquidators = 3 if traders >= 100 else 2
    n_whales = traders // 200
    n_market_makers = max(1, traders * 5 // 100)
    n_basis = max(len(markets), traders * 15 // 100)
    n_crowded = traders - n_liquidators - n_whales - n_market_makers - n_basis

    for _ in range(n_crowded):
        _add_crowded_long(book, rng, profiles)
    for _ in range(n_whales):
        _add_whale(book, rng, profiles)
    _add_market_makers(book, rng, profiles, n_market_makers)
    _limit_short_whales(book)
    _add_basis_shorts(book, rng, n_basis)

    path = _price_path(rng, markets, profiles, steps, step_seconds, alt_crash, alt_gap)
    open_interest = [notional(book.long_size(market), markets[market].price) for market in range(len(markets))]
    lows = [min(step.prices[market] for step in path) for market in range(len(markets))]
    path = tuple(
        PriceStep(step.time, step.prices, _depth(step.prices, lows, markets, open_interest, depth_fraction, depth_floor, depth_exponent))
        for step in path
    )
    # Liquidators can hold, unlevered, everything they are offered up to the whole open interest,
    # so they neither run short of margin nor go under themselves.
    offered = min(sum(sum(step.liquidation_depth) for step in path), sum(open_interest))
    for _ in range(n_liquidators):
        book.add("liquidator", _whole_dollars(-(-offered // n_liquidators)), [0] * len(markets))

    trader_collateral = sum(collateral for kind, collateral in zip(book.kinds, book.collateral) if kind != "liquidator")
    # With run_up=0 nothing more is drawn: such a scenario is the one from before run-ups existed.
    run_up_prices = _run_up(rng, markets, profiles, run_up)
    starts = [_first_block(rng, kind, run_up) for kind in book.kinds]
    trades = _match(book, rng)
    if run_up_prices:
        trades = tuple(_in_run_up(trade, max(starts[trade.buyer], starts[trade.seller]), run_up_prices) for trade in trades)
    return Scenario(
        seed=seed,
        markets=markets,
        traders=tuple(Trader(kind, collateral) for kind, collateral in zip(book.kinds, book.collateral)),
        trades=trades,
        path=path,
        vault_deposit=_whole_dollars(int(trader_collateral * vault_fraction)),
        run_up=run_up_prices,
    )


class _Book:
    """The accounts being built: kind, collateral and the signed size wanted in each market."""

    def __init__(self, markets: tuple[ScenarioMarket, ...]):
        self.markets = markets
        self.kinds: list[str] = []
        self.collateral: list[int] = []
        self.sizes: list[list[int]] = []

    def add(self, kind: str, collateral: int, sizes: list[int]) -> None:
        self.kinds.append(kind)
        self.collateral.append(collateral)
        self.sizes.append(sizes)

    def size_for(self, market: int, dollars: float) -> int:
        """Base units worth `dollars` at the first price."""
        return int(dollars * USDC) * NOTIONAL_SCALE // self.markets[market].price

    def long_size(self, market: int) -> int:
        return sum(sizes[market] for sizes in self.sizes if sizes[market] > 0)

    def short_size(self, market: int) -> int:
        return -sum(sizes[market] for sizes in self.sizes if sizes[market] < 0)

    def levered(self, collateral_dollars: float, weights: dict[int, float], margin_use: float, max_leverage: float = math.inf) -> list[int]:
        """Long sizes, split by notional `weights`, whose initial margin is `margin_use` of the
        collateral, or less if that would exceed `max_leverage` x collateral in notional."""
        initial_margin = sum(weight * self.markets[market].initial_margin / WAD for market, weight in weights.items())
        leverage = min(max_leverage, margin_use / initial_margin)
        sizes = [0] * len(self.markets)
        for market, weight in weights.items():
            sizes[market] = self.size_for(market, collateral_dollars * leverage * weight)
        return sizes


def _whole_dollars(amount: int) -> int:
    """`amount` (1e6 units) rounded up to a whole dollar."""
    return -(-amount // USDC) * USDC


def _add_crowded_long(book: _Book, rng: random.Random, profiles: list[MarketProfile]) -> None:
    collateral = min(max(rng.lognormvariate(math.log(CROWD_MEDIAN), 1.1), 200), 1_000_000)
    chosen = _pick(rng, [profile.crowd_weight for profile in profiles], 2 if rng.random() < 0.3 else 1)
    first = rng.uniform(0.3, 0.7) if len(chosen) == 2 else 1.0
    weights = dict(zip(chosen, (first, 1 - first)))
    # 50-95% of the collateral as initial margin: 5-9.5x in a 10% market, 2.5-4.75x in the alt
    sizes = book.levered(round(collateral), weights, rng.uniform(0.5, 0.95))
    book.add("crowded_long", round(collateral) * USDC, sizes)


def _add_whale(book: _Book, rng: random.Random, profiles: list[MarketProfile]) -> None:
    collateral = round(math.exp(rng.uniform(math.log(250_000), math.log(2_500_000))))
    (market,) = _pick(rng, [profile.whale_weight for profile in profiles], 1)
    sizes = book.levered(collateral, {market: 1.0}, 0.95, max_leverage=rng.uniform(WHALE_LEVERAGE[0], WHALE_LEVERAGE[1]))
    if rng.random() < 0.4:
        sizes = [-size for size in sizes]
    book.add("whale", collateral * USDC, sizes)


def _add_market_makers(book: _Book, rng: random.Random, profiles: list[MarketProfile], count: int) -> None:
    """Market makers sell a share of the crowd's long notional in each market with a
    `market_maker_share`, split among them at random, and buy about as much notional of the hedge market."""
    hedge = next(i for i, market in enumerate(book.markets) if market.name == HEDGE_MARKET)
    crowd_notional = [
        sum(notional(sizes[market], book.markets[market].price) for kind, sizes in zip(book.kinds, book.sizes) if kind == "crowded_long")
        for market in range(len(book.markets))
    ]
    assigned = [_pick(rng, [profile.market_maker_share for profile in profiles], 1)[0] for _ in range(count)]
    weights = [rng.lognormvariate(0, 0.5) for _ in range(count)]
    total_weight = [0.0] * len(book.markets)
    for market, weight in zip(assigned, weights):
        total_weight[market] += weight
    for market, weight in zip(assigned, weights):
        sold = crowd_notional[market] / USDC * profiles[market].market_maker_share * weight / total_weight[market]
        hedged = sold * rng.uniform(0.8, 1.2)
        sizes = [0] * len(book.markets)
        sizes[market] = -book.size_for(market, sold)
        sizes[hedge] = book.size_for(hedge, hedged)
        book.add("market_maker", _whole_dollars(int((sold + hedged) / rng.uniform(1.5, 3) * USDC)), sizes)


def _limit_short_whales(book: _Book) -> None:
    """Scales short whales down wherever the short side would exceed 80% of the long side, so that
    basis traders always have a short side left to fill (matters only for small populations)."""
    for market in range(len(book.markets)):
        whale_short = -sum(sizes[market] for kind, sizes in zip(book.kinds, book.sizes) if kind == "whale" and sizes[market] < 0)
        if whale_short == 0:
            continue
        room = book.long_size(market) * 8 // 10 - (book.short_size(market) - whale_short)
        if room >= whale_short:
            continue
        for kind, sizes in zip(book.kinds, book.sizes):
            if kind == "whale" and sizes[market] < 0:
                sizes[market] = sizes[market] * max(room, 0) // whale_short


def _add_basis_shorts(book: _Book, rng: random.Random, count: int) -> None:
    """Basis traders short each market's remaining long size exactly, so open interest balances."""
    n_markets = len(book.markets)
    gaps = [book.long_size(market) - book.short_size(market) for market in range(n_markets)]
    gap_notional = [notional(gap, market.price) for gap, market in zip(gaps, book.markets)]
    # every market gets one basis trader first, then the rest go where the gap is largest in dollars
    assigned = list(range(n_markets)) + [_pick(rng, gap_notional, 1)[0] for _ in range(count - n_markets)]
    weights = [rng.lognormvariate(0, 0.8) for _ in range(count)]
    total_weight = [0.0] * n_markets
    for market, weight in zip(assigned, weights):
        total_weight[market] += weight
    remaining = list(gaps)
    for market, weight in zip(assigned, weights):
        share = int(gaps[market] * weight / total_weight[market])
        total_weight[market] -= weight
        # the last trader of a market takes the rounding remainder
        size = remaining[market] if total_weight[market] <= 0 else min(share, remaining[market])
        remaining[market] -= size
        sizes = [0] * n_markets
        sizes[market] = -size
        collateral = notional(size, book.markets[market].price) / rng.uniform(1.5, 3)
        book.add("basis_short", _whole_dollars(int(collateral) + 1), sizes)


def _run_up(rng: random.Random, markets: tuple[ScenarioMarket, ...], profiles: list[MarketProfile], blocks: int) -> tuple[tuple[int, ...], ...]:
    """`blocks` marks per market rising to the first prices: from first / (1 + rise), by
    increments that are random but never negative (a dip would leave a long that opened before it
    short of initial margin for the rest of its position); the last block is the first prices."""
    if blocks == 0:
        return ()
    columns = []
    for market, profile in zip(markets, profiles):
        increments = [rng.random() for _ in range(blocks - 1)]
        total = sum(increments) or 1.0
        start = math.log(1 / (1 + profile.rise))
        level, column = start, []
        for increment in increments:
            column.append(market.price * round(math.exp(level) * PRICE_PRECISION) // PRICE_PRECISION)
            level -= start * increment / total
        column.append(market.price)
        columns.append(column)
    return tuple(zip(*columns))


def _in_run_up(trade: OpeningTrade, block: int, run_up: tuple[tuple[int, ...], ...]) -> OpeningTrade:
    """`trade` opened in run-up block `block`, at its mark."""
    return OpeningTrade(trade.market, trade.buyer, trade.seller, trade.size, run_up[block][trade.market], block)


def _first_block(rng: random.Random, kind: str, blocks: int) -> int:
    """The run-up block in which an account starts trading: crowded longs chase the rise (the
    square root of a uniform draw puts most of them late), everyone else anywhere."""
    if blocks == 0:
        return 0
    draw = math.sqrt(rng.random()) if kind == "crowded_long" else rng.random()
    return min(int(draw * blocks), blocks - 1)


def _pick(rng: random.Random, weights: list[float], count: int) -> list[int]:
    """`count` distinct indices drawn with probability proportional to `weights` (a hand-rolled
    draw: `random.choices` costs more than the rest of a trader at 100,000 traders)."""
    weights = list(weights)
    chosen = []
    for _ in range(count):
        target = rng.random() * sum(weights)
        for index, weight in enumerate(weights):
            target -= weight
            if target < 0:
                break
        else:  # rounding ran past the end: the last index that can be drawn
            index = max(i for i, weight in enumerate(weights) if weight > 0)
        chosen.append(index)
        weights[index] = 0.0
    return chosen


def _price_path(
    rng: random.Random, markets: tuple[ScenarioMarket, ...], profiles: list[MarketProfile], steps: int, step_seconds: int,
    alt_crash: float, alt_gap: float,
) -> list[PriceStep]:
    """Log price falls as time ** CASCADE_POWER to the low (a cascade that accelerates), then
    recovers smoothly; each step chases that target with noise, moving by less than MAX_STEP_MOVE.
    A market that gaps (the alt) falls by exactly `alt_gap` in the block at GAP_AT of the way to
    the low, and the rest of its fall (in log price) follows the curve."""
    lows = [alt_crash if profile.low is None else profile.low for profile in profiles]
    gap_moves = [alt_gap if profile.gaps else 0.0 for profile in profiles]
    low_step = max(1, round(LOW_AT * (steps - 1)))
    gap_step = min(max(1, round(GAP_AT * low_step)), low_step)
    factors = [PRICE_PRECISION] * len(markets)  # price / first price, fixed point
    path = [PriceStep(0, tuple(market.price for market in markets), ())]
    for step in range(1, steps):
        # share of the fall to the low (in log price) the target has reached
        if step <= low_step:
            fallen = (step / low_step) ** CASCADE_POWER
        else:
            after = (step - low_step) / max(1, steps - 1 - low_step)
            fallen = 1 - RECOVERED * after * after * (3 - 2 * after)
        for market, (low, gap, profile) in enumerate(zip(lows, gap_moves, profiles)):
            log_low, log_gap = math.log1p(low), math.log1p(gap)
            if step <= low_step:
                log_target = log_gap * (step >= gap_step) + (log_low - log_gap) * fallen
            else:
                log_target = log_low * fallen
            target = math.exp(log_target + rng.gauss(0, profile.noise))
            previous = factors[market] / PRICE_PRECISION
            if gap and step == gap_step:
                target = previous * (1 + gap)  # the gap: exactly `gap` in one block
            else:
                target = min(max(target, previous * (1 - MAX_STEP_MOVE)), previous * (1 + MAX_STEP_MOVE))
            factors[market] = round(target * PRICE_PRECISION)
        prices = tuple(market.price * factor // PRICE_PRECISION for market, factor in zip(markets, factors))
        path.append(PriceStep(step * step_seconds, prices, ()))
    return path


def _depth(
    prices: tuple[int, ...], lows: list[int], markets: tuple[ScenarioMarket, ...], open_interest: list[int], fraction: float,
    floor: float, exponent: float,
) -> tuple[int, ...]:
    """Notional liquidators take per block: `fraction` of the open interest, thinning as the market
    nears its own low (so a 75% alt crash and a 15% BTC dip dry up alike), never below `floor` of it."""
    depth = []
    for price, low, market, interest in zip(prices, lows, markets, open_interest):
        # how far into its crash the market is, in log price: 0 at the first price (or above), 1 at the low
        progress = min(max(math.log(price / market.price) / math.log(low / market.price), 0.0), 1.0) if low < market.price else 0.0
        depth.append(int(interest * fraction * max(floor, (1 - progress) ** exponent)))
    return tuple(depth)


def _match(book: _Book, rng: random.Random) -> tuple[OpeningTrade, ...]:
    """Pairs longs with shorts in each market, in random order, at the first price: at most
    (longs + shorts - 1) trades per market."""
    trades = []
    for market, scenario_market in enumerate(book.markets):
        longs = [(trader, sizes[market]) for trader, sizes in enumerate(book.sizes) if sizes[market] > 0]
        shorts = [(trader, -sizes[market]) for trader, sizes in enumerate(book.sizes) if sizes[market] < 0]
        rng.shuffle(longs)
        rng.shuffle(shorts)
        long_index = short_index = 0
        long_left, short_left = (longs[0][1] if longs else 0), (shorts[0][1] if shorts else 0)
        while long_index < len(longs) and short_index < len(shorts):
            size = min(long_left, short_left)
            trades.append(OpeningTrade(market, longs[long_index][0], shorts[short_index][0], size, scenario_market.price))
            long_left -= size
            short_left -= size
            if long_left == 0:
                long_index += 1
                long_left = longs[long_index][1] if long_index < len(longs) else 0
            if short_left == 0:
                short_index += 1
                short_left = shorts[short_index][1] if short_index < len(shorts) else 0
    return tuple(trades)


# ---------------------------------------------------------------- reading a scenario

def positions(scenario: Scenario) -> list[list[int]]:
    """Signed size per trader and market after the opening trades."""
    sizes = [[0] * len(scenario.markets) for _ in scenario.traders]
    for trade in scenario.trades:
        sizes[trade.buyer][trade.market] += trade.size
        sizes[trade.seller][trade.market] -= trade.size
    return sizes


def entry_prices(scenario: Scenario) -> list[list[int]]:
    """Entry price per trader and market after the opening trades, blended as the clearinghouse
    blends them, in the order the replays open them (block by block; 0 without a position)."""
    sizes = [[0] * len(scenario.markets) for _ in scenario.traders]
    entries = [[0] * len(scenario.markets) for _ in scenario.traders]
    for trade in (trade for block in scenario.trades_by_block() for trade in block):
        for trader, delta in ((trade.buyer, trade.size), (trade.seller, -trade.size)):
            old = sizes[trader][trade.market]
            entries[trader][trade.market] = blended_entry_price(old, entries[trader][trade.market], delta, trade.price)
            sizes[trader][trade.market] = old + delta
    return entries


def account_values(scenario: Scenario, step: int) -> list[int]:
    """Each trader's value (1e6 units) at step `step`'s prices if nothing were liquidated:
    collateral + PnL from its entry prices, rounded as the pool rounds."""
    return _values(scenario, positions(scenario), entry_prices(scenario), scenario.path[step].prices)


def _values(scenario: Scenario, sizes: list[list[int]], entries: list[list[int]], prices: tuple[int, ...]) -> list[int]:
    return [
        trader.collateral + sum(pnl(size, entry, price) for size, entry, price in zip(held, entered, prices) if size)
        for trader, held, entered in zip(scenario.traders, sizes, entries)
    ]


def summary(scenario: Scenario) -> dict:
    """What a scenario holds and how hard it hits, assuming nobody is liquidated (dollars are floats):

    - "traders": accounts by kind; "collateral": dollars by kind; "vault_deposit": dollars
    - "open_interest": long notional (== short) per market at the first prices, dollars
    - "lows": each market's lowest price as a fraction of its first price
    - "worst_step": the step with the most accounts below zero (the earliest on a tie), and at it
      "below_maintenance" (value < maintenance margin, the negative ones included), "below_zero"
      and "deficit" (Σ of the negative values, dollars)
    """
    sizes, entries = positions(scenario), entry_prices(scenario)
    markets = scenario.markets
    worst = None
    for step, block in enumerate(scenario.path):
        values = _values(scenario, sizes, entries, block.prices)
        below_zero = sum(1 for value in values if value < 0)
        if worst is None or below_zero > worst[1]:
            worst = (step, below_zero, values)
    step, below_zero, values = worst
    prices = scenario.path[step].prices
    below_maintenance = sum(
        1
        for value, held in zip(values, sizes)
        if any(held) and value < sum(margin_requirement(size, price, market.maintenance_margin) for size, price, market in zip(held, prices, markets))
    )
    collateral = Counter()
    for trader in scenario.traders:
        collateral[trader.kind] += trader.collateral / USDC
    return {
        "traders": dict(Counter(trader.kind for trader in scenario.traders)),
        "collateral": dict(collateral),
        "vault_deposit": scenario.vault_deposit / USDC,
        "open_interest": {
            market.name: sum(notional(held[index], market.price) for held in sizes if held[index] > 0) / USDC
            for index, market in enumerate(markets)
        },
        "lows": {
            market.name: min(block.prices[index] for block in scenario.path) / market.price for index, market in enumerate(markets)
        },
        "worst_step": step,
        "below_maintenance": below_maintenance,
        "below_zero": below_zero,
        "deficit": -sum(value for value in values if value < 0) / USDC,
    }
