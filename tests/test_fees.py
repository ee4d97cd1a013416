"""Trading fees: each side of a fill pays its fee on the notional (the taker fee for the order the
fill says took liquidity, the maker fee for the other), settled with its trade, and the batch's
fees reach the insurance vault in one credit (`FeesCollected`). The state machine holds the chain
and the model to the same numbers with fees it draws.

The session's deployment runs without fees (conftest `config`); this module sets the default fees
(maker 0.02%, taker 0.05%) on BTC and ETH for its tests.
"""

import ape
import pytest

from backstop.chain.deployment import ProtocolConfig
from conftest import BTC, ETH, USDC, WAD

BTC_PRICE = 100_000 * WAD
ETH_PRICE = 4_000 * WAD
DEFAULTS = ProtocolConfig().markets
MAKER_FEE, TAKER_FEE = DEFAULTS[BTC].maker_fee, DEFAULTS[BTC].taker_fee


@pytest.fixture(scope="module", autouse=True)
def default_fees(configurator, owner, fund, alice, bob, carol):
    """BTC and ETH at the default fees; alice, bob and carol with 100,000 each (once per module)."""
    for market in (BTC, ETH):
        configurator.set_market_params(market, DEFAULTS[market].params(), sender=owner)
    for account in (alice, bob, carol):
        fund(account, 100_000 * USDC)


def balances(pool, *accounts):
    return [pool.balance_of(account) for account in accounts]


def test_defaults__maker_two_and_taker_five_basis_points(clearinghouse):
    assert (MAKER_FEE, TAKER_FEE) == (2 * 10**14, 5 * 10**14)
    params = clearinghouse.markets(BTC)
    assert (params.maker_fee, params.taker_fee) == (MAKER_FEE, TAKER_FEE)


def test_settle_fills__fees_credited_to_the_vault_once_per_batch(clearinghouse, pool, signer, expiry, alice, bob, carol, stranger):
    vault = clearinghouse.insurance_account()
    before = balances(pool, alice, bob, carol, vault)
    fills = [
        signer.fill(alice.address, bob.address, BTC, WAD // 10, BTC_PRICE, expiry),  # 10,000: alice takes
        signer.fill(carol.address, alice.address, ETH, 2 * WAD, ETH_PRICE, expiry, buyer_is_taker=False),  # 8,000: alice takes
    ]
    receipt = clearinghouse.settle_fills([fill.abi for fill in fills], sender=stranger)
    # 0.05% of 10,000 = 5 and 0.02% = 2; 0.05% of 8,000 = 4 and 0.02% = 1.6.
    trades = list(receipt.events.filter(clearinghouse.Trade))
    assert [(t.buyer_fee, t.seller_fee) for t in trades] == [(5 * USDC, 2 * USDC), (1_600_000, 4 * USDC)]
    updates = {(u.account, u.market): u.settled for u in receipt.events.filter(clearinghouse.PositionUpdate)}
    assert updates == {(alice.address, BTC): -5 * USDC, (bob.address, BTC): -2 * USDC,
                       (carol.address, ETH): -1_600_000, (alice.address, ETH): -4 * USDC}
    assert list(receipt.events.filter(clearinghouse.FeesCollected)) == [clearinghouse.FeesCollected(insurance_account=vault, amount=12_600_000)]
    after = balances(pool, alice, bob, carol, vault)
    assert [a - b for a, b in zip(after, before)] == [-9 * USDC, -2 * USDC, -1_600_000, 12_600_000]


def test_settle_fills__the_taker_flag_moves_the_fee_not_the_vault_income(clearinghouse, pool, signer, expiry, alice, bob, stranger):
    """The submitter says which order took liquidity; a false word shifts at most (taker - maker)
    of the notional from one side to the other and never changes what the vault earns."""
    vault = clearinghouse.insurance_account()
    incomes = []
    for buyer_is_taker in (True, False):
        before = balances(pool, alice, bob, vault)
        fill = signer.fill(alice.address, bob.address, BTC, WAD // 10, BTC_PRICE, expiry, buyer_is_taker=buyer_is_taker)
        clearinghouse.settle_fills([fill.abi], sender=stranger)
        paid = [b - a for a, b in zip(balances(pool, alice, bob, vault), before)]
        incomes.append(-paid[2])
        assert paid[:2] == ([5 * USDC, 2 * USDC] if buyer_is_taker else [2 * USDC, 5 * USDC])
    assert incomes == [7 * USDC, 7 * USDC]


def test_settle_fills__fee_rounds_up_to_a_unit(clearinghouse, pool, signer, expiry, alice, bob, stranger):
    """A fill of 1e-12 BTC (a notional of 1e-7 collateral units) still pays one unit each side."""
    vault = clearinghouse.insurance_account()
    before = balances(pool, alice, bob, vault)
    receipt = clearinghouse.settle_fills([signer.fill(alice.address, bob.address, BTC, 10**6, BTC_PRICE, expiry).abi], sender=stranger)
    assert [b - a for a, b in zip(before, balances(pool, alice, bob, vault))] == [-1, -1, 2]
    assert clearinghouse.FeesCollected(insurance_account=vault, amount=2) in receipt.events


def test_settle_fills__fee_counts_in_the_margin_check(clearinghouse, pool, signer, expiry, fund, bob, stranger, accounts):
    """An account with exactly the initial margin of 0.1 BTC cannot also pay the taker fee on it."""
    dave = accounts[8]
    fund(dave, 1_000 * USDC)
    fill = signer.fill(dave.address, bob.address, BTC, WAD // 10, BTC_PRICE, expiry)
    with ape.reverts("Clearinghouse: below initial margin"):
        clearinghouse.settle_fills([fill.abi], sender=stranger)
    assert pool.balance_of(dave) == 1_000 * USDC
    fund(dave, 5 * USDC)
    clearinghouse.settle_fills([fill.abi], sender=stranger)
    health = clearinghouse.account_health(dave)
    assert health.value == health.initial_margin == 1_000 * USDC


def test_settle_fills__no_fee_no_credit(clearinghouse, configurator, owner, pool, signer, expiry, alice, bob, stranger):
    configurator.set_market_params(BTC, (*DEFAULTS[BTC].params()[:6], 0, 0), sender=owner)
    vault = clearinghouse.insurance_account()
    before = balances(pool, alice, bob, vault)
    receipt = clearinghouse.settle_fills([signer.fill(alice.address, bob.address, BTC, WAD // 10, BTC_PRICE, expiry).abi], sender=stranger)
    assert not list(receipt.events.filter(clearinghouse.FeesCollected))
    assert balances(pool, alice, bob, vault) == before
