"""The crash report (backstop/report/crash.py) and the policy study's (backstop/report/study.py): files,
links, tables that add up, definitions for every column, the console summary; and the inequality
measures (backstop/sim/inequality.py). On small hand-made results and one small model study. No chain."""

import json
import re

import pytest

from backstop.chain.deployment import ProtocolConfig
from backstop.cli.writing import write_json
from backstop.report import crash as crash_report
from backstop.report import study as study_report
from backstop.report.crash import MAX_SUMMARY_LINES, PLOT_FILES, summary_lines, write_report
from backstop.report.format import dollars, exact_dollars, text_table
from backstop.report.who_paid import HEADERS
from backstop.sim.attribution import Ledger, record_adl_rounds, record_liquidations, record_takeovers, who_paid
from backstop.sim.inequality import gini, largest_share
from backstop.sim.sweep import SerialRunner
from backstop.sim.study import run_study

STEPS = 6
USDC = 10**6
WAD = 10**18


def attribution():
    """Two longs (one liquidated, one taken over at a deficit and then sent to ADL... paid by the
    short), a liquidator and the vault, with hand-set end values."""
    ledger = Ledger()
    for account, amount in (("long1", 100), ("long2", 50), ("short", 300), ("liq", 1000), ("vault", 500)):
        ledger.put_in[account] = amount * USDC
    record_liquidations(ledger, [("long1", "liq", 3 * USDC, 2 * USDC)], "vault")
    record_takeovers(ledger, [("long2", -7 * USDC)], "vault")
    record_adl_rounds(ledger, [{"account": "long1", "haircut_by_winner": {"short": 11 * USDC}, "residual": 1}], "vault")
    ends = {"long1": 0, "long2": 0, "short": 420 * USDC, "liq": 1003 * USDC, "vault": 526 * USDC}
    ledger.end.update(ends)
    kinds = {"long1": "crowded_long", "long2": "crowded_long", "short": "basis_short", "liq": "liquidator", "vault": "insurance_vault"}
    return who_paid(ledger, kinds)


def crash_result():
    table = attribution()
    return {
        "schema": "backstop.crash", "schema_version": 1,
        "scenario": {"seed": 3, "traders": 40, "steps": STEPS, "run_up_blocks": 12, "markets": ["BTC-PERP", "ETH-PERP", "SOL-PERP"],
                     "vault_deposit": 500 * USDC},
        "prices": [[(100_000 - 2_000 * s) * WAD, (4_000 - 150 * s) * WAD, (200 - 20 * s) * WAD] for s in range(STEPS)],
        "times": [60 * s for s in range(STEPS)],
        "layers_by_step": [{"liquidated": 10**12 * s, "backstopped": 5 * 10**11 * (s > 2), "adl_closed": 0, "adl_absorbed": 2 * 10**11 * (s > 3)}
                           for s in range(STEPS)],
        "vault_equity": [3 * 10**12, 31 * 10**11, 25 * 10**11, 19 * 10**11, 22 * 10**11, 26 * 10**11],
        "vault_equity_start": 3 * 10**12,
        "totals": {"liquidated": 15 * 10**12, "backstopped": 15 * 10**11, "adl_closed": 0, "adl_absorbed": 4 * 10**11, "deficit": 81_000 * USDC,
                   "vault_pnl": -400_000 * USDC, "residual_bad_debt": 0, "accounts_liquidated": 21, "accounts_backstopped": 4,
                   "accounts_refused": 3, "accounts_adl": 2, "adl_rounds": 2, "winners_hit": 9},
        "refusals": {"loss above the vault's allowance": {"attempts": 5, "accounts": 3}},
        "who_paid": table,
        "invariants": [{"name": "open interest balances", "held": True, "detail": "long == short in 3 markets"},
                       {"name": "Σ haircuts == deficit", "held": False, "detail": "off by 1 unit | rounding"}],
        "policy": {"policy": "risk-aware", "deficit": 81_000 * USDC, "haircuts": 81_000 * USDC, "notional_closed": 0,
                   "min_notional_closed": 0, "notional_absorbed": 4 * 10**11, "closed_over_deficit": 0.0, "gini": 0.5,
                   "largest_share": 0.4, "winners_hit": 9, "hedged_hit": 2, "rounds": 2, "vault_pnl": -400_000 * USDC,
                   "vault_equity_low": 19 * 10**11, "residual_bad_debt": 0, "haircuts_list": [10 * USDC, 20 * USDC, 51_000 * USDC]},
    }


def test_who_paid_adds_up_to_the_unit_in_every_column():
    table = attribution()
    total = table.pop("total")
    for column in ("pnl", "market", "liquidation_discount", "liquidation_penalty", "takeover_collateral", "takeover_deficit", "adl_haircut",
                   "adl_residual"):
        assert sum(row[column] for row in table.values()) == total[column] == 0, column
    assert total["end"] == total["put_in"] == 1950 * USDC
    # the hand-made story, row by row
    longs, vault, short = table["crowded_long"], table["insurance_vault"], table["basis_short"]
    assert longs["liquidation_discount"] == -3 * USDC and longs["liquidation_penalty"] == -2 * USDC
    assert longs["takeover_deficit"] == 7 * USDC and vault["takeover_deficit"] == -7 * USDC
    assert longs["adl_haircut"] == 11 * USDC and short["adl_haircut"] == -11 * USDC
    assert longs["adl_residual"] == -1 and vault["adl_residual"] == 1
    assert longs["pnl"] == -150 * USDC and longs["accounts"] == 2
    assert longs["market"] == -150 * USDC - (-3 - 2 + 7 + 11) * USDC + 1
    # the pool keeps what the accounts are no longer worth: 1950 put in, 1949 left in the accounts
    assert table["pool"]["pnl"] == table["pool"]["end"] == 1 * USDC


def test_who_paid_refuses_a_transfer_to_an_account_of_no_kind():
    ledger = Ledger()
    record_takeovers(ledger, [("stranger", 5)], "vault")
    with pytest.raises(ValueError, match="no kind"):
        who_paid(ledger, {"vault": "insurance_vault"})


def test_exact_dollars():
    assert exact_dollars(1_234_567_891) == "$1,234.567891" and exact_dollars(-5) == "-$0.000005" and exact_dollars(0) == "$0.000000"


def tables(text: str) -> list[list[str]]:
    return [block.splitlines() for block in re.findall(r"(?:^\|.*\|\n)+", text + "\n", flags=re.MULTILINE)]


def test_text_table__figures_wider_than_their_header_keep_their_columns():
    """compare's summary at 100,000 traders: a 14-character figure ran into the next column."""
    lines = text_table(["policy", "vault PnL", "vault open"], [["queue", "-18,747,854", "1,113,006,478"], ["pro-rata", "-5", "0"]])
    assert lines == [
        "policy      vault PnL     vault open",
        "queue     -18,747,854  1,113,006,478",
        "pro-rata           -5              0",
    ]


def test_crash_report_writes_markdown_every_plot_and_defines_every_column(tmp_path):
    report = write_report(tmp_path / "out", crash_result())
    text = report.read_text()
    for file_name in PLOT_FILES.values():
        assert (report.parent / file_name).read_bytes().startswith(b"\x89PNG")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert sorted(links) == sorted(PLOT_FILES.values())
    assert text.startswith("# Backstop crash replay")
    assert "seed 3, 40 traders, 6 blocks after a 12-block run-up" in text and "ADL policy risk-aware" in text
    assert "| open interest balances | ✓ |" in text and "| Σ haircuts == deficit | ✗ |" in text
    assert "off by 1 unit \\| rounding" in text
    assert "| notional the vault absorbed inside ADL | $400,000 |" in text
    assert "| loss above the vault's allowance | 5 | 3 |" in text
    assert "| **total** | 5 | $1,950.000000 | $1,950.000000 | $0.000000 |" in text
    for block in tables(text):
        rows = [row.replace("\\|", "") for row in block]
        assert len({row.count("|") for row in rows}) == 1, block
    definitions = set(re.findall(r"^- \*\*(.+?)\*\*:", text, flags=re.MULTILINE))
    headers = {cell.strip() for block in tables(text) for cell in block[0].strip("|").split("|")}
    undefined = headers - definitions - {"measure", "value", "who", "policy", "invariant", "held", "detail", "limit (the vault's reason)",
                                         "refusals", "accounts"}
    assert undefined == set(), undefined
    assert set(HEADERS.values()) <= definitions


def test_crash_report_overshoot_plot_labels_a_policy_that_closes_nothing(tmp_path, monkeypatch):
    labels = []
    real = crash_report.plots.overshoot

    def spy(out_dir, name, metrics):
        labels.extend((m["policy"], m["notional_closed"]) for m in metrics)
        return real(out_dir, name, metrics)

    monkeypatch.setattr(crash_report.plots, "overshoot", spy)
    write_report(tmp_path, crash_result())
    assert labels == [("risk-aware", 0)]
    assert (tmp_path / PLOT_FILES["adl_overshoot"]).stat().st_size > 5_000


def test_summary_lines_fit_one_screen():
    lines = summary_lines(crash_result())
    assert len(lines) <= MAX_SUMMARY_LINES
    assert any("ADL absorbed" in line and "$400,000" in line for line in lines)
    assert any("1 of 2 held" in line and "Σ haircuts == deficit" in line for line in lines)
    assert any("deficits covered $7" in line for line in lines)


@pytest.fixture(scope="module")
def study():
    return run_study(60, 12, [0, 1], [0, 2], ProtocolConfig(), vault_fractions=(0.1, 0.2), runner=SerialRunner())


def test_study_has_mean_and_spread_over_seeds_and_the_seed_list(study):
    # 2 seeds x 2 policies, the second vault size x 2 policies, the first seed without volunteers x 2 policies.
    assert study["seeds"] == [0, 1] and study["schema"] == "backstop.policy-study" and study["replays"] == 8
    queue = study["by_policy"]["queue-pnl-leverage"]
    per_seed = [row["notional_closed"] for row in queue["per_seed"]]
    assert [row["seed"] for row in queue["per_seed"]] == [0, 1]
    summary = queue["summary"]["notional_closed"]
    assert summary["mean"] == sum(per_seed) / 2 and summary["min"] == min(per_seed) and summary["max"] == max(per_seed)
    assert summary["std"] == pytest.approx(abs(per_seed[0] - per_seed[1]) / 2)
    assert set(study["reference"]) == {"queue-pnl-leverage", "pro-rata"}
    sweep = study["vault_sweep"]
    assert sweep["fractions"] == [0.1, 0.2] and sweep["vault_capital"][0] < sweep["vault_capital"][1]


def test_tradeoff_text__queues_that_force_close_more_are_weighed_by_what_they_close():
    def policy(closed, absorbed, pnl, hit):
        figures = dict(deficit=1_000 * USDC, notional_closed=closed, notional_absorbed=absorbed, vault_pnl=pnl, winners_hit=hit, hedged_hit=0,
                       closed_over_deficit=closed / (1_000 * USDC), gini=0.5, volunteer_taken=0)
        return {"summary": {name: {"mean": value} for name, value in figures.items()}}

    study = {"by_policy": {"queue-pnl-leverage": policy(5_000 * USDC, 0, 200 * USDC, 3), "pro-rata": policy(1_000 * USDC, 4_000 * USDC, -300 * USDC, 40)},
             "vault_sweep": {"fractions": [0.2]}}
    text = " ".join(study_report.tradeoff_text(study))
    assert "So the choice is between $4,000 of winners' positions closed against their will, concentrated on the most levered (queues), " \
           "and $500 of vault PnL" in text
    assert "after volunteers took" not in text


def test_study_report_and_its_json_reproduce_the_numbers(tmp_path, study):
    report = study_report.write_study_report(tmp_path, study, agreement=[])
    write_json(tmp_path / "result.json", study)
    text, saved = report.read_text(), json.loads((tmp_path / "result.json").read_text())
    assert text.startswith("# Backstop ADL policy study")
    assert "seeds 0, 1 (2)" in text and "chain and model agree on every figure" in text
    assert "## The central trade-off" in text and "## Vault size" in text
    # the queue's volunteers are named beside what it force-closed: $0 alone would read as "no ADL"
    for name in ("queue-pnl-leverage", "pro-rata"):
        taken = saved["by_policy"][name]["summary"]["volunteer_taken"]["mean"]
        assert taken > 0 and f"after volunteers took {dollars(taken)} of the bankrupt positions" in text, name
    # nothing force-closed under either: the queues' side of the choice is their concentrated haircuts
    assert saved["by_policy"]["queue-pnl-leverage"]["summary"]["notional_closed"]["mean"] == 0
    assert "So the choice is between haircuts concentrated on 6 winners, the most levered first (queues)" in text
    assert "## Volunteers before forced ADL, and the vault's unwind (issue 15)" in text
    step = study["volunteer_step"]["policies"]["queue-pnl-leverage"]
    assert step["closed_drop"] == step["without"]["notional_closed"] - step["with"]["notional_closed"]
    assert saved["volunteer_step"] == json.loads(json.dumps(study["volunteer_step"]))
    for file_name in study_report.PLOT_FILES.values():
        assert (tmp_path / file_name).read_bytes().startswith(b"\x89PNG")
    # every mean in the report comes from the JSON
    for name, entry in saved["by_policy"].items():
        mean = entry["summary"]["vault_pnl"]["mean"]
        assert crash_report.policy_cell("vault_pnl", mean) in text, name
    # each policy's who-paid column sums to zero
    for entry in saved["reference"].values():
        assert sum(row["pnl"] for kind, row in entry["who_paid"].items() if kind != "total") == 0


@pytest.mark.parametrize(
    "values, expected",
    [([1, 1, 1, 1], 0.0), ([0, 0, 0, 1], 0.75), ([5], 0.0), ([], 0.0), ([0, 0], 0.0), ([1, 3], 0.25), ([1, 2, 3, 4], 0.25)],
)
def test_gini(values, expected):
    assert gini(values) == pytest.approx(expected, abs=1e-15)
    assert gini(list(reversed(values))) == gini(values)


def test_gini_refuses_negative_amounts():
    with pytest.raises(ValueError):
        gini([1, -1])


@pytest.mark.parametrize("values, expected", [([1, 1, 1, 1], 0.25), ([0, 0, 0, 1], 1.0), ([1, 3], 0.75), ([], 0.0), ([0, 0], 0.0), ([2.5, 7.5], 0.75)])
def test_largest_share(values, expected):
    assert largest_share(values) == pytest.approx(expected)
