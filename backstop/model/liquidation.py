"""The executable specification of contracts/LiquidationEngine.vy, attached to a `Model`.

Same rules, order of checks, revert strings and rounding as the contract. The engine holds only its
parameters; positions, balances and flags live in the exchange model and move through the
clearinghouse's waterfall hooks (`transfer_positions`, `transfer_balance`, `set_account_flags`), so
every action runs as one transaction of the exchange model: a revert restores both.
"""

from __future__ import annotations

from backstop.model.protocol import MAX_MARKETS, NOTIONAL_SCALE, WAD, Account, Model, _require, atomic, ceil_div, notional


class LiquidationModel:
    """Storage names as in the contract."""

    def __init__(self, exchange: Model, discount: int, penalty: int, ratio: int = 2 * WAD // 3):
        self.exchange = exchange
        self._set_liquidation_params(discount, penalty)
        self._set_backstop_ratio(ratio)
        # The Liquidation event's fields of the last `liquidate`, for replays that follow the model like a chain.
        self.last_liquidation: tuple[int, int, int, int] | None = None
        exchange.liquidation = self

    def snapshot(self) -> dict:
        return {name: value for name, value in vars(self).items() if name != "exchange"}

    def restore(self, saved: dict) -> None:
        vars(self).update(saved)

    # ------------------------------------------------------------ owner

    @atomic
    def set_liquidation_params(self, discount: int, penalty: int) -> None:
        self._set_liquidation_params(discount, penalty)

    @atomic
    def set_backstop_ratio(self, ratio: int) -> None:
        self._set_backstop_ratio(ratio)

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

    def _set_backstop_ratio(self, ratio: int) -> None:
        _require(ratio <= WAD, "LiquidationEngine: backstop ratio above 100%")
        self.backstop_ratio = ratio
