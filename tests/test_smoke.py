from conftest import BTC, USDC, WAD


def test_token__decimals_and_minter(token, owner, alice):
    token.mint(alice, 10**6, sender=owner)
    assert token.decimals() == 6
    assert token.balanceOf(alice) == 10**6


def test_settle_fills__opens_long_and_short(clearinghouse, signer, fund, trade, alice, bob):
    fund(alice, 10_000 * USDC)
    fund(bob, 10_000 * USDC)
    receipt = trade(alice, bob, BTC, WAD // 10, 100_000 * WAD)
    assert clearinghouse.positions(alice, BTC).size == WAD // 10
    assert clearinghouse.positions(bob, BTC).size == -(WAD // 10)
    assert clearinghouse.long_open_interest(BTC) == clearinghouse.short_open_interest(BTC) == WAD // 10
    print("gas", receipt.gas_used)
