"""Replays a crash scenario on the reference model: the same phases, keeper and figures as the chain
replay (backstop/sim/chain_replay.py), without a chain, so it reaches crowds a chain replay cannot
(10,000 traders in 3 to 40 s per policy).

`sweep_on_model` replays one scenario under several policies, in parallel processes.
"""

from __future__ import annotations

import multiprocessing
from dataclasses import replace
from typing import Callable, Sequence

from backstop.chain.deployment import ProtocolConfig
from backstop.keeper.adl_executor import ModelAdlExecutor
from backstop.keeper.auctions import AuctionDesk
from backstop.keeper.model_venue import VAULT, ModelVenue, build_model
from backstop.keeper.waterfall import USDC, Keeper, remember_checksummed
from backstop.model.adl import POLICY_NAMES
from backstop.model.protocol import Order
from backstop.sim.replay import FinalState, Progress, Replay, price_updates, scenario_keys
from backstop.sim.scenario import Scenario

START = 1_750_000_000  # the model's clock when the replay begins (any time; only differences matter)
KEEPER = "0x" + "ee" * 20  # the keeper's address in the model
ONE_YEAR = 365 * 24 * 3600


def replay_on_model(scenario: Scenario, policy: int, config: ProtocolConfig = ProtocolConfig(),
                    progress: Progress | None = None, log: Callable[[str], None] | None = None,
                    volunteers: bool = True, unwind: str = "profit") -> dict:
    """Replays `scenario` on the model with every market on ADL `policy`; the figures of
    `Replay.result`. `volunteers`: whether ADL rounds open with a volunteer auction (whatever
    `config.volunteer_auctions` says); `unwind`: the keeper's unwind policy for the vault
    (backstop/keeper/auctions.py)."""
    return ModelReplay(scenario, policy, config, log or (lambda line: None), volunteers, unwind).run(progress)


# Pro-rata and risk-aware rounds touch every winner, queue rounds a few: the slow ones first,
# so two processes finish together.
_HEAVY_FIRST = (2, 3, 0, 1)
_SWEEP: tuple | None = None  # (scenario, config) for forked workers, which inherit it


def sweep_on_model(scenario: Scenario, policies: Sequence[int], config: ProtocolConfig = ProtocolConfig(),
                   processes: int = 2, progress: Progress | None = None, volunteers: bool = True,
                   unwind: str = "profit") -> dict[int, dict]:
    """`replay_on_model(scenario, policy, config)` for each policy: {policy: result}, in the order
    of `policies`. Up to `processes` replays run at once, each in its own process (the results
    are the same as one after the other; the traders' keys are derived once, before the fork).
    `progress(done, len(policies), note)` is called as each policy finishes."""
    global _SWEEP
    policies = list(dict.fromkeys(policies))
    report = progress or (lambda done, total, note: None)
    results: dict[int, dict] = {}
    if processes <= 1 or len(policies) <= 1:
        for policy in policies:
            results[policy] = replay_on_model(scenario, policy, config, volunteers=volunteers, unwind=unwind)
            report(len(results), len(policies), f"{POLICY_NAMES.get(policy, policy)} done")
        return results
    scenario_keys(scenario.seed, len(scenario.traders))  # cached: forked workers inherit the keys
    scenario_keys(scenario.seed, 1, role="vault depositor")
    order = sorted(policies, key=lambda p: _HEAVY_FIRST.index(p) if p in _HEAVY_FIRST else len(_HEAVY_FIRST))
    workers = min(processes, len(order))
    if "fork" in multiprocessing.get_all_start_methods():
        _SWEEP = (scenario, config, volunteers, unwind)
        try:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                for policy, result in pool.imap_unordered(_replay_forked, order, chunksize=1):
                    results[policy] = result
                    report(len(results), len(policies), f"{POLICY_NAMES.get(policy, policy)} done")
        finally:
            _SWEEP = None
    else:
        with multiprocessing.get_context().Pool(workers) as pool:
            for policy, result in pool.imap_unordered(_replay_spawned, [(scenario, policy, config, volunteers, unwind) for policy in order],
                                                      chunksize=1):
                results[policy] = result
                report(len(results), len(policies), f"{POLICY_NAMES.get(policy, policy)} done")
    return {policy: results[policy] for policy in policies}


def _replay_forked(policy: int) -> tuple[int, dict]:
    scenario, config, volunteers, unwind = _SWEEP
    return policy, replay_on_model(scenario, policy, config, volunteers=volunteers, unwind=unwind)


def _replay_spawned(arguments: tuple) -> tuple[int, dict]:
    scenario, policy, config, volunteers, unwind = arguments
    return policy, replay_on_model(scenario, policy, config, volunteers=volunteers, unwind=unwind)


class ModelReplay(Replay):
    """`Replay` on the reference model."""

    def __init__(self, scenario: Scenario, policy: int, config: ProtocolConfig, log: Callable[[str], None],
                 volunteers: bool = True, unwind: str = "profit"):
        super().__init__(scenario, log, volunteers, unwind)
        self.policy, self.config = policy, replace(config, volunteer_auctions=volunteers)
        self.vault_address = VAULT
        self.now = START
        self.walk_start = START

    def clock(self) -> int:
        return self.now

    def prepare_markets(self) -> None:
        self.model, self.vault, self.engine = build_model(self.config, self.scenario.markets, self.policy, self.now)
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
        self.vault_equity_start = self.vault_equity() / USDC

    def open_positions(self) -> None:
        expiry = self.now + ONE_YEAR
        for nonce, trade in enumerate(self.scenario.trades):
            buy = Order(self.traders[trade.buyer], trade.market, trade.size, trade.price, nonce, expiry)
            sell = Order(self.traders[trade.seller], trade.market, -trade.size, trade.price, nonce, expiry)
            self.model.settle_fill(buy, sell, trade.size, trade.price, self.now)

    def advance_to(self, seconds: int) -> None:
        self.now = max(self.now, self.walk_start + seconds)

    def push_prices(self, targets: Sequence[int]) -> None:
        current = [self.model.latest_prices(m)[1] for m in range(len(targets))]
        for prices in price_updates(current, targets, self.model.max_move):
            self.model.push_prices([(m, p, p) for m, p in enumerate(prices)], self.now)

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
