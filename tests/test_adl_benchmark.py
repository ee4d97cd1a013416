"""The ADL gas benchmark (backstop/sim/adl_benchmark.py, run by `ape run gas`) on a tiny book:
n = 10 positions, one round of k = 2 winners per policy. Asserts the table's shape and that every
measured round charged exactly its deficit; no gas or time thresholds (the benchmark reports those).
"""

from eth_abi import encode

from backstop.chain.deployment import ProtocolConfig, deploy_protocol
from backstop.chain.fast_chain import Function
from backstop.chain.orders import sign_order
from backstop.model.protocol import Order
from backstop.report.gas import adl_sections
from backstop.sim.adl_benchmark import (
    TRANSACTION, FastOrderSigner, derive_accounts, encode_static_array_call, marginal_calls, plan_book, run_from_ape,
)

CHAIN_ID = 31337
VERIFIER = "0x" + "ab" * 20


def test_fast_signer__signs_and_encodes_as_the_project_does(project):
    (buyer, buyer_key), (seller, seller_key) = derive_accounts("test", 2)
    signer = FastOrderSigner(CHAIN_ID, VERIFIER, {buyer: buyer_key, seller: seller_key})
    fills = [signer.fill(buyer, seller, 0, 10**17, 100_000 * 10**18, 2**40).abi, signer.fill(buyer, seller, 1, 3, 7, 2**40).abi]
    for fill in fills:
        for signed, key in ((fill[0], buyer_key), (fill[1], seller_key)):
            assert signed == sign_order(Order(*signed[0]), key, signer.separator)

    abi = next(item for item in project.Clearinghouse.contract_type.abi if getattr(item, "name", None) == "settle_fills")
    function = Function(VERIFIER, abi.model_dump(mode="json", by_alias=True))
    assert encode_static_array_call(function, fills).data == "0x" + (function.selector + encode(function.inputs, [fills])).hex()


def test_plan_book__skips_k_a_book_cannot_hold():
    feasible, skipped, background = plan_book(100, [1, 10, 50, 200, 300])
    assert feasible == [1, 10, 50] and [k for k, _ in skipped] == [200, 300]
    assert background == 48  # + bankrupt + 50 winners + 1 pad = 100
    assert plan_book(10, [2]) == ([2], [], 6)


def test_marginal_calls__per_winner_difference():
    low = {"A.f": [1, 1_000], "A.f → B.g": [1, 300], TRANSACTION: [1, 5_000]}
    high = {"A.f": [11, 11_000], "A.f → B.g": [11, 3_300], TRANSACTION: [1, 25_000]}
    rows = {label: (count, gas) for label, count, gas in marginal_calls(low, high, 10)}
    assert rows["A.f"] == (1.0, 1_000) and rows["A.f → B.g"] == (1.0, 300)
    assert rows[TRANSACTION] == (1.0, 2_000)
    assert sum(gas for label, (_, gas) in rows.items() if "→" not in label and label != TRANSACTION) == 2_000


def test_tiny_benchmark__one_exact_round_per_policy(project, chain, accounts):
    owner, keeper = accounts[0], accounts[1]
    protocol = deploy_protocol(project, owner, keeper, ProtocolConfig())
    result = run_from_ape(chain.provider, protocol, owner.address, keeper.address, [10], [2], ["queue", "pro-rata"], breakdown=False)

    assert [(m.policy, m.n, m.k) for m in result.measurements] == [("queue", 10, 2), ("pro-rata", 10, 2)]
    for m in result.measurements:
        assert m.error is None and m.gas > 0 and m.per_position == m.gas // 2
        assert m.hits == 2 and m.closed
        assert m.haircuts == m.deficit > 0  # Σ haircuts == D, to the unit
    assert result.all_exact and not result.skipped

    table, targets, *rest = adl_sections(result)
    assert len(table.rows) == 2 and all(len(row) == len(table.columns) == 7 for row in table.rows)
    assert all(row[-1] == "yes" for row in table.rows)
    lines = table.markdown().splitlines()
    assert sum(line.startswith("| ") for line in lines) == 1 + 2  # header and one row per round
    assert len(targets.rows) == 6  # three targets per policy
    assert rest and rest[-1].title.startswith("ADL benchmark: time per phase")
