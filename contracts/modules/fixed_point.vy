# pragma version ~=0.4.3
"""
@title fixed_point
@notice Integer division with an explicit rounding direction.
@dev Vyper's signed `//` truncates toward zero, which rounds a negative amount in the trader's
     favour. Every protocol amount that can be negative goes through `floor_div`, so an account is
     always credited the lower integer: rounding dust stays in the pool.
"""

# @dev 1.0 in the 1e18 fixed point used for prices, sizes and fractions.
WAD: constant(uint256) = 10**18

# @dev size (1e18) x price (1e18) / NOTIONAL_SCALE = collateral units (1e6).
NOTIONAL_SCALE: constant(uint256) = 10**30


@internal
@pure
def floor_div(numerator: int256, denominator: int256) -> int256:
    """
    @dev Division rounded toward negative infinity. `denominator` must be positive.
    """
    quotient: int256 = numerator // denominator
    if numerator % denominator != 0 and numerator < 0:
        quotient -= 1
    return quotient


@internal
@pure
def ceil_div(numerator: uint256, denominator: uint256) -> uint256:
    """
    @dev Unsigned division rounded up.
    """
    return (numerator + denominator - 1) // denominator
