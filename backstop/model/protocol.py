"""The executable specification of Backstop: Oracle, MarginPool and Clearinghouse in plain Python ints.

Every function here mirrors the contract function of the same name, with the same checks in the
same order, the same revert strings and the same rounding: the module-level functions mirror
contracts/modules/fixed_point.vy and margin_math.vy; the `Model` methods mirror the external
functions of contracts/Oracle.vy, MarginPool.vy and Clearinghouse.vy (grouped by contract), and
its `_private` methods their `@internal` functions. A failed check raises `ModelRevert(reason)`
and, like a reverted transaction, leaves the state as it was. Wherever a contract reads
`block.timestamp` the method takes `now`, `block.number` the `block`; wherever it reads
`msg.sender` it takes the account. `reachable_price` (with `Model.reachable_prices` and
`window_end`) mirrors no contract: it tells a keeper how far the oracle lets a price move next.
The waterfall engines are models of their own attached to this one (`liquidation`, `vault`,
`adl`), so that their actions are transactions of the whole exchange.

Not modelled (checked by the contract tests instead): caller roles (owner, keeper, the waterfall
engines), the oracle's clearinghouse address (the model is of a wired deployment: its oracle
accrues the funding of every market its clearinghouse lists before a price update), order
signatures and hashes (an `Order` is its own key in `partly_filled`, as its hash depends only on
its fields), the packing of storage, token transfers, events, batch-size limits, and integer
overflow outside realistic ranges. Units: collateral 1e6; prices, sizes and fractions 1e18.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Hashable, NamedTuple

WAD = 10**18  # fixed_point.WAD
MAX_PRICE = 2**128 - 1  # Oracle.MAX_PRICE
MAX_MOVE_WINDOW = 86_400  # Oracle.MAX_MOVE_WINDOW
NOTIONAL_SCALE = 10**30  # fixed_point.NOTIONAL_SCALE
MAX_MARKETS = 16  # Clearinghouse.MAX_MARKETS
NONCES_PER_WORD = 128  # Clearinghouse.NONCES_PER_WORD
MAX_TRADING_FEE = 10**16  # MarketConfigurator.MAX_TRADING_FEE
ZERO_ADDRESS = "0x" + "0" * 40  # empty(address)
Account = Hashable  # any id; drivers use the checksummed address strings
class ModelRevert(Exception):
    """A contract revert; `reason` is the contract's revert string ("" for a bare revert)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _require(condition: bool, reason: str) -> None:
    """Vyper's `assert condition, reason`."""
    if not condition:
        raise ModelRevert(reason)


# ---------------------------------------------------------------- fixed_point

def _trunc_div(numerator: int, denominator: int) -> int:
    """Vyper's signed `//`: rounds toward zero."""
    quotient = abs(numerator) // abs(denominator)
    return quotient if (numerator < 0) == (denominator < 0) else -quotient


def floor_div(numerator: int, denominator: int) -> int:
    """fixed_point.floor_div: rounds toward negative infinity (for a positive denominator)."""
    if denominator > 0:
        return numerator // denominator  # Python's floor division: the same quotient, faster
    quotient = _trunc_div(numerator, denominator)
    remainder = numerator - denominator * quotient  # Vyper's signed `%`: the numerator's sign
    if remainder != 0 and numerator < 0:
        quotient -= 1
    return quotient


def ceil_div(numerator: int, denominator: int) -> int:
    """fixed_point.ceil_div: unsigned division rounded up."""
    return (numerator + denominator - 1) // denominator


# ---------------------------------------------------------------- margin_math

def pnl(size: int, entry_price: int, price: int) -> int:
    """PnL of `size` opened at `entry_price`, valued at `price`. Floor."""
    return floor_div(size * (price - entry_price), NOTIONAL_SCALE)


def funding_payment(size: int, index_now: int, index_snapshot: int) -> int:
    """Funding received (negative: paid) since `index_snapshot`; a rising index: longs pay. Floor."""
    return floor_div(-size * (index_now - index_snapshot), NOTIONAL_SCALE)


def margin_requirement(size: int, price: int, fraction: int) -> int:
    """|size| x price x fraction in collateral units. Ceiling."""
    return ceil_div(abs(size) * price * fraction, NOTIONAL_SCALE * WAD)


def notional(size: int, price: int) -> int:
    """|size| x price in collateral units. Floor."""
    return abs(size) * price // NOTIONAL_SCALE


def blended_entry_price(size: int, entry_price: int, added: int, price: int) -> int:
    """Size-weighted entry after adding `added` at `price`: up for a long, down for a short."""
    weighted = abs(size) * entry_price + abs(added) * price
    total = abs(size) + abs(added)
    return ceil_div(weighted, total) if added > 0 else weighted // total


def funding_index_delta(index_price: int, mark_price: int, premium_cap: int, elapsed: int, period: int) -> int:
    """Index growth over `elapsed`: premium of mark over index, capped at cap x index. Floor."""
    cap = premium_cap * index_price // WAD
    premium = max(-cap, min(mark_price - index_price, cap))
    return floor_div(premium * elapsed, period)


# ---------------------------------------------------------------- Oracle: walking a price

def reachable_price(price: int, target: int, max_block_move: int, window_price: int, max_window_move: int) -> int:
    """The price nearest to `target` that an update in a new block may set, from the latest price
    `price` (the new block's reference) in a window whose reference is `window_price` (`price` if
    the window will have ended): Oracle._within_move turned round, for keepers that walk a price.
    `price` itself when the two limits leave nothing in common (tightened since the window opened)."""
    low, high = 1, MAX_PRICE
    for reference, max_move in ((price, max_block_move), (window_price, max_window_move)):
        room = max_move * reference // WAD
        low, high = max(low, reference - room), min(high, reference + room)
    return min(max(target, low), high) if low <= high else price


# ---------------------------------------------------------------- structs

@dataclass(frozen=True)
class PriceFeed:
    index_price: int = 0
    mark_price: int = 0
    updated_at: int = 0
    paused: bool = False


@dataclass(frozen=True)
class ReferencePrices:
    """Oracle.ReferencePrices: what a block's or a window's updates are measured against."""

    index_price: int = 0
    mark_price: int = 0
    since: int = 0  # the block number (block reference) or the timestamp (window reference)


@dataclass(frozen=True)
class MarketParams:
    initial_margin: int
    maintenance_margin: int
    price_band: int
    max_open_interest: int
    funding_premium_cap: int
    funding_period: int
    maker_fee: int = 0
    taker_fee: int = 0


@dataclass(frozen=True)
class Position:
    size: int = 0
    entry_price: int = 0
    funding_snapshot: int = 0


@dataclass
class AccountHealth:
    value: int
    initial_margin: int
    maintenance_margin: int


@dataclass(frozen=True)
class Order:
    """The Clearinghouse's Order struct. `size` is signed: a buy is positive, a sell negative.
    Signed in backstop/chain/orders.py; the model keys `partly_filled` by it."""

    account: str
    market: int
    size: int
    limit_price: int
    nonce: int
    expiry: int
    reduce_only: bool = False


class Fill(NamedTuple):
    """A fill without signatures; `settle_fills` also takes backstop.chain.trading.Fill."""

    buy: Order
    sell: Order
    size: int
    price: int
    buyer_is_taker: bool = True


def _check_market_params(params: MarketParams) -> None:
    """The MarketConfigurator's hard bounds."""
    _require(params.maintenance_margin > 0, "MarketConfigurator: zero maintenance margin")
    _require(params.initial_margin > params.maintenance_margin, "MarketConfigurator: initial margin must exceed maintenance")
    _require(params.initial_margin <= WAD, "MarketConfigurator: initial margin above 100%")
    _require(0 < params.price_band < WAD, "MarketConfigurator: price band out of range")
    _require(params.max_open_interest > 0, "MarketConfigurator: zero open interest cap")
    _require(params.funding_premium_cap <= WAD, "MarketConfigurator: funding cap above 100%")
    _require(params.funding_period > 0, "MarketConfigurator: zero funding period")
    _require(params.taker_fee <= MAX_TRADING_FEE, "MarketConfigurator: taker fee above the cap")
    _require(params.maker_fee <= params.taker_fee, "MarketConfigurator: maker fee above taker fee")


_NO_POSITION = Position()
_NO_FEED = PriceFeed()
_NO_REFERENCE = ReferencePrices()
_MARGIN_SCALE = NOTIONAL_SCALE * WAD  # margin_requirement's divisor


def atomic(action):
    """Runs a state-changing method as a transaction: any exception restores the state before it
    (unless the model runs with `transactional = False`, for replays that never expect a revert).
    Works for the exchange model and for the models attached to it (`self.exchange`): the vault's
    and the ADL engine's actions are transactions of the whole exchange."""

    @functools.wraps(action)
    def transaction(self, *args, **kwargs):
        exchange = getattr(self, "exchange", self)
        if not exchange.transactional:
            return action(self, *args, **kwargs)
        saved = exchange.snapshot()
        try:
            return action(self, *args, **kwargs)
        except Exception:
            exchange.restore(saved)
            raise

    return transaction


class Model:
    """The state of the three contracts: storage names as in the contracts (dicts default to 0)."""

    # Whether every action restores the state when it reverts (a whole-state copy per action).
    transactional = True

    def __init__(self, max_block_move: int, move_window: int, max_window_move: int, staleness: int, insurance_account: Account):
        # Oracle
        self.feeds: dict[int, PriceFeed] = {}
        self.block_reference: dict[int, ReferencePrices] = {}
        self.window_reference: dict[int, ReferencePrices] = {}
        self._set_max_block_move(max_block_move)
        self._set_move_window(move_window, max_window_move)
        self._set_staleness(staleness)
        # MarginPool
        self.balance_of: dict[Account, int] = {}
        self.closed_to_third_party_deposits: dict[Account, bool] = {}
        self.total_deposited = 0
        self.total_withdrawn = 0
        # Clearinghouse
        self.market_count = 0
        self.markets: dict[int, MarketParams] = {}
        self.funding_index: dict[int, int] = {}
        self.funding_updated_at: dict[int, int] = {}
        self.long_open_interest: dict[int, int] = {}
        self.short_open_interest: dict[int, int] = {}
        self.positions: dict[tuple[Account, int], Position] = {}
        self.open_markets: dict[Account, int] = {}
        self.nonce_bitmap: dict[tuple[Account, int], int] = {}
        self.partly_filled: dict[Order, int] = {}
        self.bankrupt: dict[Account, bool] = {}
        self.in_adl_round: dict[Account, bool] = {}
        # (market, 0 for the longs or 1 for the shorts) -> the loss spread over that side / the
        # open ADL rounds that can charge it
        self.loss_index: dict[tuple[int, int], int] = {}
        self.adl_exposure: dict[tuple[int, int], int] = {}
        self._set_insurance_account(insurance_account)
        # The waterfall engines, attached by `LiquidationModel(...)` (backstop/model/liquidation.py),
        # `VaultModel(...)` (backstop/model/vault.py) and `AdlModel(...)` (backstop/model/adl.py); None until then.
        self.liquidation = None
        self.vault = None
        self.adl = None

    _ATTACHED = ("liquidation", "vault", "adl")

    def snapshot(self) -> dict:
        """A copy of the whole state, the engines' included (dict values are immutable, so shallow copies suffice)."""
        state = {name: value.copy() if isinstance(value, dict) else value for name, value in vars(self).items() if name not in self._ATTACHED}
        for name in self._ATTACHED:
            state[name] = getattr(self, name).snapshot() if getattr(self, name) else None
        return state

    def restore(self, saved: dict) -> None:
        attached = {name: getattr(self, name) for name in self._ATTACHED}
        vars(self).clear()
        vars(self).update({name: value.copy() if isinstance(value, dict) else value for name, value in saved.items() if name not in self._ATTACHED})
        vars(self).update(attached)
        for name, engine in attached.items():
            if engine:
                engine.restore(saved[name])

    def position(self, account: Account, market: int) -> Position:
        return self.positions.get((account, market), _NO_POSITION)

    def balance(self, account: Account) -> int:
        return self.balance_of.get(account, 0)

    # ------------------------------------------------------------ Oracle

    @atomic
    def initialize_feed(self, market: int, index_price: int, mark_price: int, now: int) -> None:
        _require(self._feed(market).updated_at == 0, "Oracle: feed already initialised")
        self._check_prices(index_price, mark_price)
        self._store(market, index_price, mark_price, now)

    @atomic
    def set_paused(self, market: int, paused: bool) -> None:
        _require(self._feed(market).updated_at != 0, "Oracle: unknown market")
        self.feeds[market] = replace(self._feed(market), paused=paused)

    @atomic
    def set_max_block_move(self, max_block_move: int) -> None:
        self._set_max_block_move(max_block_move)

    @atomic
    def set_move_window(self, move_window: int, max_window_move: int) -> None:
        self._set_move_window(move_window, max_window_move)

    @atomic
    def set_staleness(self, staleness: int) -> None:
        self._set_staleness(staleness)

    @atomic
    def set_prices(self, market: int, index_price: int, mark_price: int, now: int, block: int) -> None:
        """`block`: the number of the block the update is in (the contract's `block.number`)."""
        self._update(market, index_price, mark_price, now, block)

    @atomic
    def push_prices(self, updates: list[tuple[int, int, int]], now: int, block: int) -> None:
        """`updates`: (market, index_price, mark_price) per entry; all or nothing, all in `block`."""
        for market, index_price, mark_price in updates:
            self._update(market, index_price, mark_price, now, block)

    def fresh_prices(self, market: int, now: int) -> tuple[int, int]:
        feed = self._feed(market)
        _require(feed.updated_at != 0, "Oracle: unknown market")
        _require(not feed.paused, "Oracle: market paused")
        _require(now <= feed.updated_at + self.staleness, "Oracle: stale price")
        return feed.index_price, feed.mark_price

    def latest_prices(self, market: int) -> tuple[int, int]:
        feed = self._feed(market)
        _require(feed.updated_at != 0, "Oracle: unknown market")
        return feed.index_price, feed.mark_price

    def reachable_prices(self, market: int, index_price: int, mark_price: int, now: int) -> tuple[int, int]:
        """Not a contract function: the prices nearest to `index_price` and `mark_price` that one
        update of `market` in a new block at `now` may set (what a keeper walking a price pushes
        next; the latest prices if the window's limit leaves no room until it ends)."""
        feed = self._feed(market)
        window = self._window_reference_at(market, feed, now)
        return (
            reachable_price(feed.index_price, index_price, self.max_block_move, window.index_price, self.max_window_move),
            reachable_price(feed.mark_price, mark_price, self.max_block_move, window.mark_price, self.max_window_move),
        )

    def window_end(self, market: int) -> int:
        """Not a contract function: when the market's current move window ends."""
        return self.window_reference.get(market, _NO_REFERENCE).since + self.move_window

    def _feed(self, market: int) -> PriceFeed:
        return self.feeds.get(market, _NO_FEED)

    def _window_reference_at(self, market: int, feed: PriceFeed, now: int) -> ReferencePrices:
        """The window reference an update at `now` is measured against: a window that has ended
        gives way to one opening now, from the latest prices."""
        window = self.window_reference.get(market, _NO_REFERENCE)
        if now - window.since >= self.move_window:
            window = ReferencePrices(feed.index_price, feed.mark_price, now)
        return window

    def _update(self, market: int, index_price: int, mark_price: int, now: int, block: int) -> None:
        feed = self._feed(market)
        _require(feed.updated_at != 0, "Oracle: unknown market")
        self._check_prices(index_price, mark_price)
        block_start = self.block_reference.get(market, _NO_REFERENCE)
        if block_start.since != block:
            block_start = ReferencePrices(feed.index_price, feed.mark_price, block)
        window_start = self._window_reference_at(market, feed, now)
        _require(self._within_move(block_start.index_price, index_price, self.max_block_move), "Oracle: index move above block limit")
        _require(self._within_move(block_start.mark_price, mark_price, self.max_block_move), "Oracle: mark move above block limit")
        _require(self._within_move(window_start.index_price, index_price, self.max_window_move), "Oracle: index move above window limit")
        _require(self._within_move(window_start.mark_price, mark_price, self.max_window_move), "Oracle: mark move above window limit")
        self.block_reference[market] = block_start
        self.window_reference[market] = window_start
        if market < self.market_count:  # Oracle._accrue_funding: the clearinghouse lists the market
            self._accrue_funding(market, now)
        self._store(market, index_price, mark_price, now)

    def _store(self, market: int, index_price: int, mark_price: int, now: int) -> None:
        self.feeds[market] = replace(self._feed(market), index_price=index_price, mark_price=mark_price, updated_at=now)

    @staticmethod
    def _check_prices(index_price: int, mark_price: int) -> None:
        _require(index_price > 0 and mark_price > 0, "Oracle: zero price")
        _require(index_price <= MAX_PRICE and mark_price <= MAX_PRICE, "Oracle: price above maximum")

    @staticmethod
    def _within_move(reference: int, price: int, max_move: int) -> bool:
        return abs(price - reference) * WAD <= max_move * reference

    def _set_max_block_move(self, max_block_move: int) -> None:
        _require(0 < max_block_move < WAD, "Oracle: max block move out of range")
        self.max_block_move = max_block_move

    def _set_move_window(self, move_window: int, max_window_move: int) -> None:
        _require(0 < move_window <= MAX_MOVE_WINDOW, "Oracle: move window out of range")
        _require(0 < max_window_move < WAD, "Oracle: max window move out of range")
        self.move_window = move_window
        self.max_window_move = max_window_move

    def _set_staleness(self, staleness: int) -> None:
        _require(staleness > 0, "Oracle: zero staleness")
        self.staleness = staleness

    # ------------------------------------------------------------ MarginPool

    @atomic
    def deposit(self, account: Account, amount: int) -> None:
        """`deposit` by `account` (the contract reads no timestamp here)."""
        _require(amount > 0, "MarginPool: zero amount")
        self.balance_of[account] = self.balance(account) + amount
        self.total_deposited += amount

    @atomic
    def deposit_for(self, caller: Account, account: Account, amount: int) -> None:
        _require(account != ZERO_ADDRESS, "MarginPool: zero account")
        _require(account == caller or not self.closed_to_third_party_deposits.get(account, False), "MarginPool: account closed to third-party deposits")
        self.deposit(account, amount)

    def close_to_third_party_deposits(self, caller: Account) -> None:
        self.closed_to_third_party_deposits[caller] = True

    @atomic
    def withdraw(self, account: Account, amount: int, now: int) -> None:
        _require(amount > 0, "MarginPool: zero amount")
        _require(self.balance(account) >= amount, "MarginPool: amount above balance")
        _require(amount <= self.withdrawable(account, now), "MarginPool: withdrawal below initial margin")
        _require(self.total_withdrawn + amount <= self.total_deposited, "MarginPool: pool short until an open deficit is covered")
        self.balance_of[account] = self.balance(account) - amount
        self.total_withdrawn += amount

    def settle(self, account: Account, amount: int) -> None:
        """Clearinghouse only: credit (debit if negative) realised PnL and funding."""
        self.balance_of[account] = self.balance(account) + amount

    def transfer_balance(self, sender: Account, receiver: Account, amount: int) -> None:
        """Clearinghouse only: liquidation discount and penalty."""
        self.balance_of[sender] = self.balance(sender) - amount
        self.balance_of[receiver] = self.balance(receiver) + amount

    def total_held(self) -> int:
        return self.total_deposited - self.total_withdrawn

    # ------------------------------------------------------------ Clearinghouse: owner

    # ------------------------------------------------------------ MarketConfigurator (and the hook it drives)

    @atomic
    def list_market(self, params: MarketParams, now: int) -> int:
        _check_market_params(params)
        market = self.market_count
        _require(market < MAX_MARKETS, "Clearinghouse: too many markets")
        self.market_count = market + 1
        self.funding_updated_at[market] = now
        self.markets[market] = params
        return market

    @atomic
    def set_market_params(self, market: int, params: MarketParams, now: int) -> None:
        _require(market < self.market_count, "MarketConfigurator: unknown market")
        _check_market_params(params)
        self._accrue_funding(market, now)
        self.markets[market] = params

    @atomic
    def set_insurance_account(self, insurance: Account) -> None:
        self._set_insurance_account(insurance)

    # ------------------------------------------------------------ Clearinghouse: trading

    @atomic
    def settle_fills(self, fills, now: int) -> int:
        """All fills or none; each fill has .buy, .sell (orders), .size, .price and .buyer_is_taker.
        Returns the fees credited to the insurance account."""
        fees = sum(self._settle_fill(fill.buy, fill.sell, fill.size, fill.price, fill.buyer_is_taker, now) for fill in fills)
        if fees > 0:
            self.settle(self.insurance_account, fees)
        return fees

    def settle_fill(self, buy: Order, sell: Order, size: int, price: int, now: int, buyer_is_taker: bool = True) -> int:
        """`settle_fills` with one fill; returns its fees."""
        return self.settle_fills([Fill(buy, sell, size, price, buyer_is_taker)], now)

    @atomic
    def cancel_order(self, account: Account, order: Order) -> None:
        _require(order.account == account, "Clearinghouse: not the order's account")
        key = (account, order.nonce // NONCES_PER_WORD)
        self.nonce_bitmap[key] = self.nonce_bitmap.get(key, 0) | (2 << (order.nonce % NONCES_PER_WORD * 2))

    @atomic
    def accrue_funding(self, market: int, now: int) -> None:
        self._check_listed(market)
        self._accrue_funding(market, now)

    # ------------------------------------------------------------ Clearinghouse: waterfall hooks (called by the engines)

    def transfer_positions(self, account: Account, market: int, price: int, transfers: list[tuple[Account, int, int]], now: int) -> None:
        """`transfers`: (counterparty, its signed size change, its payment to `account`)."""
        self._check_listed(market)
        self._accrue_funding(market, now)
        total_size = total_payment = 0
        for counterparty, size, payment in transfers:
            self._trade(counterparty, market, size, price, False, 0, payment)
            total_size += size
            total_payment += payment
        if total_size != 0:
            self._trade(account, market, -total_size, price, False, total_payment)
        elif total_payment > 0:
            self.settle(account, total_payment)

    def set_account_flags(self, account: Account, bankrupt: bool, in_adl_round: bool) -> None:
        self.bankrupt[account] = bankrupt
        self.in_adl_round[account] = in_adl_round

    def set_adl_exposure(self, market: int, longs: bool, exposed: bool) -> None:
        key = (market, 0 if longs else 1)
        count = self.adl_exposure.get(key, 0) + (1 if exposed else -1)
        _require(count >= 0, "")  # uint256 underflow
        self.adl_exposure[key] = count

    def socialise_loss(self, account: Account, market: int, longs_pay: bool, amount: int) -> int:
        self._check_listed(market)
        open_interest = self.long_open_interest.get(market, 0) if longs_pay else self.short_open_interest.get(market, 0)
        if open_interest == 0 or amount == 0:
            return 0
        key = (market, 0 if longs_pay else 1)
        self.loss_index[key] = self.loss_index.get(key, 0) + ceil_div(amount * NOTIONAL_SCALE, open_interest)
        self.settle(account, amount)
        return amount

    # ------------------------------------------------------------ Clearinghouse: views

    def withdrawable(self, account: Account, now: int) -> int:
        if self._withdrawal_waits(account):
            return 0
        health = self._health(account, True, now)
        return max(min(self.balance(account), health.value - health.initial_margin), 0)

    def filled_size(self, order: Order) -> int:
        word = self.nonce_bitmap.get((order.account, order.nonce // NONCES_PER_WORD), 0)
        bit = order.nonce % NONCES_PER_WORD * 2
        if word & (2 << bit):
            return abs(order.size)
        return self.partly_filled.get(order, 0) if word & (1 << bit) else 0

    def account_health(self, account: Account, now: int, fresh: bool = False) -> AccountHealth:
        """The contract's `account_health` (fresh=False) and `_health` (either)."""
        return self._health(account, fresh, now)

    def account_value(self, account: Account, now: int) -> int:
        return self._health(account, False, now, margins=False).value

    def current_funding_index(self, market: int, now: int) -> int:
        self._check_listed(market)
        index_price, mark_price = self.latest_prices(market)
        return self._funding_index_now(market, index_price, mark_price, now)

    # ------------------------------------------------------------ Clearinghouse: internals

    def _settle_fill(self, buy: Order, sell: Order, size: int, price: int, buyer_is_taker: bool, now: int) -> int:
        market = buy.market
        _require(sell.market == market, "Clearinghouse: orders for different markets")
        self._check_listed(market)
        _require(buy.size > 0, "Clearinghouse: buy order must have positive size")
        _require(sell.size < 0, "Clearinghouse: sell order must have negative size")
        _require(buy.account != sell.account, "Clearinghouse: self-trade")
        _require(size > 0, "Clearinghouse: zero fill")
        _require(price <= buy.limit_price, "Clearinghouse: price above buy limit")
        _require(price >= sell.limit_price, "Clearinghouse: price below sell limit")

        mark = self._accrue_with_fresh_prices(market, now)
        _require(abs(price - mark) * WAD <= self.markets[market].price_band * mark, "Clearinghouse: price outside band")

        self._use_order(buy, size, now)
        self._use_order(sell, size, now)
        open_interest_before = self.long_open_interest.get(market, 0)
        params = self.markets[market]
        buyer_fee = margin_requirement(size, price, params.taker_fee if buyer_is_taker else params.maker_fee)
        seller_fee = margin_requirement(size, price, params.maker_fee if buyer_is_taker else params.taker_fee)
        buyer_grew = self._trade(buy.account, market, size, price, buy.reduce_only, -buyer_fee)
        seller_grew = self._trade(sell.account, market, -size, price, sell.reduce_only, -seller_fee)
        open_interest = self.long_open_interest[market]
        _require(
            open_interest <= open_interest_before or open_interest <= self.markets[market].max_open_interest,
            "Clearinghouse: open interest cap",
        )
        self._check_margin_after_trade(buy.account, buyer_grew, now)
        self._check_margin_after_trade(sell.account, seller_grew, now)
        return buyer_fee + seller_fee

    def _use_order(self, order: Order, size: int, now: int) -> None:
        _require(not self.bankrupt.get(order.account, False), "Clearinghouse: account bankrupt")
        _require(now <= order.expiry, "Clearinghouse: order expired")
        # "Clearinghouse: bad signature" is checked here by the contract; not modelled.
        key = (order.account, order.nonce // NONCES_PER_WORD)
        bit = order.nonce % NONCES_PER_WORD * 2
        word = self.nonce_bitmap.get(key, 0)
        order_size = abs(order.size)
        partly = word & (1 << bit) != 0
        filled = size
        if word & (2 << bit):
            filled = order_size + size
        elif partly:
            filled += self.partly_filled.get(order, 0)
        _require(filled <= order_size, "Clearinghouse: fill exceeds order remaining")
        if filled == order_size:
            self.nonce_bitmap[key] = word | (2 << bit)
            self.partly_filled.pop(order, None)
        else:
            self.nonce_bitmap[key] = word | (1 << bit)
            self.partly_filled[order] = filled

    def _trade(self, account: Account, market: int, delta: int, price: int, reduce_only: bool, adjustment: int = 0, profit_charge: int = 0) -> bool:
        """Applies a size change at `price`, credits `adjustment` (a payment received in a position
        transfer; negative, a trading fee) and takes `profit_charge` (an ADL haircut) from the position's profit first;
        returns whether the account's risk in the market grew."""
        position = self.position(account, market)
        old_size, entry_price = position.size, position.entry_price
        new_size = old_size + delta
        funding = self.funding_index.get(market, 0)
        settled = funding_payment(old_size, self._index_for(market, old_size, funding), position.funding_snapshot) + adjustment

        if profit_charge > 0:
            shift = ceil_div(profit_charge * NOTIONAL_SCALE, abs(old_size))
            entry_price = entry_price + shift if old_size > 0 else entry_price - shift

        if reduce_only:
            _require(
                old_size != 0 and (old_size > 0) != (delta > 0) and abs(delta) <= abs(old_size),
                "Clearinghouse: reduce-only order would grow the position",
            )

        if old_size == 0 or (old_size > 0) == (delta > 0):
            entry_price = blended_entry_price(old_size, entry_price, delta, price)
        elif abs(delta) <= abs(old_size):
            settled += pnl(-delta, entry_price, price)
            if new_size == 0:
                entry_price = 0
        else:
            settled += pnl(old_size, entry_price, price)
            entry_price = price

        self.positions[(account, market)] = Position(new_size, entry_price, self._index_for(market, new_size, funding))
        self._update_open_interest(market, old_size, new_size)
        mask = self.open_markets.get(account, 0)
        self.open_markets[account] = mask & ~(1 << market) if new_size == 0 else mask | (1 << market)
        if settled != 0:
            self.settle(account, settled)
        return abs(new_size) > abs(old_size) or (old_size != 0 and new_size != 0 and (old_size > 0) != (new_size > 0))

    def _update_open_interest(self, market: int, old_size: int, new_size: int) -> None:
        self.long_open_interest[market] = self.long_open_interest.get(market, 0) + max(new_size, 0) - max(old_size, 0)
        self.short_open_interest[market] = self.short_open_interest.get(market, 0) + max(-new_size, 0) - max(-old_size, 0)

    def _check_margin_after_trade(self, account: Account, risk_grew: bool, now: int) -> None:
        health = self._health(account, risk_grew, now)
        if risk_grew:
            _require(health.value >= health.initial_margin, "Clearinghouse: below initial margin")
        else:
            _require(health.value >= 0, "Clearinghouse: trade would bankrupt the account")

    def _accrue_with_fresh_prices(self, market: int, now: int) -> int:
        index_price, mark_price = self.fresh_prices(market, now)
        self._store_funding_index(market, self._funding_index_now(market, index_price, mark_price, now), now)
        return mark_price

    def _accrue_funding(self, market: int, now: int) -> None:
        index_price, mark_price = self.latest_prices(market)
        self._store_funding_index(market, self._funding_index_now(market, index_price, mark_price, now), now)

    def _store_funding_index(self, market: int, index: int, now: int) -> None:
        if self.funding_updated_at.get(market, 0) == now:
            return
        self.funding_index[market] = index
        self.funding_updated_at[market] = now

    def _funding_index_now(self, market: int, index_price: int, mark_price: int, now: int) -> int:
        params = self.markets[market]
        elapsed = now - self.funding_updated_at.get(market, 0)
        _require(elapsed >= 0, "")  # uint256 underflow: time never runs backwards on chain
        if elapsed == 0:  # funding_index_delta(..., 0, period) == 0
            return self.funding_index.get(market, 0)
        delta = funding_index_delta(index_price, mark_price, params.funding_premium_cap, elapsed, params.funding_period)
        return self.funding_index.get(market, 0) + delta

    def _index_for(self, market: int, size: int, funding_index: int) -> int:
        """The index a position of `size` settles against: funding plus the loss spread over its side."""
        if size > 0:
            return funding_index + self.loss_index.get((market, 0), 0)
        if size < 0:
            return funding_index - self.loss_index.get((market, 1), 0)
        return funding_index

    def _withdrawal_waits(self, account: Account) -> bool:
        """Bankrupt, or holding a side of a market that an open ADL round can charge."""
        if self.bankrupt.get(account, False):
            return True
        for market in range(MAX_MARKETS):
            if self.open_markets.get(account, 0) & (1 << market):
                side = 0 if self.position(account, market).size > 0 else 1
                if self.adl_exposure.get((market, side), 0) > 0:
                    return True
        return False

    def _health(self, account: Account, fresh: bool, now: int, margins: bool = True) -> AccountHealth:
        """Cross margin over the account's open markets, in ascending market id like the contract
        (`margins=False`: the value only, both margins left at 0).

        pnl, funding_payment and margin_requirement written out (the same floor and ceiling
        divisions): this is the model's innermost loop."""
        value = self.balance(account)
        initial_margin = maintenance_margin = 0
        open_mask = self.open_markets.get(account, 0)
        positions = self.positions
        market = 0
        while open_mask:
            if open_mask & 1:
                index_price, mark_price = self.fresh_prices(market, now) if fresh else self.latest_prices(market)
                position = positions.get((account, market), _NO_POSITION)
                params = self.markets[market]
                size = position.size
                funding_index = self._index_for(market, size, self._funding_index_now(market, index_price, mark_price, now))
                value += size * (mark_price - position.entry_price) // NOTIONAL_SCALE
                value += -size * (funding_index - position.funding_snapshot) // NOTIONAL_SCALE
                if margins:
                    exposure = abs(size) * mark_price
                    initial_margin += (exposure * params.initial_margin + _MARGIN_SCALE - 1) // _MARGIN_SCALE
                    maintenance_margin += (exposure * params.maintenance_margin + _MARGIN_SCALE - 1) // _MARGIN_SCALE
            open_mask >>= 1
            market += 1
        return AccountHealth(value, initial_margin, maintenance_margin)

    def _check_listed(self, market: int) -> None:
        _require(market < self.market_count, "Clearinghouse: unknown market")

    def _set_insurance_account(self, insurance: Account) -> None:
        _require(insurance != ZERO_ADDRESS, "Clearinghouse: zero insurance account")
        self.insurance_account = insurance

    # ------------------------------------------------------------ invariant helpers

    def accounts(self) -> set:
        """Every account with a pool balance or a position."""
        return set(self.balance_of) | {account for account, _ in self.positions}

    def sum_account_values(self, now: int) -> int:
        """Σ account values at the latest prices; never above `total_held()` (dust favours the pool)."""
        return sum(self.account_value(account, now) for account in self.accounts())

    def open_interest_balanced(self) -> bool:
        """Per market: long OI == short OI == the positions' long and short sums."""
        for market in range(self.market_count):
            sizes = [p.size for (_, m), p in self.positions.items() if m == market]
            long_side = self.long_open_interest.get(market, 0)
            if not long_side == self.short_open_interest.get(market, 0) == sum(s for s in sizes if s > 0) == -sum(s for s in sizes if s < 0):
                return False
        return True
