"""The sweep over seeds x policies x vault sizes x crowd sizes (backstop/sim/sweep.py): one process,
local processes and a local Dask cluster give the same numbers in the same order. No chain."""

import pytest

from backstop.chain.deployment import ProtocolConfig, scaled_vault_limits
from backstop.sim.sweep import Case, DaskRunner, ProcessRunner, SerialRunner, case_config

CASES = [Case(traders, seed, policy, vault, steps=12) for traders in (30, 40) for vault in (0.1, 0.2) for seed in (0, 1) for policy in (0, 3)]


def figures(outcomes):
    return [(o["case"], o["metrics"], o["invariants_held"]) for o in outcomes]


@pytest.fixture(scope="module")
def serial():
    reported = []
    outcomes = SerialRunner().run(CASES, ProtocolConfig(), progress=lambda done, total, note: reported.append((done, total)))
    assert reported == [(done, len(CASES)) for done in range(1, len(CASES) + 1)]
    return outcomes


def test_every_case_replays_and_keeps_the_invariants(serial):
    assert [o["case"]["traders"] for o in serial] == [case.traders for case in CASES]
    assert all(o["invariants_held"] for o in serial)
    # vault size changes the outcome: a smaller vault covers less, so more reaches ADL
    by_vault = {(o["case"]["traders"], o["case"]["seed"], o["case"]["policy"], o["case"]["vault_fraction"]): o["metrics"] for o in serial}
    assert any(by_vault[(t, s, p, 0.1)]["deficit"] != by_vault[(t, s, p, 0.2)]["deficit"] for t, s, p, _ in by_vault)


def test_local_processes_give_the_same_numbers(serial):
    assert figures(ProcessRunner(2).run(CASES, ProtocolConfig())) == figures(serial)


def test_a_local_dask_cluster_gives_the_same_numbers(serial):
    reported = []
    outcomes = DaskRunner(workers=2).run(CASES, ProtocolConfig(), progress=lambda done, total, note: reported.append(done))
    assert figures(outcomes) == figures(serial)
    assert sorted(reported) == list(range(1, len(CASES) + 1))


def test_case_config_scales_the_vault_limits_with_crowd_and_vault():
    config = ProtocolConfig()
    assert case_config(config, 1000, 0.2) == scaled_vault_limits(config, 1)
    doubled = case_config(config, 2000, 0.4)
    assert doubled.vault_loss_cap_per_day == 4 * config.vault_loss_cap_per_day
    assert doubled.markets[0].vault_max_position == 4 * config.markets[0].vault_max_position
    assert case_config(config, 2000, 0.4, scale=False) == config
