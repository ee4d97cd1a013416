"""`ape run compare`: the ADL policy study. The same crash under every ADL policy, on the reference
model (1,000 traders in a second, 10,000 in about a minute) and, for up to a few thousand traders, on chain
too, where both runs must agree figure by figure. Writes reports/compare/: a Markdown table of the
issue's metrics per policy, the plots, and the raw figures as JSON.
"""

import json
import time
from pathlib import Path

import click
from ape import accounts, chain, networks, project

from backstop.chain.deployment import deploy_protocol, deployment_document
from backstop.cli import ConnectedCommand, config_option, policy_choice, private_copy, progress_bar, quiet_ape, scale_option, scenario_options, vault_limits_for
from backstop.keeper.adl_executor import ChainAdlExecutor, set_policy
from backstop.model.adl import POLICY_BY_NAME, POLICY_NAMES
from backstop.report.crash import write_report
from backstop.sim.chain_replay import replay_on_chain
from backstop.sim.model_replay import sweep_on_model
from backstop.sim.policy_study import compare_runs, policy_metrics
from backstop.sim.replay import scenario_keys
from backstop.sim.scenario import generate

# Largest crowd replayed on chain by default (about a minute per policy per thousand traders).
CHAIN_LIMIT = 2_000


@click.command(cls=ConnectedCommand)
@scenario_options
@click.option("--policy", "policies", type=policy_choice(), multiple=True,
              help="Policy to study (repeatable; default: all four).")
@click.option("--chain/--no-chain", "on_chain", default=None,
              help=f"Also replay on chain and check it agrees with the model (default: on for up to {CHAIN_LIMIT:,} traders).")
@config_option
@scale_option
@click.option("--out", type=click.Path(path_type=Path), default=Path("reports/compare"), show_default=True, help="Report folder.")
def cli(traders, seed, steps, policies, on_chain, config, scale_vault, out):
    """Compare the ADL policies on one crash."""
    config = vault_limits_for(config, traders, scale_vault)
    policies = [POLICY_BY_NAME[name] for name in policies] or sorted(POLICY_NAMES)
    on_chain = traders <= CHAIN_LIMIT if on_chain is None else on_chain
    quiet_ape()
    scenario = generate(traders, seed, steps)
    click.echo(f"scenario: {traders:,} traders, seed {seed}, {steps} blocks; policies {', '.join(POLICY_NAMES[p] for p in policies)}")

    started = time.perf_counter()
    with progress_bar("model", len(policies)) as progress:
        model_results = sweep_on_model(scenario, policies, config, progress=progress)
    click.echo(f"model: {len(policies)} policies in {time.perf_counter() - started:.1f} s")
    rows = {policy: policy_metrics(policy, model_results[policy]) for policy in policies}

    disagreements = []
    if on_chain:
        chain_results = replay_policies_on_chain(scenario, policies, config)
        for policy in policies:
            chain_row = policy_metrics(policy, chain_results[policy])
            disagreements += [f"{POLICY_NAMES[policy]}: {line}" for line in compare_runs(rows[policy], chain_row)]
        click.echo("chain and model agree on every figure" if not disagreements else "chain and model DISAGREE:\n  " + "\n  ".join(disagreements))

    reference = model_results[policies[0]]
    result = {**reference, "policies": [rows[p] for p in policies]}
    report = write_report(out, result)
    (out / "result.json").write_text(json.dumps({"policies": result["policies"], "agreement": disagreements if on_chain else None}, indent=1))
    click.echo(policy_table(rows.values()))
    click.echo(f"report: {report}")
    if disagreements:
        raise click.ClickException("the chain and the model disagree (listed above)")


def replay_policies_on_chain(scenario, policies, config) -> dict:
    """One fresh private copy of a single deployment per policy."""
    owner = accounts.test_accounts[0]
    protocol = deploy_protocol(project, owner, owner.address, config)
    deployment = deployment_document(protocol, chain.chain_id, config)
    watched = [address for address, _ in scenario_keys(scenario.seed, len(scenario.traders))] + [deployment["contracts"]["vault"]["address"]]
    results = {}
    for policy in policies:
        with private_copy(networks.provider) as fast:
            set_policy(fast, deployment, owner.address, policy)
            adl = ChainAdlExecutor(fast, deployment, owner.address, accounts=lambda: watched)
            with progress_bar(f"chain {POLICY_NAMES[policy]}", len(scenario.path)) as progress:
                results[policy] = replay_on_chain(fast, deployment, scenario, owner.address, progress=progress, adl=adl)
    return results


def policy_table(rows) -> str:
    header = f"{'policy':<20}{'D':>14}{'haircuts':>14}{'closed':>16}{'min closed':>16}{'closed/D':>10}{'gini':>7}{'top':>7}{'hit':>7}{'hedged':>8}"
    lines = [header]
    for row in rows:
        lines.append(
            f"{row['policy']:<20}{row['deficit']:>14,.0f}{row['haircuts']:>14,.0f}{row['notional_closed']:>16,.0f}"
            f"{row['min_notional_closed']:>16,.0f}{row['closed_over_deficit']:>10.1f}{row['gini']:>7.2f}{row['largest_share']:>7.2f}"
            f"{row['winners_hit']:>7}{row['hedged_hit']:>8}"
        )
    return "\n".join(lines)
