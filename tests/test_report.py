"""The crash report (backstop/report/crash.py): files, links, the console summary, and the inequality
measures (backstop/sim/inequality.py), on a small hand-made result. No chain."""

import re

import pytest

from backstop.report.crash import MAX_SUMMARY_LINES, PLOT_FILES, summary_lines, write_report
from backstop.sim.inequality import gini, largest_share

STEPS = 6


def policy(name, closed_over_deficit, haircuts):
    deficit = float(sum(haircuts))
    return {
        "policy": name,
        "deficit": deficit,
        "haircuts": deficit,
        "notional_closed": closed_over_deficit * deficit,
        "min_notional_closed": 2.0 * deficit,
        "closed_over_deficit": closed_over_deficit,
        "gini": gini(haircuts),
        "largest_share": largest_share(haircuts),
        "winners_hit": sum(1 for h in haircuts if h > 0),
        "hedged_hit": 1,
        "vault_pnl": 12_345.0,
        "residual_bad_debt": 0.0,
        "haircuts_list": [float(h) for h in haircuts],
    }


def crash_result(with_policies=True):
    result = {
        "scenario": {"seed": 3, "traders": 40, "steps": STEPS, "markets": ["BTC-PERP", "ETH-PERP", "SOL-PERP"]},
        "prices": [[100_000.0 - 2_000 * s, 4_000.0 - 150 * s, 200.0 - 20 * s] for s in range(STEPS)],
        "times": [60 * s for s in range(STEPS)],
        "layers_by_step": [
            {"liquidated": 1e6 * s, "backstopped": 5e5 * (s > 2), "adl_closed": 2e5 * (s > 3)} for s in range(STEPS)
        ],
        "vault_equity": [3e6, 3.1e6, 2.5e6, 1.9e6, 2.2e6, 2.6e6],
        "totals": {
            "liquidated": 15e6, "backstopped": 1.5e6, "adl_closed": 4e5, "deficit": 81_000.0, "vault_pnl": -400_000.0,
            "accounts_liquidated": 21, "accounts_backstopped": 4, "accounts_adl": 2, "winners_hit": 9,
        },
        "invariants": [
            {"name": "open interest balances", "held": True, "detail": "long == short in 3 markets"},
            {"name": "Σ haircuts == deficit", "held": False, "detail": "off by 1 unit | rounding"},
        ],
    }
    if with_policies:
        result["policies"] = [
            policy("queue-binance", 28.0, [40_000, 30_000, 11_000]),
            policy("pro-rata", 6.5, [20_000, 20_000, 20_000, 21_000]),
            policy("risk-aware", 3.1, [0, 50_000, 31_000]),
        ]
    return result


def test_report_writes_markdown_and_every_plot(tmp_path):
    report = write_report(tmp_path / "out", crash_result())
    assert report == tmp_path / "out" / "report.md"
    text = report.read_text()
    for file_name in PLOT_FILES.values():
        assert (report.parent / file_name).read_bytes().startswith(b"\x89PNG")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert sorted(links) == sorted(PLOT_FILES.values())
    assert all((report.parent / link).exists() for link in links)
    assert text.startswith("# ")
    assert "seed 3, 40 traders, 6 steps" in text
    assert "| open interest balances | ✓ |" in text and "| Σ haircuts == deficit | ✗ |" in text
    assert "off by 1 unit \\| rounding" in text  # a pipe in a detail does not break the table
    assert "| queue-binance | $81,000 |" in text and "28.0x" in text
    assert "-$400,000" in text
    for table in re.findall(r"(?:^\|.*\|\n)+", text, flags=re.MULTILINE):
        rows = [row.replace("\\|", "") for row in table.splitlines()]
        assert len({row.count("|") for row in rows}) == 1, table


def test_report_without_policies_has_no_policy_plots(tmp_path):
    text = write_report(tmp_path, crash_result(with_policies=False)).read_text()
    assert "ADL policies" not in text
    assert not (tmp_path / PLOT_FILES["adl_overshoot"]).exists()
    assert not (tmp_path / PLOT_FILES["haircuts"]).exists()
    assert (tmp_path / PLOT_FILES["vault_equity"]).exists()


def test_summary_lines_fit_one_screen():
    lines = summary_lines(crash_result())
    assert len(lines) <= MAX_SUMMARY_LINES
    assert any("queue-binance" in line and "28.0x" in line for line in lines)
    assert any("1 of 2 held" in line and "Σ haircuts == deficit" in line for line in lines)
    many = crash_result()
    many["policies"] = [policy(f"policy-{i}", 1.0 + i, [1, 2, 3]) for i in range(40)]
    lines = summary_lines(many)
    assert len(lines) == MAX_SUMMARY_LINES and lines[-1].startswith("... and ")


@pytest.mark.parametrize(
    "values, expected",
    [
        ([1, 1, 1, 1], 0.0),
        ([0, 0, 0, 1], 0.75),  # n-normalised: one payer of n gives (n - 1) / n
        ([5], 0.0),
        ([], 0.0),
        ([0, 0], 0.0),
        ([1, 3], 0.25),  # Σ|xi - xj| = 4 over 2 n Σx = 16
        ([1, 2, 3, 4], 0.25),
    ],
)
def test_gini(values, expected):
    assert gini(values) == pytest.approx(expected, abs=1e-15)
    assert gini(list(reversed(values))) == gini(values)


def test_gini_refuses_negative_amounts():
    with pytest.raises(ValueError):
        gini([1, -1])


@pytest.mark.parametrize(
    "values, expected",
    [([1, 1, 1, 1], 0.25), ([0, 0, 0, 1], 1.0), ([1, 3], 0.75), ([], 0.0), ([0, 0], 0.0), ([2.5, 7.5], 0.75)],
)
def test_largest_share(values, expected):
    assert largest_share(values) == pytest.approx(expected)
