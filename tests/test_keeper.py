"""The keeper's waterfall (backstop/keeper/waterfall.py) and the on-chain crash replay
(backstop/sim/chain_replay.py).

Both run on a private Anvil holding a copy of the session's deployment (ape's own node traces every
step, several times slower for batches), as tests/test_state_machine.py does. A three-trader story,
set up once by the replay's own phases, is reset to its snapshot before each keeper test: alice is
long 1 BTC at 100k on $10k (10x), bob is the short side, a liquidator has $1M in the pool and the
vault $100k. Every block of a test shares one timestamp, so no funding accrues and the numbers are
exact: at 94k alice is worth $4,000, below maintenance ($4,700) and above the backstop line
($3,133); at 85k she is $5,000 under water.
"""

import random

import pytest

from backstop.chain.anvil import private_chain
from backstop.chain.deployment import deployment_document
from backstop.keeper.chain_venue import ChainVenue
from backstop.keeper.waterfall import Keeper
from backstop.sim.chain_replay import ChainReplay, replay_on_chain
from backstop.sim.replay import scenario_keys
from backstop.sim.scenario import OpeningTrade, PriceStep, Scenario, ScenarioMarket, Trader, generate
from conftest import BTC, USDC, WAD

MARKETS = (
    ScenarioMarket("BTC-PERP", 100_000 * WAD, WAD // 10, WAD // 20),
    ScenarioMarket("ETH-PERP", 4_000 * WAD, WAD // 10, WAD // 20),
    ScenarioMarket("SOL-PERP", 200 * WAD, WAD // 5, WAD // 10),
    ScenarioMarket("DOGE-PERP", WAD // 4, WAD // 5, WAD // 10),  # not in the deployment: the replay lists it
)
FIRST_PRICES = [market.price for market in MARKETS]
STORY = Scenario(
    seed=7,
    markets=MARKETS,
    traders=(Trader("crowded_long", 10_000 * USDC), Trader("market_maker", 200_000 * USDC), Trader("liquidator", 1_000_000 * USDC)),
    trades=(OpeningTrade(BTC, buyer=0, seller=1, size=WAD, price=100_000 * WAD),),
    path=(),
    vault_deposit=100_000 * USDC,
)


def synthetic_scenario(traders: int, steps: int, seed: int = 1) -> Scenario:
    """A crash built by hand until the scenario generator exists: crowded longs at 2x up to 9.5x
    (4.5x where initial margin is 20%), market makers short against them at 2x, 5% liquidators
    with deep pockets; BTC falls 15%, ETH 30%, SOL 60%, DOGE 65% over two thirds of the path, by
    the same ratio every step (at most 23% a step: the default oracle allows 25% a window), and
    recovers a third of the fall in log price; liquidation depth is thin, $50k per market per step."""
    rng = random.Random(seed)
    liquidators = max(1, traders // 20)
    makers = max(1, traders // 4)
    longs = traders - liquidators - makers
    kinds, collateral, trades, maker_notional = [], [], [], [0] * makers
    for buyer in range(longs):
        market = rng.randrange(len(MARKETS))
        deposit = rng.randrange(1_000, 20_000) * USDC
        leverage = rng.uniform(2, 9.5 if MARKETS[market].initial_margin == WAD // 10 else 4.5)
        notional = int(deposit * leverage)
        seller = longs + buyer % makers
        maker_notional[buyer % makers] += notional
        trades.append(OpeningTrade(market, buyer, seller, notional * 10**30 // MARKETS[market].price, MARKETS[market].price))
        kinds.append("crowded_long")
        collateral.append(deposit)
    kinds += ["market_maker"] * makers + ["liquidator"] * liquidators
    collateral += [max(notional // 2, 10_000 * USDC) for notional in maker_notional] + [2_000_000 * USDC] * liquidators
    bottom = (0.85, 0.70, 0.40, 0.35)
    path = []
    for step in range(steps):
        # Down in a straight line (in log price) to the bottom at two thirds of the path, then a third of the way back.
        turn = 2 * steps // 3
        depth = (step + 1) / turn if step < turn else 1 - (step + 1 - turn) / (steps - turn) / 3
        prices = tuple(int(m.price * low**depth) for m, low in zip(MARKETS, bottom))
        path.append(PriceStep(time=300 * (step + 1), prices=prices, liquidation_depth=(50_000 * USDC,) * len(MARKETS)))
    return Scenario(seed, MARKETS, tuple(Trader(k, c) for k, c in zip(kinds, collateral)), tuple(trades), tuple(path),
                    vault_deposit=max(100_000, traders * 2_000) * USDC)


class AdlStub:
    """Stands in for the ADL executor: remembers whom it was given."""

    def __init__(self):
        self.accounts = []

    def groups(self, accounts):
        return [(account, []) for account in accounts]

    def resolve(self, account, members=()):
        self.accounts.append(account)
        return {"deficit": 0, "notional_closed": 0, "winners_hit": 0}, []

    def finish_due(self):
        return []


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def deployed_state(chain, protocol):
    """The session's chain, deployment included, as an Anvil state dump."""
    return chain.provider.make_request("anvil_dumpState", [])


def private_node(state):
    with private_chain(state) as fast:
        yield fast


@pytest.fixture(scope="module")
def node(deployed_state):
    """A private Anvil with the session's deployment copied into it, for the story."""
    yield from private_node(deployed_state)


@pytest.fixture
def clean_node(deployed_state):
    """Another one, for a replay that must find the markets empty."""
    yield from private_node(deployed_state)


@pytest.fixture(scope="module")
def deployment(chain, protocol, config):
    return deployment_document(protocol, chain.chain_id, config)


@pytest.fixture(scope="module")
def story(node, deployment, keeper):
    """The story's accounts funded and alice's long open, through the replay's own phases."""
    replay = ChainReplay(node, deployment, STORY, keeper.address, adl=None, log=lambda line: None)
    replay.prepare_markets()
    replay.fund_accounts()
    replay.open_positions()
    return replay


@pytest.fixture
def fresh(story, node):
    """The story, rolled back after the test."""
    snapshot = node.snapshot()
    yield story
    node.revert(snapshot)


@pytest.fixture
def venue(fresh, node, deployment):
    return ChainVenue(node, deployment)


def events_since(venue, block, name):
    """The waterfall's events (the liquidation engine's) of that name since `block`."""
    logs = venue.chain.request("eth_getLogs", [{"address": venue.liquidation.address, "fromBlock": hex(block + 1), "toBlock": "latest"}])
    return [fields for event, fields in venue.liquidation_events.decode(logs) if event == name]


# ---------------------------------------------------------------- the waterfall, layer by layer

def test_keeper__liquidates_an_account_below_maintenance_through_the_market(fresh, venue, node, keeper):
    alice, bob, liquidator = fresh.traders
    fresh.push_prices([94_000 * WAD, *FIRST_PRICES[1:]])
    lines = []
    bot = Keeper(venue, keeper.address, [liquidator], log=lines.append)
    block, _ = node.block()

    report = bot.run_once(fresh.traders)

    (event,) = events_since(venue, block, "Liquidation")
    assert (event["account"], event["liquidator"], event["market"]) == (alice, liquidator, BTC)
    assert (event["size"], event["price"], event["discount"], event["penalty"]) == (WAD, 94_000 * WAD, 940 * USDC, 940 * USDC)
    assert report.liquidated == {BTC: 94_000 * USDC} and report.liquidated_accounts == [alice]
    assert not report.backstopped and not report.refusals and not report.failures
    ch = venue.clearinghouse
    alice_size, liquidator_size, alice_value, vault_value = node.read([
        ch.positions.call(alice, BTC), ch.positions.call(liquidator, BTC), ch.account_value.call(alice), ch.account_value.call(venue.vault),
    ])
    assert (alice_size[0], liquidator_size[:2]) == (0, (WAD, 94_000 * WAD))
    assert alice_value == (10_000 - 6_000 - 940 - 940) * USDC and vault_value == (100_000 + 940) * USDC
    assert f"liquidated {alice} market 0: $94,000.00 to {liquidator} (penalty $940.00)" in lines


def test_keeper__without_market_depth_the_vault_takes_the_account_over(fresh, venue, node, keeper):
    alice, bob, liquidator = fresh.traders
    fresh.push_prices([94_000 * WAD, *FIRST_PRICES[1:]])
    bot = Keeper(venue, keeper.address, [liquidator], log=lambda line: None)
    block, _ = node.block()

    report = bot.run_once(fresh.traders, liquidation_depth={BTC: 90_000 * USDC})  # less than alice's $94k

    (takeover,) = events_since(venue, block, "Takeover")
    assert (takeover["account"], takeover["value"], takeover["markets"]) == (alice, 4_000 * USDC, 1)
    assert not events_since(venue, block, "Liquidation")
    assert report.backstopped == {BTC: 94_000 * USDC} and report.backstopped_accounts == [alice]
    ch = venue.clearinghouse
    vault_size, vault_value = node.read([ch.positions.call(venue.vault, BTC), ch.account_value.call(venue.vault)])
    assert vault_size[0] == WAD and vault_value == 104_000 * USDC


def test_keeper__a_deficit_beyond_the_vaults_allowance_is_refused_flagged_and_handed_to_adl(fresh, venue, node, owner, keeper):
    alice, bob, liquidator = fresh.traders
    vault = fresh.c["vault"]
    assert node.send(owner.address, vault.set_risk_limits.call(5 * WAD, 1_000 * USDC, 5_000 * USDC)) is None
    fresh.push_prices([85_000 * WAD, *FIRST_PRICES[1:]])
    adl = AdlStub()
    bot = Keeper(venue, keeper.address, [liquidator], adl=adl, log=lambda line: None)

    report = bot.run_once(fresh.traders)

    assert report.refusals == [(alice, "loss above the vault's allowance")]
    assert report.bankrupt == {alice: 5_000 * USDC} and adl.accounts == [alice]
    assert node.read([venue.clearinghouse.bankrupt.call(alice)]) == [True]
    # Next pass: already flagged and still beyond the allowance, it goes to ADL without a takeover attempt.
    sent = node.sent
    again = bot.run_once(fresh.traders)
    assert again.refusals == [] and adl.accounts == [alice, alice] and node.sent == sent + len(MARKETS)  # the funding accruals only
    # Without an executor the account is reported as waiting for ADL.
    lines = []
    pending = Keeper(venue, keeper.address, [liquidator], log=lines.append).run_once(fresh.traders)
    assert pending.adl_pending == [alice] and f"ADL pending: {alice} (deficit $5,000.00)" in lines
    # Once the price is back, the flag is lifted so that the account is not frozen for good.
    fresh.push_prices(FIRST_PRICES)
    recovered = Keeper(venue, keeper.address, [liquidator], log=lambda line: None).run_once(fresh.traders)
    assert recovered.cleared == [alice] and node.read([venue.clearinghouse.bankrupt.call(alice)]) == [False]


def test_chain_venue__discovers_accounts_from_position_updates(fresh, venue):
    alice, bob, _ = fresh.traders
    assert venue.discover_accounts(0) == [alice, bob]


# ---------------------------------------------------------------- the replay end to end

def test_replay_on_chain__small_crash_end_to_end_keeps_the_invariants(clean_node, deployment, keeper):
    scenario = synthetic_scenario(traders=10, steps=6)
    ticks = []

    result = replay_on_chain(clean_node, deployment, scenario, keeper.address, progress=lambda step, total, message: ticks.append((step, total)))

    assert ticks == [(step, 6) for step in range(1, 7)]
    assert [(i["name"], i["held"]) for i in result["invariants"] if not i["held"]] == []
    assert {key: result["scenario"][key] for key in ("seed", "traders", "steps", "run_up_blocks", "markets")} == {
        "seed": 1, "traders": 10, "steps": 6, "run_up_blocks": 0, "markets": ["BTC-PERP", "ETH-PERP", "SOL-PERP", "DOGE-PERP"]}
    assert result["times"] == [300 * (step + 1) for step in range(6)] and len(result["prices"]) == len(result["vault_equity"]) == 6
    totals, layers = result["totals"], result["layers_by_step"]
    for layer in ("liquidated", "backstopped", "adl_closed", "adl_absorbed"):
        assert totals[layer] == sum(step[layer] for step in layers)
    # The crash reaches every layer: liquidations, takeovers and accounts the vault cannot save.
    assert totals["liquidated"] > 0 and totals["backstopped"] > 0 and totals["accounts_liquidated"] > 0
    assert result["vault_equity_start"] == scenario.vault_deposit
    assert totals["vault_pnl"] == result["vault_equity"][-1] - scenario.vault_deposit
    # who paid: every dollar accounted for, to the unit
    assert result["who_paid"]["total"]["pnl"] == 0 and result["who_paid"]["insurance_vault"]["pnl"] == totals["vault_pnl"]


def test_replay_on_chain__generated_crash_keeps_the_invariants(clean_node, deployment, keeper):
    result = replay_on_chain(clean_node, deployment, generate(traders=20, seed=3, steps=8), keeper.address)

    assert [(i["name"], i["detail"]) for i in result["invariants"] if not i["held"]] == []
    assert len(result["layers_by_step"]) == len(result["vault_equity"]) == 8


def test_replay_on_chain__volunteers_and_the_vaults_unwind_agree_with_the_model(clean_node, deployment, keeper, config):
    """Issue 15's auctions end to end: a crash whose small vault refuses enough accounts for ADL,
    under the queue, with volunteers and the keeper's unwind, on chain and on the model: the same
    rounds, takes and premiums to the unit."""
    import dataclasses

    from backstop.model.adl import QUEUE_PNL_LEVERAGE
    from backstop.keeper.adl_executor import ChainAdlExecutor
    from backstop.sim.model_replay import replay_on_model
    from backstop.sim.policy_study import EXACT_FIGURES, policy_metrics

    scenario = generate(traders=60, seed=0, steps=24)
    small = dataclasses.replace(
        config, vault_loss_cap_per_event=config.vault_loss_cap_per_event // 50, vault_loss_cap_per_day=config.vault_loss_cap_per_day // 50,
        markets=tuple(dataclasses.replace(m, vault_max_position=m.vault_max_position // 50) for m in config.markets),
    )
    owner = deployment["owner"] if "owner" in deployment else clean_node.read([clean_node.contract(
        deployment["contracts"]["vault"]["address"], deployment["contracts"]["vault"]["abi"]).owner.call()])[0]
    vault = clean_node.contract(deployment["contracts"]["vault"]["address"], deployment["contracts"]["vault"]["abi"])
    clean_node.request("anvil_impersonateAccount", [owner])
    for call in [vault.set_risk_limits.call(small.vault_max_leverage, small.vault_loss_cap_per_event, small.vault_loss_cap_per_day),
                 *[vault.set_max_position.call(m, market.vault_max_position) for m, market in enumerate(small.markets)]]:
        assert clean_node.send(owner, call) is None
    watched = lambda: [address for address, _ in scenario_keys(scenario.seed, len(scenario.traders))]  # noqa: E731
    adl = ChainAdlExecutor(clean_node, deployment, keeper.address, accounts=watched)
    engine = clean_node.contract(deployment["contracts"]["adl_engine"]["address"], deployment["contracts"]["adl_engine"]["abi"])
    assert clean_node.send(owner, engine.set_policy.call(0, QUEUE_PNL_LEVERAGE)) is None

    on_chain = replay_on_chain(clean_node, deployment, scenario, keeper.address, adl=adl)
    on_model = replay_on_model(scenario, QUEUE_PNL_LEVERAGE, small)

    assert [i["name"] for i in on_chain["invariants"] if not i["held"]] == []
    chain_row, model_row = policy_metrics(QUEUE_PNL_LEVERAGE, on_chain), policy_metrics(QUEUE_PNL_LEVERAGE, on_model)
    assert {name: chain_row[name] for name in EXACT_FIGURES} == {name: model_row[name] for name in EXACT_FIGURES}
    auctions = ("volunteer_taken", "volunteer_premium", "unwound", "unwind_premium", "vault_open_notional", "adl_closed")
    assert {k: on_chain["totals"][k] for k in auctions} == {k: on_model["totals"][k] for k in auctions}
    assert on_model["adl_rounds"] and on_model["totals"]["volunteer_taken"] > 0
