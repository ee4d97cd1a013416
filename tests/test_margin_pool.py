"""MarginPool: deposits, withdrawals against initial margin, clearinghouse-only balance moves, donations."""

import ape
import pytest

from conftest import BTC, ETH, USDC, WAD

NOT_CLEARINGHOUSE = "MarginPool: caller is not the clearinghouse"
NOT_OWNER = "ownable: caller is not the owner"
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


def ceil_div(a, b):
    return -(-a // b)


def pool_state(pool, token, *accounts):
    """Everything the pool keeps, plus the token balances of the pool and the accounts."""
    return {
        "balances": {str(a): pool.balance_of(a) for a in accounts},
        "wallets": {str(a): token.balanceOf(a) for a in accounts},
        "pool_tokens": token.balanceOf(pool),
        "total_deposited": pool.total_deposited(),
        "total_withdrawn": pool.total_withdrawn(),
        "total_held": pool.total_held(),
    }


@pytest.fixture
def mint(owner, token, pool):
    """Mints `amount` to `account` and approves the pool for it, without depositing."""

    def mint(account, amount):
        token.mint(account, amount, sender=owner)
        token.approve(pool, amount, sender=account)

    return mint


# ---------------------------------------------------------------- deposit

def test_deposit__credits_balance_and_moves_tokens(pool, token, mint, alice):
    mint(alice, 1_000 * USDC)
    receipt = pool.deposit(400 * USDC, sender=alice)
    assert pool.Deposit(account=alice, amount=400 * USDC, balance=400 * USDC) in receipt.events
    assert pool.balance_of(alice) == 400 * USDC
    assert pool.total_deposited() == 400 * USDC
    assert pool.total_held() == 400 * USDC
    assert token.balanceOf(alice) == 600 * USDC
    assert token.balanceOf(pool) == 400 * USDC

    receipt = pool.deposit(600 * USDC, sender=alice)
    assert pool.Deposit(account=alice, amount=600 * USDC, balance=1_000 * USDC) in receipt.events
    assert pool.balance_of(alice) == 1_000 * USDC
    assert pool.total_deposited() == 1_000 * USDC
    assert token.balanceOf(alice) == 0
    assert token.balanceOf(pool) == 1_000 * USDC


def test_deposit__zero_amount(pool, token, mint, alice):
    mint(alice, 100 * USDC)
    before = pool_state(pool, token, alice)
    with ape.reverts("MarginPool: zero amount"):
        pool.deposit(0, sender=alice)
    assert pool_state(pool, token, alice) == before


def test_deposit__without_allowance(pool, token, owner, alice):
    token.mint(alice, 100 * USDC, sender=owner)
    before = pool_state(pool, token, alice)
    with ape.reverts():
        pool.deposit(100 * USDC, sender=alice)
    assert pool_state(pool, token, alice) == before


def test_deposit__above_wallet_balance(pool, token, owner, alice):
    token.mint(alice, 100 * USDC, sender=owner)
    token.approve(pool, 2**256 - 1, sender=alice)
    before = pool_state(pool, token, alice)
    with ape.reverts():
        pool.deposit(100 * USDC + 1, sender=alice)
    assert pool_state(pool, token, alice) == before


def test_deposit_for__credits_the_other_account(pool, token, mint, alice, carol):
    mint(carol, 500 * USDC)
    receipt = pool.deposit_for(alice, 300 * USDC, sender=carol)
    assert pool.Deposit(account=alice, amount=300 * USDC, balance=300 * USDC) in receipt.events
    assert pool.balance_of(alice) == 300 * USDC
    assert pool.balance_of(carol) == 0
    assert token.balanceOf(carol) == 200 * USDC
    assert token.balanceOf(alice) == 0
    assert token.balanceOf(pool) == 300 * USDC
    assert pool.total_deposited() == 300 * USDC


def test_deposit_for__zero_amount(pool, token, mint, alice, carol):
    mint(carol, 100 * USDC)
    before = pool_state(pool, token, alice, carol)
    with ape.reverts("MarginPool: zero amount"):
        pool.deposit_for(alice, 0, sender=carol)
    assert pool_state(pool, token, alice, carol) == before


def test_deposit_for__zero_account(pool, token, mint, carol):
    mint(carol, 100 * USDC)
    before = pool_state(pool, token, carol)
    with ape.reverts("MarginPool: zero account"):
        pool.deposit_for(ZERO_ADDRESS, 100 * USDC, sender=carol)
    assert pool_state(pool, token, carol) == before


# ---------------------------------------------------------------- withdraw

def test_withdraw__no_position(pool, token, fund, alice):
    fund(alice, 1_000 * USDC)
    receipt = pool.withdraw(250 * USDC, sender=alice)
    assert pool.Withdrawal(account=alice, amount=250 * USDC, balance=750 * USDC) in receipt.events
    assert pool.balance_of(alice) == 750 * USDC
    assert pool.total_withdrawn() == 250 * USDC
    assert pool.total_held() == 750 * USDC
    assert token.balanceOf(alice) == 250 * USDC
    assert token.balanceOf(pool) == 750 * USDC

    # the whole rest: an account without a position needs no margin
    pool.withdraw(750 * USDC, sender=alice)
    assert pool.balance_of(alice) == 0
    assert pool.total_held() == 0
    assert token.balanceOf(alice) == 1_000 * USDC
    assert token.balanceOf(pool) == 0


def test_withdraw__zero_amount(pool, token, fund, alice):
    fund(alice, 1_000 * USDC)
    before = pool_state(pool, token, alice)
    with ape.reverts("MarginPool: zero amount"):
        pool.withdraw(0, sender=alice)
    assert pool_state(pool, token, alice) == before


def test_withdraw__above_balance(pool, token, fund, alice, bob):
    fund(alice, 1_000 * USDC)
    fund(bob, 1_000 * USDC)
    before = pool_state(pool, token, alice, bob)
    with ape.reverts("MarginPool: amount above balance"):
        pool.withdraw(1_000 * USDC + 1, sender=alice)
    # the pool holds bob's money too, but alice cannot reach it
    assert token.balanceOf(pool) == 2_000 * USDC
    assert pool_state(pool, token, alice, bob) == before


def test_withdraw__no_balance(pool, token, stranger):
    with ape.reverts("MarginPool: amount above balance"):
        pool.withdraw(1, sender=stranger)
    assert pool.balance_of(stranger) == 0


def test_withdraw__below_initial_margin(pool, token, clearinghouse, fund, trade, alice, bob):
    fund(alice, 2_000 * USDC)
    fund(bob, 2_000 * USDC)
    trade(alice, bob, BTC, WAD // 10, 100_000 * WAD)  # 10,000 notional, 1,000 initial margin each
    before = pool_state(pool, token, alice, bob)
    with ape.reverts("MarginPool: withdrawal below initial margin"):
        pool.withdraw(1_500 * USDC, sender=alice)
    with ape.reverts("MarginPool: withdrawal below initial margin"):
        pool.withdraw(2_000 * USDC, sender=bob)
    assert pool_state(pool, token, alice, bob) == before
    assert clearinghouse.positions(alice, BTC).size == WAD // 10


def test_withdraw__exactly_at_initial_margin(pool, token, clearinghouse, config, fund, trade, alice, bob):
    size = 123_456_789_012_345_678  # 0.123... BTC, so the margin requirement rounds
    deposit = 3_333_333_333
    price = 100_000 * WAD
    fund(alice, deposit)
    fund(bob, deposit)
    trade(alice, bob, BTC, size, price)

    health = clearinghouse.account_health(alice)
    expected_initial = ceil_div(size * price * config.markets[BTC].initial_margin, 10**30 * WAD)
    assert health.initial_margin == expected_initial
    assert health.value == deposit  # traded at the mark, no funding yet (mark == index)
    allowed = health.value - health.initial_margin

    before = pool_state(pool, token, alice)
    assert clearinghouse.withdrawable(alice) == allowed
    with ape.reverts("MarginPool: withdrawal below initial margin"):
        pool.withdraw(allowed + 1, sender=alice)
    assert pool_state(pool, token, alice) == before

    receipt = pool.withdraw(allowed, sender=alice)
    assert pool.Withdrawal(account=alice, amount=allowed, balance=deposit - allowed) in receipt.events
    assert pool.balance_of(alice) == expected_initial
    assert token.balanceOf(alice) == allowed
    health = clearinghouse.account_health(alice)
    assert health.value == health.initial_margin

    # not one unit more
    assert clearinghouse.withdrawable(alice) == 0
    with ape.reverts("MarginPool: withdrawal below initial margin"):
        pool.withdraw(1, sender=alice)


def test_withdrawable__balance_without_a_position_nothing_while_bankrupt(pool, clearinghouse, liquidation, walk, fund, trade, alice, bob, stranger):
    fund(alice, 1_900 * USDC)
    fund(bob, 5_000 * USDC)
    assert clearinghouse.withdrawable(bob) == 5_000 * USDC  # no position: the whole balance
    trade(alice, bob, BTC, WAD // 10, 100_000 * WAD)
    walk(BTC, 80_000 * WAD)  # alice -2,000 on 1,900
    liquidation.flag_bankruptcy(alice, sender=stranger)
    assert clearinghouse.withdrawable(alice) == 0
    # bob: 5,000 + 2,000 of profit, 800 initial margin; at most his balance leaves
    assert clearinghouse.withdrawable(bob) == 5_000 * USDC


def test_withdraw__cross_margin_counts_every_market(pool, token, fund, trade, alice, bob):
    fund(alice, 2_000 * USDC)
    fund(bob, 10_000 * USDC)
    trade(alice, bob, BTC, WAD // 100, 100_000 * WAD)  # 100 initial margin
    trade(bob, alice, ETH, WAD // 4, 4_000 * WAD)  # 100 initial margin
    with ape.reverts("MarginPool: withdrawal below initial margin"):
        pool.withdraw(1_800 * USDC + 1, sender=alice)
    pool.withdraw(1_800 * USDC, sender=alice)
    assert pool.balance_of(alice) == 200 * USDC


def test_withdraw__needs_fresh_prices_with_a_position(pool, token, oracle, chain, fund, trade, alice, bob):
    fund(alice, 2_000 * USDC)
    fund(bob, 2_000 * USDC)
    trade(alice, bob, BTC, WAD // 100, 100_000 * WAD)
    chain.mine(deltatime=oracle.staleness() + 1)
    before = pool_state(pool, token, alice)
    with ape.reverts("Oracle: stale price"):
        pool.withdraw(1 * USDC, sender=alice)
    assert pool_state(pool, token, alice) == before


# ---------------------------------------------------------------- clearinghouse only

def test_settle__caller_not_clearinghouse(pool, token, fund, owner, alice, stranger):
    fund(alice, 100 * USDC)
    before = pool_state(pool, token, alice)
    for sender in (owner, alice, stranger):
        with ape.reverts(NOT_CLEARINGHOUSE):
            pool.settle(alice, 10**12, sender=sender)
        with ape.reverts(NOT_CLEARINGHOUSE):
            pool.settle(alice, -100 * USDC, sender=sender)
    assert pool_state(pool, token, alice) == before


def test_transfer_balance__caller_not_clearinghouse(pool, token, fund, owner, alice, stranger):
    fund(alice, 100 * USDC)
    before = pool_state(pool, token, alice, stranger)
    for sender in (owner, alice, stranger):
        with ape.reverts(NOT_CLEARINGHOUSE):
            pool.transfer_balance(alice, stranger, 100 * USDC, sender=sender)
    assert pool_state(pool, token, alice, stranger) == before


def test_set_clearinghouse__only_once(pool, owner, stranger, clearinghouse):
    with ape.reverts("MarginPool: clearinghouse already set"):
        pool.set_clearinghouse(stranger, sender=owner)
    assert pool.clearinghouse() == clearinghouse.address


def test_set_clearinghouse__not_owner(pool, stranger, clearinghouse):
    with ape.reverts(NOT_OWNER):
        pool.set_clearinghouse(stranger, sender=stranger)
    assert pool.clearinghouse() == clearinghouse.address


def test_set_clearinghouse__fresh_pool(project, owner, stranger, token, clearinghouse):
    fresh = owner.deploy(project.MarginPool, token)
    assert fresh.clearinghouse() == ZERO_ADDRESS
    with ape.reverts(NOT_OWNER):
        fresh.set_clearinghouse(clearinghouse, sender=stranger)
    with ape.reverts("MarginPool: zero clearinghouse"):
        fresh.set_clearinghouse(ZERO_ADDRESS, sender=owner)
    assert fresh.clearinghouse() == ZERO_ADDRESS

    receipt = fresh.set_clearinghouse(clearinghouse, sender=owner)
    assert fresh.UpdateClearinghouse(clearinghouse=clearinghouse) in receipt.events
    assert fresh.clearinghouse() == clearinghouse.address
    with ape.reverts("MarginPool: clearinghouse already set"):
        fresh.set_clearinghouse(stranger, sender=owner)


def test_init__zero_collateral(project, owner):
    with ape.reverts("MarginPool: zero collateral"):
        owner.deploy(project.MarginPool, ZERO_ADDRESS)


# ---------------------------------------------------------------- donations

def test_donation__changes_no_balance_nor_total_held(pool, token, owner, fund, alice, stranger):
    fund(alice, 1_000 * USDC)
    before = pool_state(pool, token, alice, stranger)
    token.mint(stranger, 5_000 * USDC, sender=owner)
    token.transfer(pool, 5_000 * USDC, sender=stranger)

    assert token.balanceOf(pool) == before["pool_tokens"] + 5_000 * USDC
    assert pool.balance_of(alice) == before["balances"][str(alice)]
    assert pool.balance_of(stranger) == 0
    assert pool.total_held() == before["total_held"] == 1_000 * USDC
    assert pool.total_deposited() == before["total_deposited"]
    assert pool.total_withdrawn() == before["total_withdrawn"]

    # the donation is not withdrawable by anyone, alice can take exactly her own
    with ape.reverts("MarginPool: amount above balance"):
        pool.withdraw(1, sender=stranger)
    with ape.reverts("MarginPool: amount above balance"):
        pool.withdraw(1_000 * USDC + 1, sender=alice)
    pool.withdraw(1_000 * USDC, sender=alice)
    assert pool.total_held() == 0
    assert token.balanceOf(pool) == 5_000 * USDC


def test_withdraw__pool_short_while_a_deficit_is_open(pool, token, clearinghouse, fund, alice, bob):
    """An account 300 under water (its loss realised, nobody has covered it yet) leaves the positive
    balances 300 above what the pool holds: the last withdrawal waits with a reason instead of
    failing in the token, and goes through once the deficit is covered."""
    fund(alice, 1_000 * USDC)
    fund(bob, 1_000 * USDC)
    ch = ape.accounts[clearinghouse.address]  # impersonated: the pool's only settler
    ape.chain.set_balance(clearinghouse.address, 10**18)  # gas money for the impersonated sender
    pool.settle(alice, -1_300 * USDC, sender=ch)
    pool.settle(bob, 1_300 * USDC, sender=ch)
    assert (pool.balance_of(alice), pool.balance_of(bob), pool.total_held()) == (-300 * USDC, 2_300 * USDC, 2_000 * USDC)
    with ape.reverts("MarginPool: pool short until an open deficit is covered"):
        pool.withdraw(2_300 * USDC, sender=bob)
    assert (pool.balance_of(bob), token.balanceOf(pool)) == (2_300 * USDC, 2_000 * USDC)
    pool.withdraw(2_000 * USDC, sender=bob)
    fund(alice, 300 * USDC)  # the deficit covered
    pool.withdraw(300 * USDC, sender=bob)
    assert (pool.balance_of(alice), pool.balance_of(bob), pool.total_held()) == (0, 0, 0)
