"""Heavy runs, skipped unless BACKSTOP_SCALE=1 (README, "Tests"): the crash on chain and the policy
study on the model at 10,000 traders, end to end through the command line, and what they produce.
How long they take is `bin/backstop run scale`'s business (backstop/cli/scale.py), not a test's."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(os.environ.get("BACKSTOP_SCALE") != "1", reason="heavy: set BACKSTOP_SCALE=1 to run")


def run(*args) -> None:
    done = subprocess.run([sys.executable, "-m", "backstop.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def test_crash_on_chain_at_10000_traders_under_a_queue(tmp_path):
    run("crash", "--traders", "10000", "--policy", "queue-pnl-leverage", "--out", str(tmp_path))
    result = json.loads((tmp_path / "result.json").read_text())
    assert [i["name"] for i in result["invariants"] if not i["held"]] == []


def test_study_at_10000_traders_on_one_seed(tmp_path):
    run("compare", "--no-chain", "--traders", "10000", "--seeds", "1", "--out", str(tmp_path))
    study = json.loads((tmp_path / "result.json").read_text())
    assert study["invariants_held"] and study["seeds"] == [0]
    queues = [study["reference"][name]["metrics"]["haircuts_list"] for name in ("queue-pnl-leverage", "queue-hyperliquid")]
    assert queues[0] != queues[1]
