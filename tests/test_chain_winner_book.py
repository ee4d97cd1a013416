"""The chain replay's ADL winners from an event-kept book (backstop/sim/chain_winner_book.py): at every
round the book's winner states equal what `ChainAdlExecutor.winner_states` reads from the chain, and
the replay's figures equal the model's, to the unit. On a private Anvil with a deployment whose
vault is sized for the crowd, so that rounds happen."""

import pytest

from backstop.chain.anvil import private_chain
from backstop.chain.deployment import ProtocolConfig, deploy_protocol, deployment_document
from backstop.keeper.adl_executor import ChainAdlExecutor, set_policy
from backstop.sim.chain_replay import replay_on_chain
from backstop.sim.chain_winner_book import BookedChainAdlExecutor
from backstop.sim.model_replay import replay_on_model
from backstop.sim.policy_study import compare_runs, policy_metrics
from backstop.sim.replay import scenario_keys
from backstop.sim.scenario import generate
from backstop.sim.sweep import case_config

TRADERS = 150


class CheckedExecutor(BookedChainAdlExecutor):
    """Asks the chain too, at every round, and counts the rounds that agreed."""

    checked = 0

    def winner_states(self, bankrupt, market, bankrupt_size):
        booked = self.book.winner_states(bankrupt, market, bankrupt_size)
        assert booked == ChainAdlExecutor.winner_states(self, bankrupt, market, bankrupt_size)
        CheckedExecutor.checked += 1
        return booked


@pytest.fixture(scope="module")
def config():
    return case_config(ProtocolConfig(), TRADERS, 0.2)


@pytest.fixture(scope="module")
def deployed(project, owner, config, chain):
    protocol = deploy_protocol(project, owner, owner.address, config)
    return chain.provider.make_request("anvil_dumpState", []), deployment_document(protocol, chain.chain_id, config)


@pytest.mark.parametrize("policy", [3, 0], ids=["risk-aware", "queue"])
def test_booked_winners_are_the_chains_and_the_replay_equals_the_model(deployed, owner, config, policy):
    """Under the queue the volunteers take the bankrupt positions and the rounds spread the
    market's move over the winners' side when they close (LossSocialised): the book must forget
    the winners' values then, or it ranks the queue on stale values."""
    state, deployment = deployed
    scenario = generate(TRADERS, seed=2, steps=24)
    watched = [address for address, _ in scenario_keys(scenario.seed, TRADERS)] + [deployment["contracts"]["vault"]["address"]]
    CheckedExecutor.checked = 0
    with private_chain(state, recent_states=64) as node:
        set_policy(node, deployment, owner.address, policy)
        adl = CheckedExecutor(node, deployment, owner.address, accounts=lambda: watched)
        result = replay_on_chain(node, deployment, scenario, owner.address, adl=adl)
    assert CheckedExecutor.checked >= 5, "the scenario no longer reaches ADL: the check above checked nothing"
    assert [i["name"] for i in result["invariants"] if not i["held"]] == []
    model = replay_on_model(scenario, policy, config)
    assert compare_runs(policy_metrics(policy, model), policy_metrics(policy, result)) == []
    assert result["who_paid"] == model["who_paid"]
    if policy == 0:
        assert policy_metrics(0, model)["volunteer_taken"] > 0 and policy_metrics(0, model)["socialised"] > 0
