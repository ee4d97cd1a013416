"""The reference model dressed as a chain, so the keeper (backstop/keeper.py) runs on it unchanged.

`build_model` sets up the exchange, vault and ADL models from a `ProtocolConfig` and a scenario, the
way `deploy_protocol` sets up the contracts; `ModelVenue` answers the keeper's reads and performs
its actions, returning the events the contracts would emit. The model runs without per-action
snapshots (`transactional = False`): an action that the model refuses raises before it changes
anything the keeper relies on, and a replay does not roll back.

At 100,000 traders the keeper's scan of every account is the hot spot; `ModelVenue.read` screens
accounts with a float estimate of value and margin (kept per account, refreshed only for accounts
an action touched) and computes exact health only near the maintenance line.
"""

from __future__ import annotations

from dataclasses import dataclass

from backstop.adl import AdlModel
from backstop.deployment import ProtocolConfig
from backstop.model import MAX_MARKETS, WAD, MarketParams, Model, ModelRevert
from backstop.vault_model import VaultModel

VAULT = "0x" + "fa" * 20  # the vault's address in the model (any fixed address)
SCREEN_MARGIN = 0.02  # accounts within 2% of their maintenance line get an exact check
NOTIONAL_SCALE = 1e30


class TrackingModel(Model):
    """The model plus the set of accounts whose balance or positions changed since the last read."""

    transactional = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.touched: set = set()

    def _trade(self, account, market, delta, price, reduce_only, adjustment=0):
        self.touched.add(account)
        return super()._trade(account, market, delta, price, reduce_only, adjustment)

    def settle(self, account, amount):
        self.touched.add(account)
        super().settle(account, amount)

    def transfer_balance(self, sender, receiver, amount):
        self.touched.update((sender, receiver))
        super().transfer_balance(sender, receiver, amount)


def build_model(config: ProtocolConfig, markets, policy: int, now: int) -> tuple[TrackingModel, VaultModel, AdlModel]:
    """The exchange, vault and ADL models as `deploy_protocol` would set them up, with the markets
    `markets` (ScenarioMarket-like: name, price, initial_margin, maintenance_margin) and every
    market on ADL `policy`."""
    model = TrackingModel(config.max_move, config.staleness, VAULT, config.liquidation_discount, config.liquidation_penalty, config.backstop_ratio)
    vault = VaultModel(model, VAULT, config.vault_lockup, config.vault_withdrawal_delay, config.vault_max_leverage,
                       config.vault_loss_cap_per_event, config.vault_loss_cap_per_day)
    engine = AdlModel(model)
    defaults = {market.name: market for market in config.markets}
    for market_id, market in enumerate(markets):
        base = defaults.get(market.name, config.markets[0])
        model.initialize_feed(market_id, market.price, market.price, now)
        params = MarketParams(market.initial_margin, market.maintenance_margin, base.price_band, base.max_open_interest,
                              base.funding_premium_cap, base.funding_period)
        model.list_market(params, now)
        vault.set_max_position(market_id, base.vault_max_position)
        engine.set_policy(market_id, policy)
    return model, vault, engine


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
        funding = [model.current_funding_index(m, now) for m in range(self.market_count)]
        healths = []
        for account in accounts:
            if self._clear_of_maintenance(account, marks, funding):
                continue
            healths.append(self.health(account))
        return healths, marks, model.backstop_ratio, self.vault_model.loss_allowance(now)

    def health(self, account: str):
        from backstop.keeper import Health

        h = self.model.account_health(account, self.clock())
        return Health(account, h.value, h.initial_margin, h.maintenance_margin, self.model.bankrupt.get(account, False))

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
                model.liquidate(sender, account, market, size, now)
                taken, price, discount, penalty = model.last_liquidation
                return [("Liquidation", {"account": account, "liquidator": sender, "market": market, "size": taken,
                                         "price": price, "discount": discount, "penalty": penalty})]
            if action == "backstop":
                (account,) = args
                value = model.account_health(account, now, fresh=True).value
                refusal = model.backstop(True, account, now)
                if refusal:
                    return [("TakeoverRefused", {"account": account, "vault": VAULT, "reason": refusal})]
                return [("Takeover", {"account": account, "vault": VAULT, "value": value})]
            if action == "flag_bankruptcy":
                model.flag_bankruptcy(args[0], now)
                return []
            if action == "clear_bankruptcy":
                model.clear_bankruptcy(args[0], now)
                return []
        except ModelRevert as revert:
            return Failure(revert.reason)
        raise ValueError(f"unknown action {action}")

    # ------------------------------------------------------------ the screen

    def _clear_of_maintenance(self, account: str, marks: list[int], funding: list[int]) -> bool:
        """True if a float estimate puts the account comfortably above maintenance margin (or it
        has no position); every account near or below the line gets an exact check."""
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
            value += size * (marks[market] - entry) / NOTIONAL_SCALE - size * (funding[market] - snapshot) / NOTIONAL_SCALE
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
