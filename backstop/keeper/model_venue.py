"""The reference model dressed as a chain, so the keeper (backstop/keeper/waterfall.py) runs on it
unchanged.

`build_model` sets up the exchange, vault and ADL models from a `ProtocolConfig` and a scenario, the
way `deploy_protocol` sets up the contracts; `ModelVenue` answers the keeper's reads and performs
its actions, returning the events the contracts would emit. The model runs without per-action
snapshots (`transactional = False`): an action that the model refuses raises before it changes
anything the keeper relies on, and a replay does not roll back.

At 100,000 traders the keeper's scan of every account is the hot spot; `ModelVenue.read` screens
accounts with a float estimate of value and margin (kept per account, refreshed only for accounts
an action touched) and computes exact health only near the maintenance line. For a long list the
screen runs in two stages: a vectorised pre-screen (`AccountArrays`, numpy columns refreshed for
touched accounts) clears the accounts that are far from the line by a margin that covers any float
rounding, and the per-account screen decides the rest exactly as before, so the accounts the keeper
sees are the same.

ADL rounds come in thousands at that size: `WinnerBook` gives the ADL executor the plans that
`plan_market(winner_states(...))` gives, from winner states cached until something moves them,
and under a queue policy ranks exactly only the head of the queue (its bounds allow for a rise of
the loss indices, so that the rounds of one block share a queue). Every shortcut here is exact:
tests/test_model_replay.py replays with and without them and checks them call by call.
"""

from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass

import numpy as np

from backstop.chain.deployment import ProtocolConfig
from backstop.keeper.adl_planner import evaluate_winner, plan_market, plan_queue, winner_state
from backstop.model.adl import QUEUE_PNL_LEVERAGE, AdlModel, is_queue
from backstop.model.liquidation import LiquidationModel
from backstop.model.protocol import MAX_MARKETS, WAD, ZERO_ADDRESS, MarketParams, Model, ModelRevert, notional
from backstop.model.vault import VaultModel

VAULT = "0x" + "fa" * 20  # the vault's address in the model (any fixed address)
SCREEN_MARGIN = 0.02  # accounts within 2% of their maintenance line get an exact check
NOTIONAL_SCALE = 1e30
# Lists at least this long go through the vectorised pre-screen first.
VECTOR_SCREEN_MIN = 256
# Relative slack of the pre-screen over the magnitudes it adds up: float64 rounding of both the
# pre-screen and the per-account screen is below 1e-15 of them, so an account the pre-screen clears
# is one the per-account screen clears too.
PRESCREEN_SLACK = 1e-9


class TrackingModel(Model):
    """The model plus what the replay's caches need: the accounts whose balance or positions changed
    (`touched` since the venue's last read, `adl_touched` since the ADL book's last look), per
    market the accounts that ever held a position there, and the float copy of every account
    (`arrays`) and the ADL winner book (`winner_book`) built on them.

    `account_value` is kept per account until the account is touched, the time differs, or a
    price, funding or loss index or market parameter changes (all it depends on): an ADL round reads each
    winner's value twice, once to plan and once in the engine. The caches assume what a replay
    does: this model never rolls back (`transactional` stays False)."""

    transactional = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.touched: set = set()
        self.adl_touched: set = set()
        self.market_accounts: dict[int, dict] = {}
        self.arrays = AccountArrays(self)
        self.winner_book = WinnerBook(self)
        self.bankrupt = _TouchingFlags(self, self.bankrupt)
        self._values: dict = {}  # account -> (now, account value)

    def _touch(self, account) -> None:
        self.touched.add(account)
        self.adl_touched.add(account)
        self.arrays.dirty.add(account)
        self._values.pop(account, None)

    def _trade(self, account, market, delta, price, reduce_only, adjustment=0, profit_charge=0):
        if (account, market) not in self.positions:
            self.market_accounts.setdefault(market, {})[account] = None
        grew = super()._trade(account, market, delta, price, reduce_only, adjustment, profit_charge)
        self._touch(account)
        return grew

    def settle(self, account, amount):
        super().settle(account, amount)
        self._touch(account)

    def transfer_balance(self, sender, receiver, amount):
        super().transfer_balance(sender, receiver, amount)
        self._touch(sender)
        self._touch(receiver)

    def deposit(self, account, amount):
        super().deposit(account, amount)
        self._touch(account)

    def withdraw(self, account, amount, now):
        super().withdraw(account, amount, now)
        self._touch(account)

    def account_value(self, account, now):
        cached = self._values.get(account)
        if cached is not None and cached[0] == now:
            return cached[1]
        value = super().account_value(account, now)
        self._values[account] = (now, value)
        return value

    def _store(self, market, index_price, mark_price, now):
        self._values.clear()
        super()._store(market, index_price, mark_price, now)

    def _store_funding_index(self, market, index, now):
        if self.funding_updated_at.get(market, 0) != now or self.funding_index.get(market, 0) != index:
            self._values.clear()
        super()._store_funding_index(market, index, now)

    def _set_market(self, market, params):
        self._values.clear()
        super()._set_market(market, params)

    def socialise_loss(self, account, market, longs_pay, amount):
        self._values.clear()
        return super().socialise_loss(account, market, longs_pay, amount)

    def side_indices(self, now: int) -> tuple[list[int], list[int]]:
        """Per market, the index a long and a short settle against now (funding and spread loss)."""
        markets = range(self.market_count)
        funding = [self.current_funding_index(m, now) for m in markets]
        return ([self._index_for(m, 1, funding[m]) for m in markets], [self._index_for(m, -1, funding[m]) for m in markets])


class _TouchingFlags(dict):
    """`Model.bankrupt`, where setting an account's flag counts as touching the account (the winner
    book leaves flagged accounts out of its queues)."""

    def __init__(self, model: TrackingModel, flags: dict):
        super().__init__(flags)
        self._model = model

    def __setitem__(self, account, flag) -> None:
        super().__setitem__(account, flag)
        self._model._touch(account)


def build_model(config: ProtocolConfig, markets, policy: int, now: int) -> tuple[TrackingModel, VaultModel, AdlModel]:
    """The exchange, vault and ADL models as `deploy_protocol` would set them up (the liquidation
    engine attached to the exchange as `model.liquidation`), with the markets
    `markets` (ScenarioMarket-like: name, price, initial_margin, maintenance_margin) and every
    market on ADL `policy`."""
    model = TrackingModel(config.max_block_move, config.move_window, config.max_window_move, config.staleness, VAULT)
    LiquidationModel(
        model, config.liquidation_discount, config.liquidation_penalty, config.backstop_ratio, config.auction_premium, config.auction_ramp,
        config.auction_duration, config.auction_min_notional, config.volunteer_auctions,
    )
    vault = VaultModel(model, VAULT, config.vault_lockup, config.vault_withdrawal_delay, config.vault_max_leverage,
                       config.vault_loss_cap_per_event, config.vault_loss_cap_per_day, config.vault_profit_unlock)
    engine = AdlModel(model, config.adl_round_duration)
    defaults = {market.name: market for market in config.markets}
    for market_id, market in enumerate(markets):
        base = defaults.get(market.name, config.markets[0])
        model.initialize_feed(market_id, market.price, market.price, now)
        params = MarketParams(market.initial_margin, market.maintenance_margin, base.price_band, base.max_open_interest,
                              base.funding_premium_cap, base.funding_period, base.maker_fee, base.taker_fee)
        model.list_market(params, now)
        vault.set_max_position(market_id, base.vault_max_position)
        engine.set_policy(market_id, policy)
    return model, vault, engine


# The contract's auction events, field names in order (backstop/model/liquidation.py's `auction_events`).
_AUCTION_FIELDS = {
    "AuctionStarted": ("account", "market", "size", "mark", "end", "volunteer"),
    "AuctionTaken": ("account", "taker", "market", "size", "price", "premium", "remaining"),
    "AuctionEnded": ("account", "market"),
    "AuctionCancelled": ("account", "market", "remaining"),
}


def _auction_events(events) -> list:
    return [(name, dict(zip(_AUCTION_FIELDS[name], fields))) for name, *fields in events]


@dataclass
class Failure:
    """A refused action, shaped like fast_chain's RevertError."""

    reason: str


class ModelVenue:
    """What the keeper reads and does, on the model. `clock()` gives the replay's time."""

    def __init__(self, model: TrackingModel, vault: VaultModel, clock):
        self.model, self.vault_model, self.clock = model, vault, clock
        self.vault = VAULT
        self.market_count = model.market_count
        self._estimates: dict[str, tuple] = {}

    # ------------------------------------------------------------ reads

    def read(self, accounts: list[str]):
        """(healths, marks, backstop ratio, vault loss allowance). Healths only for the accounts
        the screen cannot clear: the keeper acts on nothing else."""
        model, now = self.model, self.clock()
        marks = [model.latest_prices(m)[1] for m in range(self.market_count)]
        for account in model.touched:
            self._estimates.pop(account, None)
        model.touched.clear()
        funding = model.side_indices(now)
        if len(accounts) >= VECTOR_SCREEN_MIN:
            accounts = model.arrays.not_cleared(accounts, marks, funding)
        healths = []
        for account in accounts:
            if self._clear_of_maintenance(account, marks, funding):
                continue
            healths.append(self.health(account))
        return healths, marks, model.liquidation.backstop_ratio, self.vault_model.loss_allowance(now)

    def health(self, account: str):
        from backstop.keeper.waterfall import Health

        h = self.model.account_health(account, self.clock())
        return Health(account, h.value, h.initial_margin, h.maintenance_margin, self.model.bankrupt.get(account, False))

    def healths(self, accounts: list[str]) -> list:
        return [self.health(account) for account in accounts]

    def account_health(self, account: str) -> tuple[int, int, int]:
        h = self.model.account_health(account, self.clock())
        return h.value, h.initial_margin, h.maintenance_margin

    def positions(self, accounts: list[str]) -> dict[str, dict[int, int]]:
        model = self.model
        return {a: {m: model.position(a, m).size for m in range(self.market_count) if model.position(a, m).size} for a in accounts}

    def initial_margin_fractions(self) -> dict[int, int]:
        return {m: self.model.markets[m].initial_margin for m in range(self.market_count)}

    def vault_equity(self) -> int:
        return self.model.account_value(VAULT, self.clock())

    def now(self) -> int:
        return self.clock()

    # ------------------------------------------------------------ auctions (backstop/keeper/auctions.py)

    def auction_params(self) -> tuple[int, int, int]:
        """(premium cap, ramp, minimum notional) of the LiquidationEngine's auctions."""
        liquidation = self.model.liquidation
        return liquidation.auction_premium, liquidation.auction_ramp, liquidation.auction_min_notional

    def auctions(self, accounts: list[str]):
        """The auctions running now of `accounts`, in every market."""
        from backstop.keeper.auctions import RunningAuction

        liquidation, now = self.model.liquidation, self.clock()
        wanted = set(accounts)
        return [
            RunningAuction(account, market, auction.lot, auction.start, auction.end, auction.volunteer)
            for (account, market), auction in liquidation.auctions.items()
            if account in wanted and auction.lot != 0 and now < auction.end
        ]

    def entries(self, account: str) -> dict[int, tuple[int, int]]:
        """market -> (signed size, entry price) of the account's open positions."""
        model = self.model
        return {m: (model.position(account, m).size, model.position(account, m).entry_price)
                for m in range(self.market_count) if model.position(account, m).size}

    def unwind_need(self, market: int) -> int:
        """What anyone may offer of the vault's position in `market` (above its targets)."""
        return self.model.liquidation.unwind_need(market, ZERO_ADDRESS, self.clock())

    def vault_open_notional(self) -> int:
        """Σ |size| x mark of the vault's positions (collateral units)."""
        model = self.model
        return sum(notional(abs(model.position(VAULT, m).size), model.latest_prices(m)[1]) for m in range(self.market_count))

    # ------------------------------------------------------------ actions (the contracts' events)

    def act(self, sender: str, action: str, *args):
        """Performs `action` as `sender`; returns [(event name, fields)] or a Failure."""
        model, now = self.model, self.clock()
        try:
            if action == "accrue_funding":
                model.accrue_funding(args[0], now)
                return []
            if action == "liquidate":
                account, market, size = args
                model.liquidation.liquidate(sender, account, market, size, now)
                taken, price, discount, penalty = model.liquidation.last_liquidation
                return [("Liquidation", {"account": account, "liquidator": sender, "market": market, "size": taken,
                                         "price": price, "discount": discount, "penalty": penalty})]
            if action == "backstop":
                (account,) = args
                value = model.account_health(account, now, fresh=True).value
                refusal = model.liquidation.backstop(True, account, now)
                if refusal:
                    return [("TakeoverRefused", {"account": account, "vault": VAULT, "reason": refusal})]
                return [("Takeover", {"account": account, "vault": VAULT, "value": value})]
            if action == "flag_bankruptcy":
                model.liquidation.flag_bankruptcy(args[0], now)
                return []
            if action == "clear_bankruptcy":
                model.liquidation.clear_bankruptcy(args[0], now)
                return []
            if action == "take":
                account, market, size, limit = args
                before = len(model.liquidation.auction_events)
                model.liquidation.take(sender, account, market, size, limit, now)
                return _auction_events(model.liquidation.auction_events[before:])
            if action == "start_unwind":
                market, size, controller = args
                before = len(model.liquidation.auction_events)
                # The keeper's role (the venue acts for the keeper, as `backstop` does).
                model.liquidation.start_unwind(True, market, size, controller, now)
                return _auction_events(model.liquidation.auction_events[before:])
            if action == "cancel_unwind":
                before = len(model.liquidation.auction_events)
                model.liquidation.cancel_unwind(args[0], now)
                return _auction_events(model.liquidation.auction_events[before:])
        except ModelRevert as revert:
            return Failure(revert.reason)
        raise ValueError(f"unknown action {action}")

    # ------------------------------------------------------------ the screen

    def _clear_of_maintenance(self, account: str, marks: list[int], funding: tuple[list[int], list[int]]) -> bool:
        """True if a float estimate puts the account comfortably above maintenance margin (or it
        has no position); every account near or below the line gets an exact check. `funding`:
        per market the longs' and the shorts' index (`TrackingModel.side_indices`)."""
        estimate = self._estimates.get(account)
        if estimate is None:
            estimate = self._estimate(account)
            self._estimates[account] = estimate
        balance, legs = estimate
        if not legs:
            return True
        value = balance
        maintenance = 0.0
        for market, size, entry, snapshot, fraction in legs:
            index = funding[0][market] if size > 0 else funding[1][market]
            value += size * (marks[market] - entry) / NOTIONAL_SCALE - size * (index - snapshot) / NOTIONAL_SCALE
            maintenance += abs(size) * marks[market] * fraction / (NOTIONAL_SCALE * WAD)
        return value > maintenance * (1 + SCREEN_MARGIN) + 2

    def _estimate(self, account: str) -> tuple:
        model = self.model
        legs = []
        mask = model.open_markets.get(account, 0)
        for market in range(MAX_MARKETS):
            if mask & (1 << market):
                position = model.position(account, market)
                legs.append((market, position.size, position.entry_price, position.funding_snapshot, model.markets[market].maintenance_margin))
        return float(model.balance(account)), legs



# ---------------------------------------------------------------- float copies of the accounts


class AccountArrays:
    """What `ModelVenue._estimate` reads of every account seen, as numpy columns: one row per
    account; per market its size, entry price, funding snapshot and maintenance fraction (zeros
    without a position). Rows of accounts an action touched are refreshed on the next use."""

    def __init__(self, model: Model):
        self.model = model
        self.dirty: set = set()
        self._layout(0)

    def _layout(self, markets: int) -> None:
        self.markets = markets
        self.rows: dict = {}
        self.accounts: list = []
        self.balance = np.zeros(0)
        self.open = np.zeros(0, dtype=bool)
        self.legs = np.zeros((4, markets, 0))
        # (accounts, their rows) of the last list screened and of the longest: a replay's keeper
        # screens its whole watch list every block, and shorter lists between liquidations
        self._recent = self._longest = ([], np.zeros(0, dtype=np.intp))

    def sync(self) -> None:
        """Brings every row up to date (and the layout to the model's markets)."""
        if self.markets != self.model.market_count:
            self._layout(self.model.market_count)
        rows = self.rows
        self._fill([(rows[account], account) for account in self.dirty if account in rows])
        self.dirty.clear()

    def add(self, accounts) -> None:
        """Rows for those of `accounts` not seen yet, filled from the model."""
        if self.markets != self.model.market_count:
            self._layout(self.model.market_count)
        rows = self.rows
        new = [account for account in dict.fromkeys(accounts) if account not in rows]
        if not new:
            return
        first = len(self.accounts)
        if first + len(new) > len(self.balance):
            self._grow(max(1024, 2 * len(self.balance), first + len(new)))
        rows.update(zip(new, range(first, first + len(new))))
        self.accounts += new
        self._fill(list(zip(range(first, first + len(new)), new)))

    def not_cleared(self, accounts: list, marks: list[int], funding: tuple[list[int], list[int]]) -> list:
        """`accounts` (in order) less those whose estimate clears the maintenance line by more than
        the per-account screen (`ModelVenue._clear_of_maintenance`) could ever get wrong."""
        self.sync()
        rows = self._rows_of(accounts)
        value, magnitude, maintenance = self._estimates(marks, funding)
        margin = value - (maintenance * (1 + SCREEN_MARGIN) + 2)
        cleared = ~self.open[: len(value)] | (margin > PRESCREEN_SLACK * (magnitude + maintenance) + 1)
        keep = np.flatnonzero(~cleared[rows])
        return [accounts[i] for i in keep.tolist()]

    def _rows_of(self, accounts: list) -> np.ndarray:
        for listed, rows in (self._longest, self._recent):
            if listed == accounts:
                return rows
        self.add(accounts)
        rows = np.fromiter(map(self.rows.__getitem__, accounts), dtype=np.intp, count=len(accounts))
        self._recent = (list(accounts), rows)
        if len(accounts) >= len(self._longest[0]):
            self._longest = self._recent
        return rows

    def value_bounds(self, marks: list[int], funding: tuple[list[int], list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Per row, bounds of the exact account value (`Model.account_value` at these marks and
        the longs' and shorts' indices): low <= value <= high. Each PnL and funding term is floored (each at most
        1 below its real value), and the float sums are within 1e-15 of their magnitude."""
        self.sync()
        value, magnitude, _ = self._estimates(marks, funding)
        slack = PRESCREEN_SLACK * magnitude + 1
        return value - slack - 2 * self.markets, value + slack

    def _estimates(self, marks, funding) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        count = len(self.accounts)
        sizes, entries, snapshots, fractions = (self.legs[k, :, :count] for k in range(4))
        value = self.balance[:count].copy()
        magnitude = np.abs(value)
        maintenance = np.zeros(count)
        for market in range(self.markets):
            mark = float(marks[market])
            size, entry, snapshot = sizes[market], entries[market], snapshots[market]
            index = np.where(size > 0, float(funding[0][market]), float(funding[1][market]))
            value += size * (mark - entry) / NOTIONAL_SCALE - size * (index - snapshot) / NOTIONAL_SCALE
            held = np.abs(size)
            maintenance += held * mark * fractions[market] / (NOTIONAL_SCALE * WAD)
            magnitude += held * (mark + np.abs(entry) + np.abs(index) + np.abs(snapshot)) / NOTIONAL_SCALE
        return value, magnitude, maintenance

    def _grow(self, capacity: int) -> None:
        extra = capacity - len(self.balance)
        self.balance = np.concatenate([self.balance, np.zeros(extra)])
        self.open = np.concatenate([self.open, np.zeros(extra, dtype=bool)])
        self.legs = np.concatenate([self.legs, np.zeros((4, self.markets, extra))], axis=2)

    def _fill(self, rows: list[tuple[int, object]]) -> None:
        """What `ModelVenue._estimate` reads, for each (row, account) of `rows`, written at once."""
        if not rows:
            return
        model, markets = self.model, self.markets
        fractions = [float(model.markets[m].maintenance_margin) for m in range(markets)]
        balances, masks, legs = [], [], []
        for _, account in rows:
            balances.append(float(model.balance(account)))
            mask = model.open_markets.get(account, 0)
            masks.append(mask != 0)
            for market in range(markets):
                if mask & (1 << market):
                    position = model.position(account, market)
                    legs += (float(position.size), float(position.entry_price), float(position.funding_snapshot), fractions[market])
                else:
                    legs += (0.0, 0.0, 0.0, 0.0)
        index = np.fromiter((row for row, _ in rows), dtype=np.intp, count=len(rows))
        self.balance[index] = balances
        self.open[index] = masks
        self.legs[:, :, index] = np.array(legs).reshape(len(rows), markets, 4).transpose(2, 1, 0)


# ---------------------------------------------------------------- the ADL executor's winners

_MISSING = object()


class WinnerBook:
    """The winners of ADL rounds on a `TrackingModel`, for `ModelAdlExecutor`: the plans that
    `plan_market(winner_states(...))` gives, without reading every position of the market for
    every round.

    Winner states are kept for as long as nothing moves them: the time, the prices, the funding
    and loss indices and the market parameters (an "epoch": one step of a replay) and the account itself
    (`TrackingModel.adl_touched`). A queue outlives a rise of a loss index (every round that spreads
    a loss raises one: thousands in a step at 100,000 traders) when its bounds allowed for it.
    Under a queue policy only the head of the queue is needed: the float bounds of
    `AccountArrays.value_bounds` give every position an upper bound of its queue key, and winners
    are taken in order of that bound and ranked exactly until no bound left can reach the best
    exact key (`_Queue`); the order is the exact (key, address) order either way. Pro-rata and
    risk-aware plans use every winner and get the whole book, from cached states."""

    def __init__(self, model: TrackingModel):
        self.model = model
        self._epoch = None
        self.now = 0
        self._states: dict = {}  # (account, market) -> WinnerState
        self._queues: dict = {}  # (market, winners are long) -> _Queue
        # the loss indices (market 0 long, market 0 short, market 1 long, ...) the states were read at
        self.losses: tuple = ()
        # per loss index, the largest rise seen in one move: the allowance a queue is built with
        self.loss_steps: dict[int, int] = {}
        # (market, long) -> the accounts holding a position on that side, kept up to date
        self._sides: dict = {}

    def plan(self, bankrupt, market_id: int, market, now: int, batch_size: int) -> list:
        """The batches `plan_market(market, winner_states(model, bankrupt, market_id, now))` gives,
        while `bankrupt`'s round is open."""
        self._sync(now)
        model = self.model
        flags = model.bankrupt
        winners_long = not market.bankrupt_size > 0
        if is_queue(market.policy):
            key = (market_id, winners_long)
            queue = self._queues.get(key)
            if queue is None or queue.key != (market.policy, market.price) or queue.worn():
                queue = self._queues[key] = _Queue(self, market_id, winners_long, market)
            return plan_queue(market, queue.ordered(bankrupt, flags), batch_size)
        book = [self.state(account, market_id) for account in self._side(market_id, winners_long)
                if account != bankrupt and not flags.get(account, False)]
        return plan_market(market, book, batch_size)

    def _side(self, market_id: int, long_side: bool) -> dict:
        side = self._sides.get((market_id, long_side))
        if side is None:
            positions = self.model.positions
            for long_ in (True, False):
                self._sides[(market_id, long_)] = {
                    account: None for account in self.model.market_accounts.get(market_id, ())
                    if positions[(account, market_id)].size != 0 and (positions[(account, market_id)].size > 0) == long_
                }
            side = self._sides[(market_id, long_side)]
        return side

    def state(self, account, market: int):
        state = self._states.get((account, market))
        if state is None:
            state = self._states[(account, market)] = winner_state(self.model, account, market, self.now)
        return state

    def hedged_hits(self, closed, planned: list[tuple[int, int, int]]) -> set:
        """The winners hit in the round `closed` that a plan saw hedged: what
        `{w.account for w in winner_states(...) if is_hedged(w, price)}`, gathered over the round's
        markets at the time each was planned, holds of the winners hit. `planned`: (market, round
        price, bankrupt size) in the order the markets were planned. A winner's positions at each
        plan are its positions now less the hits the round made in that market and the markets
        planned after it."""
        model = self.model
        count = model.market_count
        marks = [model.latest_prices(m)[1] for m in range(count)]
        hit, closes = set(), {}
        for one in closed.hits:
            if one.haircut or one.size_closed:
                hit.add(one.winner)
            if one.size_closed:
                closes.setdefault(one.winner, []).append((one.market, one.size_closed))
        open_markets, hedged = model.open_markets, set()
        for winner in hit:
            moved = closes.get(winner, ())
            held = open_markets.get(winner, 0)
            for market, _ in moved:
                held |= 1 << market
            if held & (held - 1) == 0:
                continue  # one market at most at every plan: nothing elsewhere to hedge it
            sizes = [model.position(winner, m).size for m in range(count)]
            for market, price, bankrupt_size in reversed(planned):
                direction = 1 if bankrupt_size > 0 else -1
                for closed_market, size_closed in moved:
                    if closed_market == market:
                        sizes[market] -= size_closed * direction
                size = sizes[market]
                if size == 0 or (size > 0) == (bankrupt_size > 0):
                    continue
                other = gross = 0
                for other_market in range(count):
                    if other_market != market and sizes[other_market]:
                        value = notional(sizes[other_market], marks[other_market])
                        other += value if sizes[other_market] > 0 else -value
                        gross += value
                own = notional(size, price)
                if 2 * abs(other + (own if size > 0 else -own)) < own + gross:
                    hedged.add(winner)
        return hedged

    def _sync(self, now: int) -> None:
        model = self.model
        markets = range(model.market_count)
        epoch = (now, tuple(model.feeds.get(m) for m in markets), tuple(model.funding_index.get(m, 0) for m in markets),
                 tuple(model.funding_updated_at.get(m, 0) for m in markets), tuple(model.markets.get(m) for m in markets))
        losses = tuple(model.loss_index.get((m, side), 0) for m in markets for side in (0, 1))
        touched = model.adl_touched
        if touched and self._sides:
            positions, sides = model.positions, self._sides
            for market in {market for market, _ in sides}:
                longs, shorts = sides[(market, True)], sides[(market, False)]
                for account in touched:
                    position = positions.get((account, market))
                    size = 0 if position is None else position.size
                    if size > 0:
                        longs[account] = None
                        shorts.pop(account, None)
                    elif size < 0:
                        shorts[account] = None
                        longs.pop(account, None)
                    else:
                        longs.pop(account, None)
                        shorts.pop(account, None)
        if epoch != self._epoch:
            self._epoch, self.now, self.losses = epoch, now, losses
            self._states, self._queues = {}, {}
            touched.clear()
            return
        if losses != self.losses:
            # A round spread a loss over a side (`Model.socialise_loss`): every value on it fell.
            # The states are read again; a queue stays while its bounds allow for the rise.
            for index, (before, after) in enumerate(zip(self.losses, losses)):
                if after > before:
                    self.loss_steps[index] = max(self.loss_steps.get(index, 0), after - before)
            self.losses, self._states = losses, {}
            self._queues = {key: queue for key, queue in self._queues.items() if queue.allows(losses)}
            for queue in self._queues.values():
                queue.revalue()
        if touched:
            states = self._states
            for account in touched:
                for market in markets:
                    states.pop((account, market), None)
            for queue in self._queues.values():
                queue.touched(touched)
        touched.clear()


class _Queue:
    """One side of one market in queue order, for one epoch, policy and price."""

    REBUILD_SHARE = 0.25  # rebuilt when this share of its accounts moved since it was built
    # Its bounds allow every loss index to rise by this many times the largest rise it was seen to
    # take in one move (a rise beyond that drops the queue; one never seen to rise may not rise).
    LOSS_ALLOWANCE = 2
    # Kept across a rise with at most this many moved accounts (each is ranked again; with more, a
    # build costs less).
    REVALUE_LIMIT = 128

    def __init__(self, book: WinnerBook, market_id: int, winners_long: bool, market):
        self.book, self.market_id, self.market = book, market_id, market
        self.key = (market.policy, market.price)
        # Built at the first round of an epoch, with the accounts then flagged bankrupt left out
        # (a flag set or lifted later touches the account, which is then ranked again).
        self.evaluated: dict = {}  # account -> _Evaluated or None, for accounts not moved since
        self.stale: set = set()  # accounts moved since the build: their place in `order` is void
        self.pending: set = set()  # stale accounts not yet ranked again
        self.extra: list = []  # sorted (-key, address number, serial, _Evaluated) of stale accounts
        self.current: dict = {}  # stale account -> its live entry in `extra` (None if not eligible)
        self._serial = 0
        self._build(winners_long)

    def worn(self) -> bool:
        return len(self.stale) > self.REBUILD_SHARE * len(self.order) + 1000

    def allows(self, losses: tuple) -> bool:
        """Whether it may be kept at these loss indices: its bounds still hold, and few of its
        accounts have moved (each is ranked again: beyond REVALUE_LIMIT a build is cheaper)."""
        return len(self.stale) <= self.REVALUE_LIMIT and all(
            now - built <= allowed for now, built, allowed in zip(losses, self.losses, self.allowances))

    def revalue(self) -> None:
        """After a loss index rose within the allowance: the order by bound stands, every exact
        key is computed again (the moved accounts' at once, the others when reached)."""
        self.evaluated = {}
        self.pending = set(self.stale)
        self.extra, self.current = [], {}

    def touched(self, accounts) -> None:
        self.stale.update(accounts)
        self.pending.update(accounts)
        for account in accounts:
            self.evaluated.pop(account, None)

    def ordered(self, bankrupt, flags):
        """The eligible winners (not `bankrupt`, not flagged) in exact queue order, lazily."""
        self._rank_pending()
        merged = heapq.merge(self._from_order(bankrupt, flags), self._from_extra(bankrupt, flags))
        return (entry[-1] for entry in merged)

    def _build(self, winners_long: bool) -> None:
        book, model, market_id, market = self.book, self.book.model, self.market_id, self.market
        arrays = model.arrays
        arrays.sync()
        arrays.add(model.market_accounts.get(market_id, ()))
        now = book.now
        marks = [model.latest_prices(m)[1] for m in range(model.market_count)]
        low, high = arrays.value_bounds(marks, model.side_indices(now))
        count = len(low)
        self.losses = book.losses
        self.allowances = [self.LOSS_ALLOWANCE * book.loss_steps.get(index, 0) for index in range(len(self.losses))]
        for other in range(model.market_count):
            sizes = arrays.legs[0, other, :count]
            long_allowance, short_allowance = self.allowances[2 * other], self.allowances[2 * other + 1]
            if long_allowance or short_allowance:
                # A rise of the index by `a` takes at most |size| * a / 1e30 + 1 off a value.
                fall = np.where(sizes > 0, sizes * float(long_allowance), -sizes * float(short_allowance)) / NOTIONAL_SCALE
                low = low - (fall * (1 + PRESCREEN_SLACK) + 1)
        size, entry = arrays.legs[0, market_id, :count], arrays.legs[1, market_id, :count]
        price = float(market.price)
        held = np.abs(size)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            profit = size * (price - entry) / NOTIONAL_SCALE
            candidate = ((size > 0) if winners_long else (size < 0)) & (profit > 0.5) & (high > 0)
            position_notional = held * price / NOTIONAL_SCALE
            if market.policy == QUEUE_PNL_LEVERAGE:  # queue_key: PnL x mark leverage / entry notional
                entry_notional = np.maximum(held * entry / NOTIONAL_SCALE * (1 - 1e-9) - 1, 1.0)
                upper = profit * position_notional * WAD / (low * entry_notional)
            else:  # the price ratio in the position's favour x mark leverage
                favour = price * WAD / entry if winners_long else entry * WAD / price
                upper = favour * position_notional / low
            upper = np.where(low > 0, upper * (1 + 1e-6) + 2, np.inf)
        rows = np.flatnonzero(candidate)
        rows = rows[np.argsort(-upper[rows], kind="stable")]
        accounts, flags = arrays.accounts, model.bankrupt
        ranked = [(accounts[row], bound) for row, bound in zip(rows.tolist(), upper[rows].tolist()) if not flags.get(accounts[row], False)]
        self.order = [account for account, _ in ranked]
        self.upper = [bound for _, bound in ranked]
        self.head = 0  # order[:head]: moved since the build, or not eligible; never looked at again

    def _from_order(self, bankrupt, flags):
        order, upper, stale, evaluated = self.order, self.upper, self.stale, self.evaluated
        book, market, market_id = self.book, self.market, self.market_id
        heap: list = []
        index, count = self.head, len(order)
        while index < count and (order[index] in stale or evaluated.get(order[index], _MISSING) is None):
            index += 1  # moved, or found not eligible: void until the queue is built again
        self.head = index
        while True:
            while index < count and (not heap or upper[index] >= -heap[0][0]):
                account = order[index]
                index += 1
                if account in stale or account == bankrupt or flags.get(account, False):
                    continue
                winner = evaluated.get(account, _MISSING)
                if winner is _MISSING:
                    winner = evaluated[account] = evaluate_winner(market, book.state(account, market_id))
                if winner is not None:
                    heapq.heappush(heap, (-winner.key, int(account, 16), winner))
            if not heap:
                return
            yield heapq.heappop(heap)

    def _from_extra(self, bankrupt, flags):
        current = self.current
        for entry in self.extra:
            winner = entry[-1]
            account = winner.account
            if current.get(account) is not entry or account == bankrupt or flags.get(account, False):
                continue
            yield (entry[0], entry[1], winner)

    def _rank_pending(self) -> None:
        model, market_id = self.book.model, self.market_id
        for account in self.pending:
            position = model.positions.get((account, market_id))
            winner = None
            if position is not None and position.size != 0:
                winner = evaluate_winner(self.market, self.book.state(account, market_id))
            if winner is None:
                self.current[account] = None
                continue
            self._serial += 1
            entry = (-winner.key, int(account, 16), self._serial, winner)
            bisect.insort(self.extra, entry)
            self.current[account] = entry
        self.pending.clear()
        if len(self.extra) > 2 * len(self.current) + 64:
            self.extra = sorted(entry for entry in self.current.values() if entry is not None)
