"""The command line (backstop/cli), one test per promise: help and bad arguments in under a second
without ape; --no-chain without ape, Node or Anvil; --out never overwrites another run's report
without --force and never ends in a traceback; a config the contracts would refuse is refused
before deploying; deploy to a throwaway chain says so; a dead chain is one sentence; the progress
bar at 80 columns and without a terminal; plain `ape` finds Anvil; and a crash replayed onto a
persistent node, with the keeper beside it acting on its positions."""

import builtins
import io
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from backstop.chain.anvil import PrivateAnvil
from backstop.cli.__main__ import main
from backstop.cli.progress import PlainProgress, progress_bar

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ("crash", "compare", "sweep", "deploy", "keeper", "scale")


def run_cli(*args, env=None, timeout=600):
    """`python -m backstop.cli ARGS` from the project folder: (exit status, output, seconds of CPU
    it took). CPU, not wall time: on a machine shared with other jobs the wall clock measures the
    others too; the command's own cost is what must stay under a second."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-m", "backstop.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return done.returncode, done.stdout + done.stderr, cpu


@pytest.mark.parametrize("command", COMMANDS)
def test_help_answers_in_under_a_second_without_ape(command):
    status, output, seconds = run_cli(command, "--help")
    assert status == 0 and "Usage:" in output and "--help" in output
    assert seconds < 1.0, f"{command} --help took {seconds:.2f} s"


@pytest.mark.parametrize("args, message", [
    (("crash", "--traders", "0"), "Invalid value for '--traders': 0 is not in the range x>=10"),
    (("crash", "--policy", "fifo"), "Invalid value for '--policy': 'fifo' is not one of"),
    (("compare", "--config", "config/nowhere.toml"), "config file config/nowhere.toml not found"),
    (("sweep", "--vault", "1.5"), "Invalid value for '--vault'"),
    (("keeper", "--deployment", "deployments/nowhere.json"), "deployment file deployments/nowhere.json not found"),
    (("keeper", "--deployment", "config/local.toml"), "config/local.toml is not a deployment file (not JSON"),
])
def test_a_bad_argument_is_one_sentence_in_under_a_second(args, message):
    status, output, seconds = run_cli(*args)
    assert status != 0 and message in output and "Traceback" not in output
    assert seconds < 1.0, f"{args} took {seconds:.2f} s"


@pytest.fixture
def without_ape_node_or_anvil(monkeypatch):
    """ape cannot be imported, and neither Node nor Anvil can be found or started."""
    real_import = builtins.__import__

    def refuse_ape(name, *args, **kwargs):
        if name == "ape" or name.startswith("ape."):
            raise ImportError(f"{name} must not be imported without a chain")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse_ape)
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None)
    monkeypatch.setattr(PrivateAnvil, "__init__", lambda self, *a, **k: pytest.fail("an Anvil was started"))


def test_no_chain_needs_neither_ape_nor_node_nor_anvil(tmp_path, without_ape_node_or_anvil):
    result = CliRunner().invoke(main, ["compare", "--no-chain", "--traders", "30", "--steps", "8", "--seeds", "2", "--processes", "1",
                                       "--out", str(tmp_path / "study")])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "study" / "result.json").read_text())
    assert saved["seeds"] == [0, 1] and saved["chain_agreement"] is None and saved["schema_version"] == 1
    assert (tmp_path / "study" / "report.md").read_text().startswith("# Backstop ADL policy study")


def test_compare_above_the_extras_limit_leaves_out_the_sweep_and_counterparts_and_says_so(tmp_path, monkeypatch):
    from backstop.cli import compare

    monkeypatch.setattr(compare, "EXTRAS_LIMIT", 10)
    args = ["compare", "--no-chain", "--traders", "20", "--steps", "6", "--seeds", "1", "--processes", "1", "--policy", "pro-rata"]
    lean = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "lean")])
    assert lean.exit_code == 0, lean.output
    assert "left out: vault sweep and volunteer counterparts (add --vault-sweep --volunteer-counterparts to run them)" in lean.output
    saved = json.loads((tmp_path / "lean" / "result.json").read_text())
    assert saved["replays"] == 1 and saved["vault_sweep"]["fractions"] == [0.2] and saved["volunteer_step"]["policies"] == {}
    text = (tmp_path / "lean" / "report.md").read_text()
    assert "The vault-size sweep did not run (`compare --vault-sweep`" in text and "vault_sweep.png" not in text
    assert "`compare --volunteer-counterparts` runs one per policy" in text
    full = CliRunner().invoke(main, [*args, "--vault-sweep", "--volunteer-counterparts", "--out", str(tmp_path / "full")])
    assert full.exit_code == 0 and "left out" not in full.output
    saved = json.loads((tmp_path / "full" / "result.json").read_text())
    assert saved["replays"] == 5 and saved["vault_sweep"]["fractions"] == [0.05, 0.1, 0.2, 0.4] and list(saved["volunteer_step"]["policies"]) == ["pro-rata"]
    assert "vault_sweep.png" in (tmp_path / "full" / "report.md").read_text()


def test_out_is_never_another_runs_report_without_force_and_never_a_traceback(tmp_path):
    runner, args = CliRunner(), ["compare", "--no-chain", "--traders", "20", "--steps", "6", "--seeds", "1", "--processes", "1", "--policy", "pro-rata"]
    a_file = tmp_path / "report.txt"
    a_file.write_text("mine")
    result = runner.invoke(main, [*args, "--out", str(a_file)])
    assert result.exit_code == 1 and "is a file, not a folder" in result.output and result.exception.__class__ is SystemExit
    assert a_file.read_text() == "mine"
    first = runner.invoke(main, [*args, "--out", str(tmp_path / "run")])
    assert first.exit_code == 0, first.output
    before = (tmp_path / "run" / "result.json").read_text()
    second = runner.invoke(main, [*args, "--seed", "5", "--out", str(tmp_path / "run")])
    assert second.exit_code == 1 and "holds another run's report (report.md): pass --force" in second.output
    assert (tmp_path / "run" / "result.json").read_text() == before
    forced = runner.invoke(main, [*args, "--seed", "5", "--out", str(tmp_path / "run"), "--force"])
    assert forced.exit_code == 0 and json.loads((tmp_path / "run" / "result.json").read_text())["seeds"] == [5]


@pytest.mark.parametrize("market, message", [
    ("initial_margin = 0.05\nmaintenance_margin = 0.1", "initial_margin (0.05) must exceed maintenance_margin (0.1)"),
    ("price = 0", "price must be positive"),
])
def test_a_config_the_contracts_would_refuse_is_refused_before_deploying(tmp_path, market, message):
    config = tmp_path / "bad.toml"
    config.write_text(f"[[markets]]\nname = \"X-PERP\"\nprice = 10\n{market}\n".replace("price = 10\nprice = 0", "price = 0"))
    status, output, seconds = run_cli("crash", "--config", str(config), "--out", str(tmp_path / "out"))
    assert status == 1 and message in output and "[markets #1] (X-PERP)" in output and "Traceback" not in output
    assert seconds < 1.0 and not (tmp_path / "out").exists()


def test_deploy_to_a_throwaway_chain_says_so_and_writes_nothing(tmp_path):
    status, output, seconds = run_cli("deploy", "--out", str(tmp_path / "local.json"), env={"APE_FOUNDRY_HOST": ""})
    assert status == 1 and "throwaway Anvil that stops when this command ends" in output and "--dry-run" in output
    assert seconds < 1.0 and not (tmp_path / "local.json").exists()


def test_a_chain_that_breaks_every_connection_is_one_sentence():
    """A port that accepts and hangs up at once (ape waits 20 s for it before giving up)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)

    def hang_up():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            connection.close()

    threading.Thread(target=hang_up, daemon=True).start()
    try:
        status, output, _ = run_cli("deploy", env={"APE_FOUNDRY_HOST": f"http://127.0.0.1:{server.getsockname()[1]}"})
    finally:
        server.close()
    assert status == 1 and "no chain reachable on ethereum:local:foundry at http://127.0.0.1:" in output and "Traceback" not in output
    assert len([line for line in output.splitlines() if line.startswith("Error:")]) == 1


def test_the_progress_bar_keeps_its_bar_and_count_at_80_columns():
    from rich.console import Console

    screen = io.StringIO()
    console = Console(file=screen, width=80, force_terminal=True, color_system=None)
    with progress_bar("crash", 48, console=console) as progress:
        progress(12, 48, "t=720s liquidated $3,221,550.88 (85 accounts), backstopped $526,394.56 (17), 0 refused, 3 bankrupt")
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())  # the terminal's control sequences
    last = [line for line in text.replace("\r", "\n").splitlines() if "12/48" in line][-1]
    assert "━" in last and "12/48" in last and "liquidated" in last and len(last.rstrip()) <= 80


def test_without_a_terminal_progress_is_plain_lines_every_tenth():
    lines, now = io.StringIO(), iter(range(0, 1000, 7))
    progress = PlainProgress("crash", 48, lines, clock=lambda: next(now))
    for block in range(1, 49):
        progress(block, 48, f"block {block}")
    printed = lines.getvalue().splitlines()
    assert 9 <= len(printed) <= 11 and printed[-1].startswith("crash: 48/48 (100%) after")
    assert printed[0].startswith("crash: 5/48 (10%) after 0:") and printed[0].endswith("; block 5")


def test_plain_ape_from_the_activated_venv_finds_anvil():
    venv_bin = Path(sys.executable).parent
    anvil = shutil.which("anvil", path=f"{venv_bin}:/usr/bin:/bin")
    assert anvil is not None and Path(anvil).parent == venv_bin, "bin/backstop setup puts Anvil into .venv/bin"
    version = subprocess.run([anvil, "--version"], capture_output=True, text=True, env={"PATH": f"{venv_bin}:/usr/bin:/bin"}, timeout=30)
    assert version.returncode == 0 and version.stdout.startswith("anvil")


def test_a_crash_onto_a_persistent_node_leaves_positions_a_keeper_beside_it_acts_on(tmp_path):
    with PrivateAnvil() as node:
        env = {"APE_FOUNDRY_HOST": node.uri}
        deployment = tmp_path / "local.json"
        status, output, _ = run_cli("crash", "--traders", "40", "--steps", "12", "--no-keeper", "--deployment-file", str(deployment),
                                    "--out", str(tmp_path / "crash"), env=env)
        assert status == 0, output
        assert "replaying on the node itself" in output
        document = json.loads(deployment.read_text())
        assert document["network"] == "ethereum:local:foundry" and document["deploy_block"] >= 1
        assert document["actors"]["owner"] == document["actors"]["keepers"][0] and document["compiler"] == "vyper 0.4.3"
        assert document["config_units"]["vault_loss_cap_per_event"] == "collateral units (1e6 = $1)"
        # the replay left the waterfall to a keeper: accounts are below maintenance, nobody acted
        assert json.loads((tmp_path / "crash" / "result.json").read_text())["totals"]["accounts_liquidated"] == 0
        status, output, _ = run_cli("keeper", "--deployment", str(deployment), "--passes", "1", "--interval", "0", env=env)
    assert status == 0, output
    summary = output.strip().splitlines()[-1]
    assert summary.startswith("keeper stopped after 1 passes over") and "backstopped $0.00," not in summary, summary


def test_a_node_that_breaks_mid_run_ends_the_command_in_its_own_sentence():
    import click

    from backstop.chain.fast_chain import NodeConnectionError
    from backstop.cli.errors import Command

    def broken():
        raise NodeConnectionError("the node at http://127.0.0.1:1 broke the connection or stopped answering, on a request of 13,000,000 bytes (BrokenPipeError: [Errno 32] Broken pipe)")

    result = CliRunner().invoke(click.command(cls=Command)(broken))
    assert result.exit_code == 1 and result.output == (
        "Error: the node at http://127.0.0.1:1 broke the connection or stopped answering, on a request of 13,000,000 bytes "
        "(BrokenPipeError: [Errno 32] Broken pipe)\n")


def test_scale__times_each_run_against_its_budget_and_writes_a_table(tmp_path, monkeypatch):
    """The heavy-run benchmark on two stand-in runs: one that finishes, one that fails."""
    from backstop.cli import scale

    monkeypatch.setattr(scale, "RUNS", {"fine": ("a run that finishes", ["compare", "--help"], 60),
                                        "broken": ("a run that fails", ["compare", "--traders", "1"], 60)})
    result = CliRunner().invoke(main, ["scale", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    runs = json.loads((tmp_path / "result.json").read_text())["runs"]
    assert [(r["run"], r["outcome"] == "ok", r["within_budget"]) for r in runs] == [("fine", True, True), ("broken", False, False)]
    assert (tmp_path / "report.md").read_text().count("\n| ") == 3  # the header and one row per run
