"""`compare`: the ADL policy study. Every policy on `--seeds` seeds of the same crash on the reference
model (mean and spread of each figure, a vault-size sweep, the trade-off), and, up to CHAIN_LIMIT
traders, the first seed on chain too, where chain and model must agree figure by figure. Writes
the study report (backstop/report/study.py) and result.json (backstop/sim/study.py) to --out.
`--no-chain` needs neither Node nor Anvil: no chain is started and ape is not imported.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from backstop.cli.errors import Command
from backstop.cli.options import (auction_options, chosen_policies, claim_out_dir, config_option, network_option, out_options, policy_choice,
                                  scale_option, scenario_options, vault_limits_for)

# Largest crowd replayed on chain by default (about a minute per policy per thousand traders).
CHAIN_LIMIT = 2_000
# Largest crowd whose study adds the vault-size sweep and the volunteer counterparts by default:
# above it, 16 more replays of 15 s and up each would take the study past its minute at 100,000
# traders (the four policies alone fit), so they run when asked.
EXTRAS_LIMIT = 10_000


@click.command(cls=Command)
@scenario_options
@click.option("--seeds", type=click.IntRange(min=1), default=20, show_default=True,
              help="Seeds on the model: --seed, --seed + 1, ... (mean and spread of every figure over them).")
@click.option("--policy", "policies", type=policy_choice(), multiple=True, help="Policy to study (repeatable; default: all four).")
@click.option("--chain/--no-chain", "on_chain", default=None,
              help=f"Also replay the first seed on chain and check it agrees with the model (default: on up to {CHAIN_LIMIT:,} traders).")
@click.option("--processes", type=click.IntRange(min=1), default=2, show_default=True, help="Model replays at once.")
@click.option("--vault-sweep/--no-vault-sweep", default=None,
              help="Also replay the first seed with the vault at 5%, 10% and 40% of the traders' collateral "
                   f"(3 more replays per policy; default: on up to {EXTRAS_LIMIT:,} traders).")
@click.option("--volunteer-counterparts/--no-volunteer-counterparts", "counterparts", default=None,
              help="Also replay the first seed with the volunteer step the other way "
                   f"(1 more replay per policy; default: on up to {EXTRAS_LIMIT:,} traders).")
@config_option
@scale_option
@auction_options
@network_option
@out_options(Path("reports/compare"))
def compare(traders, seed, steps, seeds, policies, on_chain, processes, vault_sweep, counterparts, config, scale_vault, volunteers, unwind,
            network, out, force):
    """Compare the ADL policies on many seeds of one crash."""
    from backstop.model.adl import POLICY_NAMES

    out = claim_out_dir(out, force)
    policies = chosen_policies(policies)
    on_chain = traders <= CHAIN_LIMIT if on_chain is None else on_chain
    vault_sweep = traders <= EXTRAS_LIMIT if vault_sweep is None else vault_sweep
    counterparts = traders <= EXTRAS_LIMIT if counterparts is None else counterparts
    seed_list = list(range(seed, seed + seeds))
    click.echo(f"study: {traders:,} traders, seeds {seed_list[0]}..{seed_list[-1]}, {steps} blocks; "
               f"policies {', '.join(POLICY_NAMES[p] for p in policies)}")
    skipped = [flag for flag, runs in (("--vault-sweep", vault_sweep), ("--volunteer-counterparts", counterparts)) if not runs]
    if skipped:
        click.echo(f"left out: {' and '.join(flag.removeprefix('--').replace('-', ' ') for flag in skipped)} "
                   f"(add {' '.join(skipped)} to run {'them' if len(skipped) > 1 else 'it'})")

    from backstop.cli.progress import progress_bar
    from backstop.cli.writing import write_json
    from backstop.report.study import write_study_report
    from backstop.sim.study import VAULT_FRACTIONS, run_study, study_cases
    from backstop.sim.sweep import ProcessRunner

    started = time.perf_counter()
    fractions = VAULT_FRACTIONS if vault_sweep else ()
    with progress_bar("model replays", len(study_cases(traders, steps, seed_list, policies, fractions, volunteers, unwind, counterparts))) as progress:
        study = run_study(traders, steps, seed_list, policies, config, scale_vault, fractions, ProcessRunner(processes), progress,
                          volunteers=volunteers, unwind=unwind, counterparts=counterparts)
    study["timings"] = {"model": time.perf_counter() - started}
    click.echo(f"model: {study['replays']} replays in {study['timings']['model']:.1f} s")

    agreement = None
    if on_chain:
        started = time.perf_counter()
        agreement = chain_agreement(study, seed, steps, policies, vault_limits_for(config, traders, scale_vault), network, volunteers, unwind)
        study["timings"]["chain"] = time.perf_counter() - started
        click.echo("chain and model agree on every figure" if not agreement else "chain and model DISAGREE:\n  " + "\n  ".join(agreement))
    study["chain_agreement"] = agreement
    report = write_study_report(out, study, agreement)
    write_json(out / "result.json", study)
    click.echo(summary(study))
    click.echo(f"report: {report}")
    if agreement:
        raise click.ClickException("the chain and the model disagree (listed above)")


def chain_agreement(study: dict, seed: int, steps: int, policies: list[int], config, network: str, volunteers: bool = True,
                    unwind: str = "profit") -> list[str]:
    """The first seed replayed on chain under each policy, one private copy of one deployment each;
    the figures on which chain and model differ."""
    from backstop.cli.chain_session import connected, deploy, replay_chain
    from backstop.cli.progress import progress_bar
    from backstop.keeper.adl_executor import set_policy
    from backstop.model.adl import POLICY_NAMES
    from backstop.sim.chain_replay import replay_on_chain
    from backstop.sim.chain_winner_book import BookedChainAdlExecutor
    from backstop.sim.policy_study import compare_runs, policy_metrics
    from backstop.sim.replay import scenario_keys
    from backstop.sim.scenario import generate

    scenario = generate(study["traders"], seed, steps)
    disagreements = []
    with connected(network) as provider:
        _, deployment = deploy(config, network=network)
        owner = deployment["actors"]["owner"]
        watched = [address for address, _ in scenario_keys(seed, len(scenario.traders))] + [deployment["contracts"]["vault"]["address"]]
        for policy in policies:
            with replay_chain(provider, persistent=False) as fast:
                set_policy(fast, deployment, owner, policy)
                adl = BookedChainAdlExecutor(fast, deployment, owner, accounts=lambda: watched)
                with progress_bar(f"chain {POLICY_NAMES[policy]}", len(scenario.path)) as progress:
                    result = replay_on_chain(fast, deployment, scenario, owner, progress=progress, adl=adl, volunteers=volunteers, unwind=unwind)
            model = study["reference"][POLICY_NAMES[policy]]["metrics"]
            disagreements += [f"{POLICY_NAMES[policy]}: {line}" for line in compare_runs(model, policy_metrics(policy, result))]
    return disagreements


def summary(study: dict) -> str:
    """One line per policy: means over the seeds; then the volunteer step on the first seed."""
    from backstop.report.format import text_table

    def money(units: float) -> str:
        return f"{units / 1e6:,.0f}"

    rows = []
    for name, entry in study["by_policy"].items():
        m = {k: v["mean"] for k, v in entry["summary"].items()}
        rows.append([name, money(m["deficit"]), money(m["notional_closed"]), f"{m['closed_over_deficit']:.1f}", money(m["notional_absorbed"]),
                     money(m["vault_pnl"]), f"{m['winners_hit']:.0f}", f"{m['hedged_hit']:.0f}", f"{m['gini']:.2f}"])
    lines = [f"means over {len(study['seeds'])} seeds (dollars)",
             *text_table(["policy", "D", "closed", "closed/D", "absorbed", "vault PnL", "hit", "hedged", "gini"], rows)]
    step = study.get("volunteer_step", {})
    if step.get("policies"):
        rows = []
        for name, entry in step["policies"].items():
            on, off = entry["with"], entry["without"]
            rows.append([name, money(off["notional_closed"]), money(on["notional_closed"]), money(on["volunteer_taken"]),
                         money(on["volunteer_premium"]), money(off["vault_pnl"]), money(on["vault_pnl"]), money(on["vault_open_notional"])])
        lines.append(f"seed {step['seed']}, with and without the volunteer step (vault unwind: {study['auction']['unwind']})")
        lines += text_table(["policy", "closed w/o", "closed with", "vol. took", "premium", "vault PnL w/o", "vault PnL", "vault open"], rows)
    return "\n".join(lines)
