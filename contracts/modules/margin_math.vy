# pragma version ~=0.4.3
"""
@title margin_math
@notice Pure formulas of the margin system: PnL, funding, notional, margin requirements and entry
        prices. The Python reference model (backstop/model/protocol.py) implements the same functions with
        the same rounding.
@dev Units: sizes and prices 1e18 fixed point, collateral 1e6. Every result rounds in the pool's
     favour, as each docstring says.
"""

from modules import fixed_point


@internal
@pure
def pnl(size: int256, entry_price: uint256, price: uint256) -> int256:
    """
    @dev PnL of `size` opened at `entry_price` and valued at `price`, in collateral units.
         Floor: a gain rounds down, a loss rounds up.
    """
    move: int256 = convert(price, int256) - convert(entry_price, int256)
    return fixed_point.floor_div(size * move, convert(fixed_point.NOTIONAL_SCALE, int256))


@internal
@pure
def funding_payment(size: int256, index_now: int256, index_snapshot: int256) -> int256:
    """
    @dev Funding received (negative: paid) by `size` since the index stood at `index_snapshot`.
         A rising index means longs pay shorts. Floor: a payment rounds up, a receipt down, so
         what shorts receive never exceeds what longs pay.
    """
    return fixed_point.floor_div(-size * (index_now - index_snapshot), convert(fixed_point.NOTIONAL_SCALE, int256))


@internal
@pure
def margin_requirement(size: int256, price: uint256, fraction: uint256) -> uint256:
    """
    @dev |size| x price x fraction in collateral units. Ceiling: the requirement rounds up.
    """
    return fixed_point.ceil_div(convert(abs(size), uint256) * price * fraction, fixed_point.NOTIONAL_SCALE * fixed_point.WAD)


@internal
@pure
def notional(size: int256, price: uint256) -> uint256:
    """
    @dev |size| x price in collateral units. Floor: used for what the pool pays out (fees are
         a fraction of it, so they round down with it).
    """
    return convert(abs(size), uint256) * price // fixed_point.NOTIONAL_SCALE


@internal
@pure
def blended_entry_price(size: int256, entry_price: uint256, added: int256, price: uint256) -> uint256:
    """
    @dev Entry price after adding `added` (same direction as `size`, or `size` == 0) at `price`:
         the size-weighted average. Rounded against the holder: up for a long, down for a short.
    """
    old_abs: uint256 = convert(abs(size), uint256)
    added_abs: uint256 = convert(abs(added), uint256)
    weighted: uint256 = old_abs * entry_price + added_abs * price
    total: uint256 = old_abs + added_abs
    if added > 0:
        return fixed_point.ceil_div(weighted, total)
    return weighted // total


@internal
@pure
def funding_index_delta(index_price: uint256, mark_price: uint256, premium_cap: uint256, elapsed: uint256, period: uint256) -> int256:
    """
    @dev Growth of the cumulative funding index (price units per base unit) over `elapsed`
         seconds: the premium of mark over index, capped at `premium_cap` x index, paid in full
         once per `period`. Floor. Both sides use the same index, so this rounding moves no value
         between them; the per-account floor in `funding_payment` keeps the dust in the pool.
    """
    premium: int256 = convert(mark_price, int256) - convert(index_price, int256)
    cap: int256 = convert(premium_cap * index_price // fixed_point.WAD, int256)
    premium = max(-cap, min(premium, cap))
    return fixed_point.floor_div(premium * convert(elapsed, int256), convert(period, int256))
