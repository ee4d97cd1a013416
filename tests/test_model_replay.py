"""The crash replay on the reference model (backstop/sim/model_replay.py) and what makes it fast: a
small replay under every policy keeps the invariants; the winner book, the vectorised screen and the
risk-aware level search give exactly what the plain code gives. No chain."""

import dataclasses
import random

import pytest

from backstop.chain.deployment import ProtocolConfig
from backstop.keeper import adl_executor, model_venue
from backstop.keeper.adl_planner import _Evaluated, _highest_close_level, _highest_haircut_level, _highest_level, plan_market, winner_states
from backstop.model.adl import POLICY_NAMES, AdlModel, risk_aware_close_weight, risk_aware_haircut_weight
from backstop.model.protocol import ModelRevert
from backstop.sim.model_replay import model_opening, replay_on_model
from backstop.sim.scenario import generate

POLICIES = sorted(POLICY_NAMES)


@pytest.fixture(scope="module")
def scenario():
    return generate(100, seed=0)


@pytest.fixture(scope="module")
def small_vault():
    """The default config with the vault's loss caps and position limits at 3%: it refuses most
    takeovers of 100 traders, so accounts go bankrupt and ADL runs (about 20 rounds)."""
    config = ProtocolConfig()
    return dataclasses.replace(
        config,
        vault_loss_cap_per_event=config.vault_loss_cap_per_event * 3 // 100,
        vault_loss_cap_per_day=config.vault_loss_cap_per_day * 3 // 100,
        markets=tuple(dataclasses.replace(m, vault_max_position=m.vault_max_position * 3 // 100) for m in config.markets),
    )


@pytest.fixture(scope="module")
def results(scenario, small_vault):
    return {policy: replay_on_model(scenario, policy, small_vault) for policy in POLICIES}


def _figures(result: dict) -> dict:
    return {name: value for name, value in result.items() if name != "timings"}


def test_replay_holds_the_invariants_under_every_policy(results):
    for policy, result in results.items():
        assert all(invariant["held"] for invariant in result["invariants"]), (policy, result["invariants"])
        assert result["adl_rounds"], f"policy {policy}: the scenario no longer reaches ADL; the tests below would check nothing"
        assert all(round_["haircuts"] == round_["deficit"] for round_ in result["adl_rounds"]), policy


def test_replay_without_the_fast_paths_gives_the_same_figures(scenario, small_vault, results, monkeypatch):
    """No winner book (the executor reads `winner_states` and plans with `plan_market` each round)
    and no vectorised pre-screen: the figures of the replay are the same to the last unit."""
    plain_init = model_venue.TrackingModel.__init__

    def without_book(self, *args, **kwargs):
        plain_init(self, *args, **kwargs)
        self.winner_book = None

    monkeypatch.setattr(model_venue.TrackingModel, "__init__", without_book)
    monkeypatch.setattr(model_venue, "VECTOR_SCREEN_MIN", 10**9)
    for policy in POLICIES:
        assert _figures(replay_on_model(scenario, policy, small_vault)) == _figures(results[policy]), policy


def test_replays_from_a_shared_opening_equal_replays_from_scratch(scenario, small_vault, results):
    """A study replays one scenario under several policies from one pickled opening
    (`model_opening`): every policy, with and without the volunteer step, gives the figures of a
    replay that funds and trades from scratch, and no replay alters the opening for the next."""
    opening = model_opening(scenario, small_vault)
    for policy in POLICIES:
        assert _figures(replay_on_model(scenario, policy, small_vault, opening=opening)) == _figures(results[policy]), policy
        assert (_figures(replay_on_model(scenario, policy, small_vault, volunteers=False, opening=opening))
                == _figures(replay_on_model(scenario, policy, small_vault, volunteers=False))), policy
    assert model_opening(scenario, small_vault) == opening


def test_an_opening_made_for_another_scenario_or_config_is_refused(scenario, small_vault):
    """A stale opening (another seed, or another deployment's limits) would replay the wrong book
    without a word: it is refused before anything runs."""
    opening = model_opening(scenario, small_vault)
    for other_scenario, other_config in ((generate(100, seed=1), small_vault), (scenario, ProtocolConfig())):
        with pytest.raises(ValueError, match="the opening was made for another scenario or config"):
            replay_on_model(other_scenario, POLICIES[0], other_config, opening=opening)


def test_a_join_the_engine_refuses_gets_a_round_of_its_own(scenario, small_vault, results, monkeypatch):
    """The engine refuses every join: each account the keeper meant to net into another's round
    gets a round of its own, in the same block, and the invariants hold."""

    def refuse(self, account, host, now):
        raise ModelRevert("AdlEngine: host round not joinable")

    monkeypatch.setattr(AdlModel, "join_round", refuse)
    for policy in POLICIES:
        netted = results[policy]["adl_rounds"]
        joins = sum(len(round_["joined"]) for round_ in netted)
        assert joins > 0, f"policy {policy}: nothing netted in this scenario; the test would check nothing"
        result = replay_on_model(scenario, policy, small_vault)
        assert all(invariant["held"] for invariant in result["invariants"]), (policy, result["invariants"])
        assert not any(round_["joined"] for round_ in result["adl_rounds"])
        assert len(result["adl_rounds"]) == len(netted) + joins, policy


def test_fast_paths_agree_with_the_plain_code_at_every_call(scenario, small_vault, monkeypatch):
    """Every plan of the winner book equals `plan_market(winner_states(...))` at the same moment (among
    them plans from queues kept across a rise of the loss index), the hedged winners hit are the ones
    the books of the round show hedged, and the pre-screen only clears accounts the per-account
    screen clears."""
    checked = {"plans": 0, "screens": 0, "rounds": 0, "queues kept across a loss": 0}
    book_plan, not_cleared, execute = model_venue.WinnerBook.plan, model_venue.AccountArrays.not_cleared, adl_executor.ModelAdlExecutor._execute
    revalue = model_venue._Queue.revalue
    venues, seen_hedged = [], set()

    def plan(self, bankrupt, market_id, market, now, batch_size):
        book = winner_states(self.model, bankrupt, market_id, now)
        seen_hedged.update(w.account for w in book if adl_executor.is_hedged(w, market.price))
        batches = book_plan(self, bankrupt, market_id, market, now, batch_size)
        assert batches == plan_market(market, book, batch_size)
        checked["plans"] += 1
        return batches

    def screen(self, accounts, marks, funding):
        kept = not_cleared(self, accounts, marks, funding)
        left_out = set(accounts) - set(kept)
        assert all(venues[-1]._clear_of_maintenance(account, marks, funding) for account in left_out)
        checked["screens"] += 1
        return kept

    def execute_checked(self, account, minimum):
        # A round is executed when it opens, or once its volunteer auction has ended.
        seen_hedged.clear()
        metrics = execute(self, account, minimum)
        if metrics is not None:
            assert metrics.hedged_hit == sum(1 for winner in metrics.haircut_by_winner if winner in seen_hedged)
            checked["rounds"] += 1
        return metrics

    def revalue_counted(self):
        checked["queues kept across a loss"] += 1
        revalue(self)

    venue_init = model_venue.ModelVenue.__init__

    def remember_venue(self, *args, **kwargs):
        venue_init(self, *args, **kwargs)
        venues.append(self)

    monkeypatch.setattr(model_venue.WinnerBook, "plan", plan)
    monkeypatch.setattr(model_venue.AccountArrays, "not_cleared", screen)
    monkeypatch.setattr(adl_executor.ModelAdlExecutor, "_execute", execute_checked)
    monkeypatch.setattr(model_venue.ModelVenue, "__init__", remember_venue)
    monkeypatch.setattr(model_venue._Queue, "revalue", revalue_counted)
    monkeypatch.setattr(model_venue, "VECTOR_SCREEN_MIN", 1)
    for policy in POLICIES:
        replay_on_model(scenario, policy, small_vault)
    assert all(count > 0 for count in checked.values()), checked


def test_queue_kept_across_loss_rises_plans_as_the_plain_code(monkeypatch):
    """3,000 traders under the queue with a round per bankrupt account (no netting, as for a keeper
    whose joins are refused): thousands of rounds in a few steps, each spreading a loss, so the
    queues live on the allowance in their bounds (with bounds that ignore the rise, 13 of these
    1,119 plans differ from the plain code's)."""
    checked = {"plans": 0, "queues kept across a loss": 0}
    book_plan, revalue = model_venue.WinnerBook.plan, model_venue._Queue.revalue

    def plan(self, bankrupt, market_id, market, now, batch_size):
        batches = book_plan(self, bankrupt, market_id, market, now, batch_size)
        assert batches == plan_market(market, winner_states(self.model, bankrupt, market_id, now), batch_size)
        checked["plans"] += 1
        return batches

    def revalue_counted(self):
        checked["queues kept across a loss"] += 1
        revalue(self)

    monkeypatch.setattr(model_venue.WinnerBook, "plan", plan)
    monkeypatch.setattr(model_venue._Queue, "revalue", revalue_counted)
    monkeypatch.setattr(adl_executor.ModelAdlExecutor, "groups", lambda self, accounts: [(account, []) for account in accounts])
    replay_on_model(generate(3000, seed=0), POLICIES[0], ProtocolConfig())
    assert checked["plans"] > 1000 and checked["queues kept across a loss"] > 100, checked


def _book(rng: random.Random, count: int) -> list[_Evaluated]:
    winners = []
    for _ in range(count):
        size = rng.choice([1, -1]) * rng.randint(10**15, 10**21)
        value = rng.randint(1, 10**12)
        net = rng.choice([1, -1, 0, 1]) * rng.randint(0, 10**13)
        leverage = abs(net) * 10**18 // value
        winners.append(_Evaluated("0x%040x" % rng.getrandbits(160), size, rng.randint(1, 10**11), value, leverage, leverage, net))
    return sorted(winners, key=lambda w: (-w.net_leverage, int(w.account, 16)))


def test_risk_aware_levels_are_the_bisections():
    """The fast level search finds the level of the bisection over the whole range, for the haircut
    and the close weights, whatever is needed (including more than the weights hold)."""
    rng = random.Random(8)
    for _ in range(40):
        book = _book(rng, rng.choice([1, 2, 3, 10, 60]))
        price = rng.randint(10**17, 10**23)
        profits, sizes = sum(w.profit for w in book), sum(abs(w.size) for w in book)
        for needed in (1, rng.randint(1, profits), profits, profits + 1):
            expected = _highest_level(lambda level: [risk_aware_haircut_weight(w.profit, w.net_leverage, level) for w in book], needed)
            assert _highest_haircut_level(book, needed) == expected
        for needed in (1, rng.randint(1, sizes), sizes, sizes + 1):
            expected = _highest_level(
                lambda level: [risk_aware_close_weight(w.size, price, w.net_notional, w.value, level) for w in book], needed
            )
            assert _highest_close_level(book, price, needed) == expected


def test_scenario_keys_are_key_pairs_with_checksummed_addresses():
    """The fast derivation (coincurve, pysha3, cchecksum) gives what eth_account derives."""
    from eth_account import Account

    from backstop.sim.replay import scenario_keys

    keys = scenario_keys(9, 40)
    assert len({address for address, _ in keys}) == 40
    assert all(Account.from_key(key).address == address for address, key in keys)
    assert scenario_keys(9, 40, role="vault depositor") != keys
