"""Replays a crash scenario on the reference model: the same phases, keeper and figures as the chain
replay (backstop/sim/chain_replay.py), without a chain, so it reaches crowds a chain replay cannot
(10,000 traders in 3 to 40 s per policy).

Several replays at once (seeds, policies, vault sizes, crowds, in processes or on Dask):
backstop/sim/sweep.py. The replays of one scenario share its opening (`model_opening`): the state
once the accounts are funded and the opening trades are done is the same under every ADL policy and
volunteer step, and at 100,000 traders it takes longer to build than a copy takes to load.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, replace
from typing import Callable, Sequence

from backstop.chain.deployment import ProtocolConfig
from backstop.keeper.adl_executor import ModelAdlExecutor
from backstop.keeper.auctions import AuctionDesk
from backstop.keeper.model_venue import VAULT, ModelVenue, TrackingModel, build_model
from backstop.keeper.waterfall import Keeper, remember_checksummed
from backstop.model.adl import QUEUE_PNL_LEVERAGE, AdlModel
from backstop.model.protocol import Order
from backstop.model.vault import VaultModel
from backstop.sim.replay import FinalState, Progress, Replay, price_updates
from backstop.sim.scenario import Scenario

START = 1_750_000_000  # the model's clock when the replay begins (any time; only differences matter)
KEEPER = "0x" + "ee" * 20  # the keeper's address in the model
ONE_YEAR = 365 * 24 * 3600


def replay_on_model(scenario: Scenario, policy: int, config: ProtocolConfig = ProtocolConfig(),
                    progress: Progress | None = None, log: Callable[[str], None] | None = None,
                    volunteers: bool = True, unwind: str = "profit", opening: bytes | None = None) -> dict:
    """Replays `scenario` on the model with every market on ADL `policy`; the figures of
    `Replay.result`. `volunteers`: whether ADL rounds open with a volunteer auction (whatever
    `config.volunteer_auctions` says); `unwind`: the keeper's unwind policy for the vault
    (backstop/keeper/auctions.py); `opening`: `model_opening(scenario, config)`, to start from
    instead of funding the accounts and trading again (the same result)."""
    return ModelReplay(scenario, policy, config, log or (lambda line: None), volunteers, unwind, opening).run(progress)


def model_opening(scenario: Scenario, config: ProtocolConfig = ProtocolConfig()) -> bytes:
    """The state of a model replay of `scenario` once the accounts are funded and the opening
    trades are done (pickled: each replay that starts from it loads a copy of its own). Neither
    the ADL policy nor the volunteer step acts before the crash, so every replay of `scenario` under
    `config` (whatever its policy and volunteer step) may start from it."""
    replay = ModelReplay(scenario, QUEUE_PNL_LEVERAGE, config, lambda line: None)
    for phase in replay.setup_phases():
        phase()
    replay.model.arrays.add(replay.traders)  # the rows the keeper's first scan reads
    return pickle.dumps(_Opening(_made_for(scenario, config), replay.model, replay.vault, replay.engine, replay.block, replay.deposited,
                                 replay.vault_equity_start), protocol=pickle.HIGHEST_PROTOCOL)


def _made_for(scenario: Scenario, config: ProtocolConfig) -> tuple:
    """What an opening depends on: the scenario (its seed, crowd, trades and vault) and the
    config, less the volunteer step (which acts only in ADL rounds)."""
    return scenario.seed, len(scenario.traders), len(scenario.trades), scenario.vault_deposit, replace(config, volunteer_auctions=False)


@dataclass
class _Opening:
    """What `model_opening` keeps of a replay: what it was made for, the models and the replay's
    counters."""

    made_for: tuple
    model: TrackingModel
    vault: VaultModel
    engine: AdlModel
    block: int
    deposited: int
    vault_equity_start: int


class ModelReplay(Replay):
    """`Replay` on the reference model."""

    def __init__(self, scenario: Scenario, policy: int, config: ProtocolConfig, log: Callable[[str], None],
                 volunteers: bool = True, unwind: str = "profit", opening: bytes | None = None):
        super().__init__(scenario, log, volunteers, unwind)
        self.policy, self.config = policy, replace(config, volunteer_auctions=volunteers)
        self.opening = opening  # `model_opening(scenario, config)` to start from, if any
        self.vault_address = VAULT
        self.now = START
        self.walk_start = START
        self.block = 0  # the model's block number: only the oracle's per-block limit reads it

    def clock(self) -> int:
        return self.now

    def setup_phases(self) -> tuple:
        return (self.load_opening,) if self.opening is not None else super().setup_phases()

    def load_opening(self) -> None:
        """A copy of the shared opening, set to this replay's ADL policy and volunteer step (the
        owner's setters: what a deployment with them from the start would hold)."""
        opened = pickle.loads(self.opening)
        if opened.made_for != _made_for(self.scenario, self.config):
            raise ValueError("model_replay: the opening was made for another scenario or config")
        self.model, self.vault, self.engine = opened.model, opened.vault, opened.engine
        self.block, self.deposited, self.vault_equity_start = opened.block, opened.deposited, opened.vault_equity_start
        config, liquidation = self.config, self.model.liquidation
        for market in range(self.model.market_count):
            self.engine.set_policy(market, self.policy)
        liquidation.set_auction_params(liquidation.auction_premium, liquidation.auction_ramp, liquidation.auction_duration,
                                       liquidation.auction_min_notional, config.volunteer_auctions)
        self.build_keeper()

    def prepare_markets(self) -> None:
        self.model, self.vault, self.engine = build_model(self.config, self.scenario.markets, self.policy, self.now)
        self.build_keeper()

    def build_keeper(self) -> None:
        self.venue = ModelVenue(self.model, self.vault, self.clock)
        adl = ModelAdlExecutor(self.engine, self.clock)
        remember_checksummed(self.traders)  # scenario_keys checksummed them
        desk = AuctionDesk(self.venue, KEEPER, self.volunteers, self.unwind, log=self.log)
        self.keeper = Keeper(self.venue, KEEPER, self.liquidators, adl=adl, log=self.log, auctions=desk)

    def fund_accounts(self) -> None:
        for address, trader in zip(self.traders, self.scenario.traders):
            if trader.collateral > 0:
                self.model.deposit(address, trader.collateral)
                self.deposited += trader.collateral
        if self.scenario.vault_deposit:
            self.vault.deposit(self.depositor, self.scenario.vault_deposit, self.now)
            self.deposited += self.scenario.vault_deposit
        self.vault_equity_start = self.vault_equity()

    def open_positions(self) -> None:
        """The opening trades block by block of the run-up, each block at its marks."""
        expiry, nonce = self.now + ONE_YEAR, 0
        for block, trades in enumerate(self.scenario.trades_by_block()):
            self.push_prices(list(self.scenario.block_prices(block)))
            for trade in trades:
                buy = Order(self.traders[trade.buyer], trade.market, trade.size, trade.price, nonce, expiry)
                sell = Order(self.traders[trade.seller], trade.market, -trade.size, trade.price, nonce, expiry)
                self.model.settle_fill(buy, sell, trade.size, trade.price, self.now)
                nonce += 1

    def advance_to(self, seconds: int) -> None:
        self.now = max(self.now, self.walk_start + seconds)

    def push_prices(self, targets: Sequence[int]) -> None:
        model = self.model
        current = [model.latest_prices(m)[1] for m in range(len(targets))]
        for prices in price_updates(current, targets, model.max_block_move, model.max_window_move):
            self.block += 1  # each update in a block of its own, as on chain
            model.push_prices([(m, p, p) for m, p in enumerate(prices)], self.now, self.block)

    def vault_equity(self) -> int:
        return self.venue.vault_equity()

    def final_state(self) -> FinalState:
        model, now = self.model, self.now
        accounts = [*self.traders, self.vault_address]
        open_interest = []
        for market in range(model.market_count):
            sizes = [model.position(a, market).size for a in accounts]
            open_interest.append((model.long_open_interest.get(market, 0), model.short_open_interest.get(market, 0),
                                  sum(s for s in sizes if s > 0), -sum(s for s in sizes if s < 0)))
        held = model.total_held()
        return FinalState(
            held=held, deposited=model.total_deposited, withdrawn=model.total_withdrawn, custody=held,
            values=[model.account_value(a, now) for a in accounts], bankrupt=[model.bankrupt.get(a, False) for a in accounts],
            open_interest=open_interest,
        )
