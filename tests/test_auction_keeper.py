"""The keeper's auction step (backstop/keeper/auctions.py) and the crash replay with volunteers
(issue 15), on the reference model. No chain: the contracts' auctions are held to the model by
tests/test_auction.py.

A hand-made story first, driven through the replay's own phases so that every number can be
written out: alice is long 1 BTC at 100k on $12k against bob (a market maker, short 1 BTC), the
vault is empty (it refuses every takeover), and a liquidator has $6k. At 86k alice is worth
-$2,050 ($50 of it her taker fee): the keeper hands her to the vault, which refuses; she is
flagged and her ADL round opens with a volunteer auction of her long (5% over 600 s, 900 s long).
The keeper passes once a minute.
"""

from __future__ import annotations

import dataclasses

import pytest

from backstop.chain.deployment import ProtocolConfig
from backstop.keeper.auctions import AuctionDesk, Volunteer
from backstop.model.adl import QUEUE_PNL_LEVERAGE, RISK_AWARE
from backstop.sim.model_replay import ModelReplay, replay_on_model
from backstop.sim.replay import VOLUNTEER_THRESHOLDS
from backstop.sim.scenario import DEFAULT_MARKETS, OpeningTrade, Scenario, Trader, generate

WAD = 10**18
USDC = 10**6
BTC = 0
STORY = Scenario(
    seed=11,
    markets=DEFAULT_MARKETS,
    traders=(Trader("crowded_long", 12_000 * USDC), Trader("market_maker", 40_000 * USDC), Trader("liquidator", 6_000 * USDC)),
    trades=(OpeningTrade(BTC, buyer=0, seller=1, size=WAD, price=100_000 * WAD),),
    path=(),
    vault_deposit=0,
)
PRICES = [86_000 * WAD] + [market.price for market in DEFAULT_MARKETS[1:]]


def story(volunteers: bool = True, unwind: str = "profit") -> ModelReplay:
    """The story up to alice's round: opened at t = 0 (her auction starts then) when `volunteers`."""
    replay = ModelReplay(STORY, QUEUE_PNL_LEVERAGE, ProtocolConfig(), lambda line: None, volunteers, unwind)
    replay.prepare_markets()
    replay.fund_accounts()
    replay.open_positions()
    replay.push_prices(PRICES)
    report = replay.keeper.run_once(replay.traders)
    assert report.refusals and list(report.bankrupt) == [replay.traders[0]]
    return replay


def pass_at(replay: ModelReplay, seconds: int):
    """The keeper's pass `seconds` after the round opened, prices unchanged."""
    replay.advance_to(seconds)
    replay.push_prices(PRICES)
    return replay.keeper.run_once(replay.traders)


def test_story__volunteers_take_from_their_threshold_within_their_margin_and_nobody_is_force_closed():
    replay = story()
    alice, bob, liquidator = replay.traders
    engine, model = replay.engine, replay.model
    assert engine.round(alice).auction_end == replay.now + 900
    # 0.5%, 1%, 1.5% off the mark: below both thresholds, nobody takes.
    for seconds in (60, 120, 180):
        assert pass_at(replay, seconds).auction_takes == []
    # 2% (240 s): the liquidator's threshold. Half its free margin ($6k, no position) carries
    # 3,000 / 8,600 BTC at 10% initial margin of the 86k mark.
    report = pass_at(replay, 240)
    [take] = report.auction_takes
    assert (take.taker, take.volunteer, take.price) == (liquidator, True, 84_280 * WAD)
    assert take.size == 3_000 * USDC * 10**30 // (8_600 * WAD)
    assert take.premium == take.size * (86_000 - 84_280) * WAD // 10**30
    # 2.5% (300 s): the liquidator again, with half of what its margin has left (its premium counts).
    health = model.account_health(liquidator, replay.now)
    [again] = pass_at(replay, 300).auction_takes
    assert again.taker == liquidator and again.size == (health.value - health.initial_margin) // 2 * 10**30 // (8_600 * WAD)
    # 3% (360 s): the liquidator's third helping first, then bob, short 1 BTC, buys back what is
    # left: it shrinks his short, no margin needed.
    report = pass_at(replay, 360)
    [third, take_bob] = report.auction_takes
    assert (third.taker, take_bob.taker, take_bob.price) == (liquidator, bob, 83_420 * WAD)
    assert take.size + again.size + third.size + take_bob.size == WAD
    assert model.position(bob, BTC).size == -WAD + take_bob.size and model.position(liquidator, BTC).size == WAD - take_bob.size
    assert model.position(alice, BTC).size == 0 and model.liquidation.auction(alice, BTC).lot == 0
    # The auction sold out; the round charges the rest at once: nobody is force-closed and D grew
    # by the premiums; bob, still short, pays the haircut.
    assert engine.round(alice).markets_left == 0
    [closed] = engine.closed_rounds
    premiums = take.premium + again.premium + third.premium + take_bob.premium
    assert closed.notional_closed == 0 and closed.deficit == 2_050 * USDC + premiums == closed.haircuts
    assert [hit.winner for hit in closed.hits] == [bob]
    assert model.account_value(alice, replay.now) == 0


def test_story__without_the_volunteer_step_the_round_force_closes_at_once():
    replay = story(volunteers=False)
    alice, bob, _ = replay.traders
    [closed] = replay.engine.closed_rounds
    assert closed.notional_closed == 86_000 * USDC and closed.deficit == 2_050 * USDC
    assert replay.model.position(bob, BTC).size == 0


def test_story__a_round_nobody_volunteers_for_is_force_closed_when_its_auction_ends():
    replay = story()
    alice, _, _ = replay.traders
    replay.keeper.auctions.volunteers = []  # nobody takes
    for seconds in range(60, 900, 60):
        pass_at(replay, seconds)
        assert replay.engine.round(alice).markets_left  # the round waits for its auction
    report = pass_at(replay, 900)
    [metrics] = report.adl_rounds
    assert metrics["notional_closed"] == 86_000 * USDC and metrics["deficit"] == 2_050 * USDC and not metrics["fallback"]
    assert replay.keeper.adl.open_accounts() == []


def test_story__an_account_in_an_open_round_waits_for_it():
    """While alice's auction runs the keeper neither hands her to the vault again nor opens a
    second round; she is reported as pending."""
    replay = story()
    alice = replay.traders[0]
    report = pass_at(replay, 60)
    assert report.failures == [] and report.refusals == [] and report.adl_pending == [alice]


# ---------------------------------------------------------------- the vault's unwind

def vault_long_story(unwind: str) -> ModelReplay:
    """alice taken over by a vault with $50k: it holds her 1 BTC long at 94k."""
    scenario = dataclasses.replace(STORY, traders=(STORY.traders[0], STORY.traders[1], Trader("liquidator", 100_000 * USDC)),
                                   vault_deposit=50_000 * USDC)
    replay = ModelReplay(scenario, QUEUE_PNL_LEVERAGE, ProtocolConfig(), lambda line: None, True, unwind)
    replay.prepare_markets()
    replay.fund_accounts()
    replay.open_positions()
    replay.push_prices([90_000 * WAD] + PRICES[1:])
    report = replay.keeper.run_once(replay.traders, liquidation_depth={})
    assert report.backstopped_accounts == [replay.traders[0]]
    return replay


@pytest.mark.parametrize("unwind", ["profit", "targets", "none"])
def test_unwind__the_vault_holds_a_position_under_water_unless_a_policy_sells_it(unwind):
    replay = vault_long_story(unwind)
    vault = replay.vault_address
    for seconds in range(60, 1200, 60):
        replay.advance_to(seconds)
        replay.push_prices([88_000 * WAD] + PRICES[1:])
        assert replay.keeper.run_once(replay.traders).unwinds == []
    assert replay.model.position(vault, BTC).size == WAD


def test_unwind__profit_offers_once_the_mark_is_back_above_the_entry_and_cancels_below_it():
    replay = vault_long_story("profit")
    vault, liquidator = replay.vault_address, replay.traders[2]
    entry = replay.model.position(vault, BTC).entry_price

    def step(seconds, price):
        replay.advance_to(seconds)
        replay.push_prices([price] + PRICES[1:])
        return replay.keeper.run_once(replay.traders)

    report = step(60, entry + WAD)  # a dollar above its entry: the whole position is offered
    assert [(market, size) for market, size, _ in report.unwinds] == [(BTC, WAD)]
    report = step(120, entry - WAD)  # back below before anyone took: the keeper cancels
    assert report.unwinds_cancelled == [(BTC, WAD)] and replay.model.liquidation.auction(vault, BTC).lot == 0
    step(180, entry + 2_000 * WAD)
    for seconds in range(240, 480, 60):
        report = step(seconds, entry + 2_000 * WAD)
    # 2% off the mark (240 s after the offer): the liquidator takes it all; the vault sold above
    # its entry less the premium.
    assert replay.model.position(vault, BTC).size == 0 and replay.model.position(liquidator, BTC).size == WAD


# ---------------------------------------------------------------- the crash replay

@pytest.fixture(scope="module")
def crash():
    return generate(1000, seed=0)


@pytest.fixture(scope="module")
def runs(crash):
    """The default crash under the queue and risk-aware policies, with and without volunteers."""
    return {(policy, volunteers): replay_on_model(crash, policy, volunteers=volunteers)
            for policy in (QUEUE_PNL_LEVERAGE, RISK_AWARE) for volunteers in (True, False)}


def test_crash__invariants_hold_and_every_round_closes_with_and_without_volunteers(runs):
    for key, result in runs.items():
        assert [i["name"] for i in result["invariants"] if not i["held"]] == [], key
        assert all(r["haircuts"] == r["deficit"] and not r["fallback"] for r in result["adl_rounds"]), key
        assert result["auction"] == {"volunteers": key[1], "unwind": "profit"}


def test_crash__with_volunteers_the_queue_force_closes_less_and_the_winners_pay_the_premium(runs):
    volunteers, without = runs[(QUEUE_PNL_LEVERAGE, True)]["totals"], runs[(QUEUE_PNL_LEVERAGE, False)]["totals"]
    assert without["adl_closed"] > 0 and without["volunteer_taken"] == 0
    assert volunteers["adl_closed"] < without["adl_closed"]
    assert volunteers["volunteer_taken"] > 0 and volunteers["volunteer_premium"] > 0
    # The premium joins the deficit the winners pay, by the queue's order.
    assert volunteers["deficit"] > without["deficit"]


def test_crash__the_vault_trades_out_of_part_of_what_it_took_over(runs):
    for key, result in runs.items():
        totals = result["totals"]
        assert totals["unwound"] > 0 and totals["vault_open_notional"] > 0, key
    none = replay_on_model(generate(1000, seed=0), QUEUE_PNL_LEVERAGE, unwind="none")["totals"]
    assert none["unwound"] == 0 and none["vault_open_notional"] > runs[(QUEUE_PNL_LEVERAGE, True)]["totals"]["vault_open_notional"]


def test_volunteers__the_scenarios_liquidators_and_market_makers():
    scenario = generate(100, seed=0)
    replay = ModelReplay(scenario, QUEUE_PNL_LEVERAGE, ProtocolConfig(), lambda line: None)
    kinds = {address: trader.kind for address, trader in zip(replay.traders, scenario.traders)}
    assert {kinds[v.account] for v in replay.volunteers} == {"liquidator", "market_maker"}
    assert all(v.threshold == VOLUNTEER_THRESHOLDS[kinds[v.account]] for v in replay.volunteers)
    assert len(replay.volunteers) == sum(1 for t in scenario.traders if t.kind in VOLUNTEER_THRESHOLDS)


def test_desk__refuses_an_unknown_unwind_policy():
    with pytest.raises(ValueError, match="unwind must be one of"):
        AuctionDesk(venue=None, keeper="0x" + "ee" * 20, volunteers=[Volunteer("0x" + "01" * 20, WAD // 50)], unwind="sometimes")


def test_cli__the_unwind_choices_are_the_desks():
    from backstop.cli import options
    from backstop.keeper import auctions

    assert options.UNWIND_POLICIES == auctions.UNWIND_POLICIES
