"""The executable specification of contracts/LiquidationEngine.vy, attached to a `Model`.

Same rules, order of checks, revert strings and rounding as the contract. The engine holds its
parameters and its auctions; positions, balances and flags live in the exchange model and move
through the clearinghouse's waterfall hooks (`transfer_positions`, `transfer_balance`,
`set_account_flags`), so every action runs as one transaction of the exchange model: a revert
restores both.

Auctions (docs/design.md, section 4.2): a position is offered at the fresh mark and its price moves
in the taker's favour by `auction_premium` x elapsed / `auction_ramp`, capped at `auction_premium`,
until `auction_end`. A bankrupt account's positions are auctioned to volunteers when its ADL round
opens (`start_volunteer_auctions`, called by `AdlModel.open_round`; the takes' premiums wait in
`volunteer_premiums` until the ADL engine settles them into the round when it next acts in the
market); the vault's are offered by `start_unwind`. `auction_events`
records the contract's auction events in order, as tuples whose first item is the event's name.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from backstop.model.protocol import (
    MAX_MARKETS, NOTIONAL_SCALE, WAD, ZERO_ADDRESS, Account, Model, _require, atomic, ceil_div, notional, pnl,
)

# The contract's hard bounds of the auction parameters.
MAX_AUCTION_PREMIUM = 2 * 10**17  # 20%
MIN_AUCTION_RAMP = 60
MAX_AUCTION_DURATION = 86400
MAX_AUCTION_MIN_NOTIONAL = 10**11  # $100,000
# The default auction: 5% over 10 minutes, open 15 minutes, no partial take leaving under $100
# (backstop/chain/deployment.py's ProtocolConfig deploys these).
AUCTION_PREMIUM = 5 * 10**16
AUCTION_RAMP = 600
AUCTION_DURATION = 900
AUCTION_MIN_NOTIONAL = 100 * 10**6


@dataclass(frozen=True)
class Auction:
    """The contract's Auction struct: the lot still offered (signed as the position, 0 when none
    runs), its start and end, and whether it is a bankrupt account's volunteer auction."""

    lot: int = 0
    start: int = 0
    end: int = 0
    volunteer: bool = False


_NO_AUCTION = Auction()


def offered(lot: int, held: int) -> int:
    """LiquidationEngine._offered: the lot, at most the position held, 0 once it is on the other side or flat."""
    if held == 0 or (held > 0) != (lot > 0):
        return 0
    return min(abs(lot), abs(held))


def premium_reached(cap: int, ramp: int, start: int, now: int) -> int:
    """The premium an auction started at `start` has reached at `now`: `cap` x elapsed / `ramp`
    (floor), at most `cap` (LiquidationEngine._auction_price)."""
    return min(cap * (now - start) // ramp, cap)


def price_at_premium(lot: int, mark: int, premium: int) -> int:
    """The mark moved in the taker's favour by `premium`, rounded against the taker: a long lot
    sells at ceil(mark x (1 - premium)), a short lot at floor(mark x (1 + premium))."""
    if lot > 0:
        return ceil_div(mark * (WAD - premium), WAD)
    return mark * (WAD + premium) // WAD


class LiquidationModel:
    """Storage names as in the contract."""

    def __init__(
        self, exchange: Model, discount: int, penalty: int, ratio: int = 2 * WAD // 3, premium: int = AUCTION_PREMIUM,
        ramp: int = AUCTION_RAMP, duration: int = AUCTION_DURATION, min_notional: int = AUCTION_MIN_NOTIONAL, volunteers: bool = False,
    ):
        self.exchange = exchange
        self._set_liquidation_params(discount, penalty)
        self._set_backstop_ratio(ratio)
        self.auctions: dict[tuple[Account, int], Auction] = {}
        # premiums volunteers earned that the ADL engine has not settled (the contract stores 1 + it)
        self.volunteer_premiums: dict[tuple[Account, int], int] = {}
        self._set_auction_params(premium, ramp, duration, min_notional, volunteers)
        # The Liquidation event's fields of the last `liquidate`, for replays that follow the model like a chain.
        self.last_liquidation: tuple[int, int, int, int] | None = None
        # The auction events, in order: ("AuctionStarted", account, market, size, mark, end, volunteer),
        # ("AuctionTaken", account, taker, market, size, price, premium, remaining), ("AuctionEnded",
        # account, market), ("AuctionCancelled", account, market, remaining).
        self.auction_events: list[tuple] = []
        exchange.liquidation = self

    def snapshot(self) -> dict:
        saved = {name: value for name, value in vars(self).items() if name not in ("exchange", "auction_events")}
        saved["auctions"] = dict(getattr(self, "auctions", {}))
        saved["volunteer_premiums"] = dict(getattr(self, "volunteer_premiums", {}))
        saved["auction_events"] = len(getattr(self, "auction_events", ()))
        return saved

    def restore(self, saved: dict) -> None:
        events = getattr(self, "auction_events", [])
        vars(self).update({name: value for name, value in saved.items() if name not in ("auctions", "volunteer_premiums", "auction_events")})
        self.auctions = dict(saved.get("auctions", {}))
        self.volunteer_premiums = dict(saved.get("volunteer_premiums", {}))
        del events[saved.get("auction_events", 0):]
        self.auction_events = events

    def auction(self, account: Account, market: int) -> Auction:
        return self.auctions.get((account, market), _NO_AUCTION)

    # ------------------------------------------------------------ owner

    @atomic
    def set_liquidation_params(self, discount: int, penalty: int) -> None:
        self._set_liquidation_params(discount, penalty)

    @atomic
    def set_backstop_ratio(self, ratio: int) -> None:
        self._set_backstop_ratio(ratio)

    @atomic
    def set_auction_params(self, premium: int, ramp: int, duration: int, min_notional: int, volunteers: bool) -> None:
        self._set_auction_params(premium, ramp, duration, min_notional, volunteers)

    # ------------------------------------------------------------ liquidation

    @atomic
    def liquidate(self, liquidator: Account, account: Account, market: int, size: int, now: int) -> int:
        """Returns the base units taken over."""
        exchange = self.exchange
        _require(account != liquidator, "LiquidationEngine: cannot liquidate yourself")
        _require(market < exchange.market_count, "LiquidationEngine: unknown market")
        _require(not exchange.bankrupt.get(account, False), "LiquidationEngine: account bankrupt")
        _require(not exchange.bankrupt.get(liquidator, False), "LiquidationEngine: liquidator bankrupt")
        position_size = exchange.position(account, market).size
        _require(position_size != 0, "LiquidationEngine: no position")
        mark = exchange.fresh_prices(market, now)[1]

        before = exchange.account_health(account, now)
        _require(before.value >= 0, "LiquidationEngine: account bankrupt")
        _require(before.value < before.maintenance_margin, "LiquidationEngine: account healthy")

        taken = min(size, abs(position_size))
        _require(taken > 0, "LiquidationEngine: zero size")
        account_delta = -taken if position_size > 0 else taken
        exchange.transfer_positions(account, market, mark, [(liquidator, -account_delta, 0)], now)

        after = exchange.account_health(account, now)
        available = max(after.value, 0)
        taken_notional = notional(account_delta, mark)
        discount = min(taken_notional * self.liquidation_discount // WAD, available)
        penalty = min(taken_notional * self.liquidation_penalty // WAD, available - discount)
        if discount > 0:
            exchange.transfer_balance(account, liquidator, discount)
        if penalty > 0:
            exchange.transfer_balance(account, exchange.insurance_account, penalty)
        value_after = after.value - (discount + penalty)

        if taken < abs(position_size):
            _require(
                value_after * before.maintenance_margin > before.value * after.maintenance_margin,
                "LiquidationEngine: partial liquidation must leave the account healthier",
            )
        health = exchange.account_health(liquidator, now, fresh=True)
        _require(health.value >= health.initial_margin, "LiquidationEngine: liquidator below initial margin")
        self.last_liquidation = (taken, mark, discount, penalty)
        return taken

    # ------------------------------------------------------------ insurance vault

    @atomic
    def backstop(self, caller_is_keeper: bool, account: Account, now: int) -> str:
        """Returns "" if the vault took the account over, else the refusal reason (the event's)."""
        exchange = self.exchange
        vault = exchange.insurance_account
        _require(account != vault, "LiquidationEngine: the vault cannot take itself over")
        _require(not exchange.in_adl_round.get(account, False), "LiquidationEngine: account in an ADL round")
        open_mask = exchange.open_markets.get(account, 0)
        _require(open_mask != 0, "LiquidationEngine: no position")
        health = exchange.account_health(account, now, fresh=True)
        line = health.maintenance_margin if caller_is_keeper else health.maintenance_margin * self.backstop_ratio // WAD
        _require(health.value < line, "LiquidationEngine: account above the backstop line")

        refusal = self._takeover_refusal(account, vault, health.value, now)
        if refusal:
            if health.value < 0 and not exchange.bankrupt.get(account, False):
                exchange.set_account_flags(account, True, False)
            return refusal

        for market in range(MAX_MARKETS):
            if open_mask & (1 << market) == 0:
                continue
            size = exchange.position(account, market).size
            exchange.transfer_positions(account, market, exchange.fresh_prices(market, now)[1], [(vault, size, 0)], now)
        balance = exchange.balance(account)
        if balance > 0:
            exchange.transfer_balance(account, vault, balance)
        elif balance < 0:
            exchange.transfer_balance(vault, account, -balance)
        exchange.vault.record_takeover(max(-balance, 0), now)
        if exchange.bankrupt.get(account, False):
            exchange.set_account_flags(account, False, False)
        return ""

    # ------------------------------------------------------------ bankruptcy flags

    @atomic
    def flag_bankruptcy(self, account: Account, now: int) -> int:
        """Returns the deficit (the event's)."""
        exchange = self.exchange
        _require(not exchange.bankrupt.get(account, False), "LiquidationEngine: already bankrupt")
        value = exchange.account_value(account, now)
        _require(value < 0, "LiquidationEngine: account solvent")
        exchange.set_account_flags(account, True, exchange.in_adl_round.get(account, False))
        return -value

    @atomic
    def clear_bankruptcy(self, account: Account, now: int) -> None:
        exchange = self.exchange
        _require(exchange.bankrupt.get(account, False), "LiquidationEngine: not bankrupt")
        _require(not exchange.in_adl_round.get(account, False), "LiquidationEngine: account in an ADL round")
        _require(exchange.account_value(account, now) >= 0, "LiquidationEngine: account still in deficit")
        exchange.set_account_flags(account, False, False)

    # ------------------------------------------------------------ auctions

    @atomic
    def take(self, taker: Account, account: Account, market: int, size: int, limit_price: int, now: int) -> int:
        """Returns the take's price."""
        exchange = self.exchange
        auction = self._running(account, market, now)
        _require(auction.volunteer or not exchange.bankrupt.get(account, False), "LiquidationEngine: account bankrupt")
        _require(not exchange.bankrupt.get(taker, False), "LiquidationEngine: taker bankrupt")
        _require(size > 0, "LiquidationEngine: zero size")
        available = offered(auction.lot, exchange.position(account, market).size)
        _require(size <= available, "LiquidationEngine: take above the auction's size")
        mark = exchange.fresh_prices(market, now)[1]
        price = self.auction_price_at(auction, mark, now)
        _require(price <= limit_price if auction.lot > 0 else price >= limit_price, "LiquidationEngine: price beyond the taker's limit")
        left = available - size
        _require(left == 0 or notional(left, price) >= self.auction_min_notional, "LiquidationEngine: take leaves less than the minimum")

        taken = size if auction.lot > 0 else -size
        exchange.transfer_positions(account, market, price, [(taker, taken, 0)], now)
        premium = pnl(taken, price, mark)
        if auction.volunteer:
            self.volunteer_premiums[(account, market)] += premium
        else:
            _require(exchange.account_value(account, now) >= 0, "LiquidationEngine: take would bankrupt the account")
        health = exchange.account_health(taker, now, fresh=True)
        _require(health.value >= health.initial_margin, "LiquidationEngine: taker below initial margin")

        self.auctions[(account, market)] = replace(auction, lot=auction.lot - taken if left > 0 else 0)
        self.auction_events.append(("AuctionTaken", account, taker, market, size, price, premium, left))
        if left == 0:
            self.auction_events.append(("AuctionEnded", account, market))
        return price

    def start_volunteer_auctions(self, account: Account, end: int, now: int) -> None:
        """The AdlEngine's call when it opens `account`'s round (not a transaction of its own)."""
        exchange = self.exchange
        for market in range(MAX_MARKETS):
            if exchange.open_markets.get(account, 0) & (1 << market):
                self._start(account, market, exchange.position(account, market).size, end, True, now)

    def settle_volunteer_premium(self, account: Account, market: int) -> int:
        """The AdlEngine's call when it acts in a market of `account`'s round (not a transaction of its own)."""
        premium = self.volunteer_premium(account, market)
        self.volunteer_premiums[(account, market)] = 0
        return premium

    def volunteer_premium(self, account: Account, market: int) -> int:
        return self.volunteer_premiums.get((account, market), 0)

    @atomic
    def start_unwind(self, caller_is_keeper: bool, market: int, size: int, controller: Account, now: int) -> int:
        """`start_unwind(market, size, controller)`; returns the base units offered."""
        exchange = self.exchange
        vault = exchange.insurance_account
        _require(not exchange.bankrupt.get(vault, False), "LiquidationEngine: vault flagged bankrupt")
        held = exchange.position(vault, market).size
        _require(held != 0, "LiquidationEngine: no position")
        current = self.auction(vault, market)
        _require(current.lot == 0 or now >= current.end, "LiquidationEngine: auction already running")
        _require(size > 0, "LiquidationEngine: zero size")
        amount = min(size, abs(held))
        if not caller_is_keeper:
            need = self.unwind_need(market, controller, now)
            _require(need > 0, "LiquidationEngine: vault within its targets")
            amount = min(amount, need)
        self._start(vault, market, amount if held > 0 else -amount, now + self.auction_duration, False, now)
        return amount

    @atomic
    def cancel_unwind(self, market: int, now: int) -> None:
        vault = self.exchange.insurance_account
        auction = self._running(vault, market, now)
        _require(not auction.volunteer, "LiquidationEngine: a volunteer auction cannot be cancelled")
        self.auctions[(vault, market)] = replace(auction, lot=0)
        self.auction_events.append(("AuctionCancelled", vault, market, abs(auction.lot)))

    def auction_price(self, account: Account, market: int, now: int) -> int:
        """The contract's `auction_price` view."""
        auction = self._running(account, market, now)
        return self.auction_price_at(auction, self.exchange.fresh_prices(market, now)[1], now)

    def auction_price_at(self, auction: Auction, mark: int, now: int) -> int:
        """LiquidationEngine._auction_price: the mark moved in the taker's favour by the premium
        reached (floor), the price rounded against the taker."""
        return price_at_premium(auction.lot, mark, premium_reached(self.auction_premium, self.auction_ramp, auction.start, now))

    def volunteer_window(self) -> int:
        return self.auction_duration if self.volunteer_auctions else 0

    def unwind_need(self, market: int, controller: Account, now: int) -> int:
        """LiquidationEngine._unwind_need for the vault's position in `market` (0 without one): the
        part above its position limit, above its leverage limit, or that frees the initial margin
        `controller`'s unpayable claimable request needs even if every take comes at the premium cap."""
        exchange, vault = self.exchange, self.exchange.vault
        held = exchange.position(vault.address, market).size
        if held == 0:
            return 0
        need = max(abs(held) - vault.max_position.get(market, 0), 0)
        mark = exchange.fresh_prices(market, now)[1]
        health = exchange.account_health(vault.address, now, fresh=True)
        gross = 0
        for other in range(MAX_MARKETS):
            if exchange.open_markets.get(vault.address, 0) & (1 << other):
                size = exchange.position(vault.address, other).size
                gross += ceil_div(abs(size) * exchange.fresh_prices(other, now)[1], NOTIONAL_SCALE)
        allowed = vault.max_leverage * max(health.value, 0) // WAD
        if gross > allowed:
            need = max(need, ceil_div((gross - allowed) * NOTIONAL_SCALE, mark))
        if controller != ZERO_ADDRESS:
            preview = vault.claim_preview(controller, now)
            headroom = max(min(exchange.balance(vault.address), health.value - health.initial_margin), 0)
            if preview.shares > 0 and now >= preview.claimable_at and preview.owed > headroom:
                premium_cost = ceil_div(self.auction_premium * gross, WAD)
                if health.initial_margin > premium_cost:
                    need = max(need, ceil_div((preview.owed - headroom) * gross * NOTIONAL_SCALE, (health.initial_margin - premium_cost) * mark))
                else:
                    need = abs(held)
        return min(need, abs(held))

    def _running(self, account: Account, market: int, now: int) -> Auction:
        auction = self.auction(account, market)
        _require(auction.lot != 0, "LiquidationEngine: no auction running")
        _require(now < auction.end, "LiquidationEngine: auction ended")
        return auction

    def _start(self, account: Account, market: int, lot: int, end: int, volunteer: bool, now: int) -> None:
        self.auctions[(account, market)] = Auction(lot, now, end, volunteer)
        if volunteer:
            self.volunteer_premiums[(account, market)] = 0
        self.auction_events.append(("AuctionStarted", account, market, lot, self.exchange.fresh_prices(market, now)[1], end, volunteer))

    # ------------------------------------------------------------ internals

    def _takeover_refusal(self, account: Account, vault: Account, account_value: int, now: int) -> str:
        exchange = self.exchange
        if exchange.bankrupt.get(vault, False):
            return "vault flagged bankrupt"
        if account_value < 0 and -account_value > exchange.vault.loss_allowance(now):
            return "loss above the vault's allowance"
        equity_after = exchange.account_health(vault, now, fresh=True).value + account_value
        if equity_after <= 0:
            return "vault equity exhausted"
        notional_after = 0
        both_mask = exchange.open_markets.get(account, 0) | exchange.open_markets.get(vault, 0)
        for market in range(MAX_MARKETS):
            if both_mask & (1 << market) == 0:
                continue
            mark = exchange.fresh_prices(market, now)[1]
            vault_size = exchange.position(vault, market).size
            size_after = vault_size + exchange.position(account, market).size
            if abs(size_after) > abs(vault_size) and abs(size_after) > exchange.vault.max_position.get(market, 0):
                return "position above the vault's limit"
            notional_after += ceil_div(abs(size_after) * mark, NOTIONAL_SCALE)
        if notional_after * WAD > exchange.vault.max_leverage * equity_after:
            return "leverage above the vault's limit"
        return ""

    def _set_liquidation_params(self, discount: int, penalty: int) -> None:
        _require(discount + penalty < WAD, "LiquidationEngine: liquidation fees of 100% or more")
        self.liquidation_discount = discount
        self.liquidation_penalty = penalty

    def _set_auction_params(self, premium: int, ramp: int, duration: int, min_notional: int, volunteers: bool) -> None:
        _require(
            0 < premium <= MAX_AUCTION_PREMIUM and MIN_AUCTION_RAMP <= ramp <= duration <= MAX_AUCTION_DURATION
            and min_notional <= MAX_AUCTION_MIN_NOTIONAL,
            "LiquidationEngine: auction params out of range",
        )
        self.auction_premium, self.auction_ramp, self.auction_duration = premium, ramp, duration
        self.auction_min_notional, self.volunteer_auctions = min_notional, volunteers

    def _set_backstop_ratio(self, ratio: int) -> None:
        _require(ratio <= WAD, "LiquidationEngine: backstop ratio above 100%")
        self.backstop_ratio = ratio
