"""`ape run crash`: deploys the protocol, funds a crowd of traders, replays a 10-Oct-2025-style crash
block by block with the keeper running liquidation -> insurance vault -> ADL, and writes a report
(Markdown, plots and the raw figures as JSON) to reports/crash/.

The deployment is made through ape, then the chain is copied into a private Anvil without step
tracing, where the replay sends its thousands of transactions through raw JSON-RPC.
"""

import json
from pathlib import Path

import click
from ape import accounts, chain, networks, project

from backstop.chain.deployment import deploy_protocol, deployment_document
from backstop.cli import ConnectedCommand, config_option, policy_choice, private_copy, progress_bar, quiet_ape, scale_option, scenario_options, vault_limits_for
from backstop.keeper.adl_executor import ChainAdlExecutor, set_policy
from backstop.model.adl import POLICY_BY_NAME
from backstop.report.crash import summary_lines, write_report
from backstop.sim.chain_replay import replay_on_chain
from backstop.sim.policy_study import policy_metrics
from backstop.sim.replay import scenario_keys
from backstop.sim.scenario import generate


@click.command(cls=ConnectedCommand)
@scenario_options
@click.option("--policy", type=policy_choice(), default="risk-aware", show_default=True, help="ADL policy of every market.")
@config_option
@scale_option
@click.option("--out", type=click.Path(path_type=Path), default=Path("reports/crash"), show_default=True, help="Report folder.")
def cli(traders, seed, steps, policy, config, scale_vault, out):
    """Replay a crash on a fresh local deployment and write the report."""
    quiet_ape()
    config = vault_limits_for(config, traders, scale_vault)
    scenario = generate(traders, seed, steps)
    click.echo(f"scenario: {traders:,} traders, seed {seed}, {steps} blocks; ADL policy {policy}")
    owner = accounts.test_accounts[0]
    protocol = deploy_protocol(project, owner, owner.address, config)
    deployment = deployment_document(protocol, chain.chain_id, config)
    click.echo(f"deployed on {networks.provider.network.name}; replaying on a private copy of the chain")
    with private_copy(networks.provider) as fast:
        set_policy(fast, deployment, owner.address, POLICY_BY_NAME[policy])
        watched = [address for address, _ in scenario_keys(seed, traders)] + [deployment["contracts"]["vault"]["address"]]
        adl = ChainAdlExecutor(fast, deployment, owner.address, accounts=lambda: watched)
        with progress_bar("crash", len(scenario.path)) as progress:
            result = replay_on_chain(fast, deployment, scenario, owner.address, progress=progress, adl=adl)
    result["policies"] = [policy_metrics(POLICY_BY_NAME[policy], result)]
    report = write_report(out, result)
    (out / "result.json").write_text(json.dumps(result, indent=1, default=str))
    (out / "deployment.json").write_text(json.dumps(deployment, indent=1))
    click.echo("\n".join(summary_lines(result)))
    click.echo(f"report: {report}")
