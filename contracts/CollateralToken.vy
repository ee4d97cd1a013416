# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title CollateralToken
@notice A USDC-like test collateral for local chains: 6 decimals, minted by the deployer only.
@dev Built on snekmate's audited ERC-20 (with EIP-2612 permit). `set_minter` and the ownership
     transfers are not exported, so the deployer stays the one and only minter.
"""

from snekmate.auth import ownable
from snekmate.tokens import erc20

initializes: ownable
initializes: erc20[ownable := ownable]

exports: (
    erc20.IERC20,
    erc20.IERC20Detailed,
    erc20.mint,
    erc20.is_minter,
    erc20.owner,
    erc20.permit,
    erc20.nonces,
    erc20.DOMAIN_SEPARATOR,
    erc20.eip712Domain,
)

# @dev USDC's decimals: the whole protocol counts collateral in 1e6 units.
COLLATERAL_DECIMALS: constant(uint8) = 6


@deploy
def __init__(name: String[25], symbol: String[5]):
    """
    @notice Deploys the token; the deployer becomes its only minter.
    @param name The token name, e.g. "Backstop USD".
    @param symbol The token symbol, e.g. "bUSD".
    """
    ownable.__init__()
    erc20.__init__(name, symbol, COLLATERAL_DECIMALS, name, "1")
