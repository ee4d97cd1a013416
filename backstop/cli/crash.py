"""`crash`: deploys the protocol, funds a crowd of traders, opens their positions over a run-up and
replays a 10-Oct-2025-style crash block by block with the keeper running liquidation -> insurance
vault -> ADL; writes the report (Markdown, plots, result.json, deployment.json) to --out.

On the default throwaway chain the replay runs on a private copy of it (backstop/cli/chain_session.py).
On a persistent node (APE_FOUNDRY_HOST or --network) it runs on the node and also writes
deployments/<network>.json, so that `run keeper` started beside it acts on the replay's positions;
`--no-keeper --step-pause 2` leaves the whole waterfall to that keeper.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from backstop.cli.errors import Command
from backstop.cli.options import (auction_options, claim_out_dir, config_option, network_option, out_options, policy_choice, scale_option,
                                  scenario_options, vault_limits_for)


@click.command(cls=Command)
@scenario_options
@click.option("--policy", type=policy_choice(), default="risk-aware", show_default=True, help="ADL policy of every market.")
@config_option
@scale_option
@auction_options
@network_option
@click.option("--keeper/--no-keeper", "keeper_acts", default=True, show_default=True,
              help="Run the waterfall after every block (--no-keeper: leave it to a `run keeper` beside a persistent node).")
@click.option("--step-pause", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Seconds to wait after each block, so that a keeper beside the replay sees every price.")
@click.option("--deployment-file", type=click.Path(path_type=Path), default=None,
              help="On a persistent node: where the deployment is written for `run keeper` (default: deployments/<network>.json).")
@out_options(Path("reports/crash"))
def crash(traders, seed, steps, policy, config, scale_vault, volunteers, unwind, network, keeper_acts, step_pause, deployment_file, out, force):
    """Replay a crash on a fresh deployment and write the report."""
    out = claim_out_dir(out, force)
    config = vault_limits_for(config, traders, scale_vault)
    started = time.perf_counter()

    from backstop.cli.chain_session import connected, deploy, is_throwaway, replay_chain
    from backstop.cli.progress import progress_bar
    from backstop.cli.writing import write_json
    from backstop.keeper.adl_executor import set_policy
    from backstop.model.adl import POLICY_BY_NAME
    from backstop.report.crash import summary_lines, write_report
    from backstop.sim.chain_replay import replay_on_chain
    from backstop.sim.chain_winner_book import BookedChainAdlExecutor
    from backstop.sim.model_replay import replay_on_model
    from backstop.sim.policy_study import policy_metrics
    from backstop.sim.replay import scenario_keys
    from backstop.sim.scenario import generate
    from backstop.sim.study import volunteer_comparison

    scenario = generate(traders, seed, steps)
    click.echo(f"scenario: {traders:,} traders, seed {seed}, {steps} blocks after a {len(scenario.run_up)}-block run-up; ADL policy {policy}")
    persistent = not is_throwaway(network)
    with connected(network) as provider:
        protocol, deployment = deploy(config, network=network)
        owner = deployment["actors"]["owner"]
        click.echo(f"deployed on {provider.network.name} at block {deployment['deploy_block']}; "
                   + ("replaying on the node itself" if persistent else "replaying on a private copy of the chain"))
        if persistent:
            write_json(deployment_file or Path("deployments") / f"{provider.network.name}.json", deployment)
        with replay_chain(provider, persistent) as fast:
            set_policy(fast, deployment, owner, POLICY_BY_NAME[policy])
            watched = [address for address, _ in scenario_keys(seed, traders)] + [deployment["contracts"]["vault"]["address"]]
            adl = BookedChainAdlExecutor(fast, deployment, owner, accounts=lambda: watched)
            with progress_bar("crash", len(scenario.path)) as progress:
                result = replay_on_chain(fast, deployment, scenario, owner, progress=progress, adl=adl, keeper_acts=keeper_acts,
                                         step_pause=step_pause, volunteers=volunteers, unwind=unwind)
    result["policy"] = policy_metrics(POLICY_BY_NAME[policy], result)
    # The same crash with the volunteer step the other way, on the model (chain and model agree to
    # the unit: `compare` checks it): what volunteers took off forced ADL, and at what premium.
    counterpart = replay_on_model(scenario, POLICY_BY_NAME[policy], config, volunteers=not volunteers, unwind=unwind)
    runs = {volunteers: result["policy"], not volunteers: policy_metrics(POLICY_BY_NAME[policy], counterpart)}
    result["volunteer_step"] = volunteer_comparison(runs, policy, seed)
    result["timings"]["total"] = time.perf_counter() - started
    report = write_report(out, result)
    write_json(out / "result.json", result)
    write_json(out / "deployment.json", deployment)
    click.echo("\n".join(summary_lines(result)))
    click.echo(f"report: {report} ({result['timings']['total']:.0f} s)")
