"""Replays a crash scenario (backstop/sim/scenario.py) on a deployed protocol, on a local Anvil chain.

`replay_on_chain` funds the scenario's traders, fills the insurance vault, opens the scenario's
trades with signed orders, then walks the price path block by block; after each price update the
same `Keeper` as `ape run keeper` runs the waterfall (liquidation, vault, ADL). It returns the
figures the report needs (see `replay_on_chain`) and checks the design's invariants on chain at
the end.

Speed (1,000 traders, 48 steps, inside five minutes on two cores): everything goes through
`FastChain` (raw JSON-RPC, reads batched into one multicall), traders are impersonated instead of
signing transactions, independent transactions are mined a hundred to a block (on Anvil each
block costs more than the transactions in it, and more the longer the chain; price updates go one
to a block, as the oracle limits a block's move however many updates it holds), and all blocks of
a step share one timestamp. On ape's own Anvil every transaction is step-traced, which makes batches
of fills several times slower; `backstop.chain.anvil.PrivateAnvil` starts one without tracing (load
a state dump of a deployment into it, or deploy to it with
`APE_FOUNDRY_HOST=<its uri> ape run deploy`).
"""

from __future__ import annotations

from typing import Callable, Sequence

from eth_utils import to_checksum_address

from backstop.chain.deployment import MarketConfig
from backstop.chain.fast_chain import FastChain
from backstop.chain.trading import ONE_YEAR, OrderSigner
from backstop.keeper.auctions import AuctionDesk
from backstop.keeper.chain_venue import ChainVenue, send_in_blocks
from backstop.keeper.waterfall import AdlExecutor, Keeper
from backstop.sim.replay import FinalState, Progress, Replay, price_updates
from backstop.sim.scenario import Scenario

# Largest batch of fills in one `settle_fills` (the clearinghouse's MAX_FILLS).
FILLS_PER_TX = 64
# Gas for a full batch of fills, every trader's first position (about 200k per fill).
FILLS_GAS = 25_000_000
# Gas for a mint, an approval, a deposit or a price update.
FUNDING_GAS = 1_000_000


# ---------------------------------------------------------------- the replay

def replay_on_chain(chain: FastChain, deployment: dict, scenario: Scenario, keeper_address: str,
                    progress: Progress | None = None, adl: AdlExecutor | None = None,
                    log: Callable[[str], None] | None = None, keeper_acts: bool = True, step_pause: float = 0.0,
                    volunteers: bool = True, unwind: str = "profit") -> dict:
    """Replays `scenario` on the deployment (the dict of deployments/<network>.json) and returns the
    figures of `Replay.result`, with the invariants checked on chain after the last step.

    The chain must be an Anvil node (accounts are impersonated, balances and time are set);
    `keeper_address` needs the keeper role on the oracle, the clearinghouse and the ADL engine.
    The scenario's markets are listed, re-margined and re-priced on chain as needed.
    `progress(step, total, message)` is called once per price step; `log` gets the keeper's line
    per action. `keeper_acts` False leaves the waterfall to a keeper beside the replay, which
    `step_pause` seconds after each step give time to act. `volunteers`: whether ADL rounds open
    with a volunteer auction (set on chain by the owner); `unwind`: the keeper's unwind policy for
    the vault (backstop/keeper/auctions.py).
    """
    replay = ChainReplay(chain, deployment, scenario, keeper_address, adl, log or (lambda line: None), volunteers, unwind)
    replay.keeper_acts, replay.step_pause = keeper_acts, step_pause
    return replay.run(progress)


class ChainReplay(Replay):
    """`Replay` on the deployed contracts."""

    def __init__(self, chain: FastChain, deployment: dict, scenario: Scenario, keeper: str,
                 adl: AdlExecutor | None, log: Callable[[str], None], volunteers: bool = True, unwind: str = "profit"):
        super().__init__(scenario, log, volunteers, unwind)
        self.chain = chain
        self.c = {name: chain.contract(entry["address"], entry["abi"]) for name, entry in deployment["contracts"].items()}
        self.keeper_address = to_checksum_address(keeper)
        chain.enable_multicall()
        owner, market_count, oracle_keeper, liquidation_keeper = chain.read([
            self.c["clearinghouse"].owner.call(), self.c["clearinghouse"].market_count.call(),
            self.c["oracle"].is_keeper.call(self.keeper_address), self.c["liquidation"].is_keeper.call(self.keeper_address),
        ])
        if not (oracle_keeper and liquidation_keeper):
            raise ValueError(f"{self.keeper_address} needs the keeper role on the oracle and the liquidation engine to replay")
        self.owner, self.deployed_markets = owner, market_count
        self.vault_address = self.c["vault"].address
        self.deployment, self.adl = deployment, adl
        self.venue: ChainVenue | None = None
        self.walk_start = 0

    def prepare_markets(self) -> None:
        """Makes the chain's markets the scenario's: lists missing ones, sets the scenario's margins,
        moves the oracle to the first prices. All later blocks share a timestamp until the path
        moves time on (Anvil's block interval 0), so a step's actions all happen at its time."""
        chain, ch, oracle, vault = self.chain, self.c["clearinghouse"], self.c["oracle"], self.c["vault"]
        configurator = self.c["configurator"]
        chain.request("anvil_autoImpersonateAccount", [True])
        chain.set_block_interval(0)
        chain.request("evm_mine")
        txs = []
        for market_id, market in enumerate(self.scenario.markets):
            if market_id < self.deployed_markets:
                (params,) = chain.read([ch.markets.call(market_id)])
                if params[:2] != (market.initial_margin, market.maintenance_margin):
                    txs.append((self.owner, configurator.set_market_params.call(market_id, (market.initial_margin, market.maintenance_margin, *params[2:]))))
            else:
                config = MarketConfig(market.name, market.price, market.initial_margin, market.maintenance_margin)
                txs.append((self.owner, oracle.initialize_feed.call(market_id, market.price, market.price)))
                txs.append((self.owner, configurator.list_market.call(config.params())))
                txs.append((self.owner, vault.set_max_position.call(market_id, config.vault_max_position)))
        # The volunteer step as the replay asks (the owner's switch in the auction parameters).
        liquidation = self.c["liquidation"]
        params = chain.read([liquidation.auction_premium.call(), liquidation.auction_ramp.call(), liquidation.auction_duration.call(),
                             liquidation.auction_min_notional.call(), liquidation.volunteer_auctions.call()])
        if params[4] != self.volunteer_step:
            txs.append((self.owner, liquidation.set_auction_params.call(*params[:4], self.volunteer_step)))
        self._send_all(txs, FUNDING_GAS, "market set-up")
        self.push_prices([market.price for market in self.scenario.markets])
        self.venue = ChainVenue(chain, self.deployment)
        desk = AuctionDesk(self.venue, self.keeper_address, self.volunteers, self.unwind, log=self.log)
        self.keeper = Keeper(self.venue, self.keeper_address, self.liquidators, adl=self.adl, log=self.log, auctions=desk)

    def fund_accounts(self) -> None:
        """Gas money and collateral for every trader; the vault's deposit from its depositor."""
        chain, token, pool, vault = self.chain, self.c["token"], self.c["pool"], self.c["vault"]
        everyone = [*self.traders, self.depositor]
        chain.batch([("anvil_setBalance", [account, hex(10**21)]) for account in everyone])
        minter, self.balance_before = chain.read([token.owner.call(), token.balanceOf.call(pool.address)])
        funded = [(a, t.collateral) for a, t in zip(self.traders, self.scenario.traders) if t.collateral > 0]
        # Two waves: a deposit needs the minted tokens, and blocks order transactions per sender only.
        minted = [(minter, token.mint.call(account, amount)) for account, amount in funded]
        minted += [(account, token.approve.call(pool.address, amount)) for account, amount in funded]
        deposits = [(account, pool.deposit.call(amount)) for account, amount in funded]
        if self.scenario.vault_deposit:
            amount = self.scenario.vault_deposit
            minted += [(minter, token.mint.call(self.depositor, amount)), (self.depositor, token.approve.call(vault.address, amount))]
            deposits.append((self.depositor, vault.deposit.call(amount, self.depositor)))
        self._send_all(minted, FUNDING_GAS, "minting")
        self._send_all(deposits, FUNDING_GAS, "deposits")
        self.deposited = sum(amount for _, amount in funded) + self.scenario.vault_deposit
        self.vault_equity_start = self.venue.vault_equity()

    def open_positions(self) -> None:
        """The scenario's opening trades as signed orders, block by block of the run-up: the
        oracle moves to the block's marks, then its fills settle in batches of up to 64."""
        chain, ch = self.chain, self.c["clearinghouse"]
        _, now = chain.block()
        signer = OrderSigner(int(chain.request("eth_chainId"), 16), ch.address, dict(self.keys))
        for block, trades in enumerate(self.scenario.trades_by_block()):
            self.push_prices(list(self.scenario.block_prices(block)))
            fills = [signer.fill(self.traders[t.buyer], self.traders[t.seller], t.market, t.size, t.price, now + ONE_YEAR).abi
                     for t in trades]
            batches = [(self.keeper_address, ch.settle_fills.call(fills[start:start + FILLS_PER_TX]))
                       for start in range(0, len(fills), FILLS_PER_TX)]
            self._send_all(batches, FILLS_GAS, f"opening trades of run-up block {block} (batches of {FILLS_PER_TX} fills)")
        _, self.walk_start = chain.block()

    def advance_to(self, seconds: int) -> None:
        _, now = self.chain.block()
        if self.walk_start + seconds > now:
            self.chain.mine_at(self.walk_start + seconds)

    def push_prices(self, targets: Sequence[int]) -> None:
        """The updates to `targets`, each in a block of its own (the oracle measures every update of
        a block against the price the block started with)."""
        oracle = self.c["oracle"]
        max_block_move, max_window_move, *current = self.chain.read(
            [oracle.max_block_move.call(), oracle.max_window_move.call()] + [oracle.latest_prices.call(m) for m in range(len(targets))]
        )
        for prices in price_updates([mark for _, mark in current], targets, max_block_move, max_window_move):
            self._send_all([(self.keeper_address, oracle.push_prices.call([(m, p, p) for m, p in enumerate(prices)]))], FUNDING_GAS, "price update")

    def vault_equity(self) -> int:
        return self.venue.vault_equity()

    def final_state(self) -> FinalState:
        chain, ch, pool, token = self.chain, self.c["clearinghouse"], self.c["pool"], self.c["token"]
        accounts = [*self.traders, self.vault_address]
        markets = range(len(self.scenario.markets))
        calls = [pool.total_held.call(), pool.total_deposited.call(), pool.total_withdrawn.call(), token.balanceOf.call(pool.address)]
        calls += [ch.account_value.call(a) for a in accounts] + [ch.bankrupt.call(a) for a in accounts]
        for market in markets:
            calls += [ch.long_open_interest.call(market), ch.short_open_interest.call(market)]
            calls += [ch.positions.call(a, market) for a in accounts]
        got = iter(chain.read(calls))
        held, deposited, withdrawn, custody = next(got), next(got), next(got), next(got)
        values = [next(got) for _ in accounts]
        bankrupt = [next(got) for _ in accounts]
        open_interest = []
        for _ in markets:
            long_side, short_side = next(got), next(got)
            sizes = [next(got)[0] for _ in accounts]
            open_interest.append((long_side, short_side, sum(s for s in sizes if s > 0), -sum(s for s in sizes if s < 0)))
        return FinalState(held, deposited, withdrawn, custody, values, bankrupt, open_interest)

    def _send_all(self, txs: list, gas: int, what: str) -> None:
        """Mines `txs` (see `send_in_blocks`); the first revert ends the replay, naming it."""
        for index, outcome in enumerate(send_in_blocks(self.chain, txs, gas)):
            if isinstance(outcome, Exception):
                raise RuntimeError(f"{what}: transaction {index} ({txs[index][1].function.name}) reverted: {outcome.reason}")
