def test_token__decimals_and_minter(project, accounts):
    deployer, alice = accounts[0], accounts[1]
    token = deployer.deploy(project.CollateralToken, "Backstop USD", "bUSD")
    token.mint(alice, 10**6, sender=deployer)
    assert token.decimals() == 6
    assert token.balanceOf(alice) == 10**6
