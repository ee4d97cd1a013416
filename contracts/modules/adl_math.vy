# pragma version ~=0.4.3
"""
@title adl_math
@notice Policies of auto-deleveraging: ranking keys and how a round's deficit and size are split
        among the winners. The Python reference model (backstop/model/adl.py) implements the same
        functions with the same rounding.
@dev Keys and leverages are 1e18 fixed point. Every split rounds down for the winner in hand and
     the candidate whose weight is all the weight left takes the whole remainder, so the parts
     of a deficit or a size add up to it exactly.
"""

from modules import fixed_point
from modules import margin_math

# @dev Queue ranked by PnL% x effective leverage (BitMEX, Binance, Bybit).
QUEUE_PNL_LEVERAGE: constant(uint256) = 0
# @dev Queue ranked by (mark / entry) x (notional / account value) (Hyperliquid).
QUEUE_HYPERLIQUID: constant(uint256) = 1
# @dev Haircuts pro rata to positive PnL; the vault absorbs what it can, the rest closes pro rata.
PRO_RATA: constant(uint256) = 2
# @dev Haircuts and closes by leverage water-filling; the vault absorbs what it can first.
RISK_AWARE: constant(uint256) = 3
POLICY_COUNT: constant(uint256) = 4


@internal
@pure
def is_queue(policy: uint256) -> bool:
    return policy == QUEUE_PNL_LEVERAGE or policy == QUEUE_HYPERLIQUID


@internal
@pure
def leverage(notional: uint256, account_value: int256) -> uint256:
    """
    @dev notional / account value (1e18). `account_value` must be positive. Floor.
    """
    return notional * fixed_point.WAD // convert(account_value, uint256)


@internal
@pure
def queue_key(policy: uint256, size: int256, entry_price: uint256, price: uint256, account_value: int256) -> uint256:
    """
    @dev A winner's place in a queue (higher goes first), for a profitable position and a
         positive account value. PnL% x effective leverage, where effective leverage is the
         position's mark value over the account's cross-margin value (its mark value minus its
         bankruptcy value); or, for Hyperliquid, the price ratio in the position's favour times
         the same leverage. Floor.
    """
    mark_leverage: uint256 = self.leverage(margin_math.notional(size, price), account_value)
    if policy == QUEUE_PNL_LEVERAGE:
        entry_value: uint256 = max(margin_math.notional(size, entry_price), 1)
        profit: uint256 = convert(margin_math.pnl(size, entry_price, price), uint256)
        return profit * mark_leverage // entry_value
    favour: uint256 = price * fixed_point.WAD // entry_price if size > 0 else entry_price * fixed_point.WAD // price
    return favour * mark_leverage // fixed_point.WAD


@internal
@pure
def share(amount_left: uint256, weight: uint256, weight_left: uint256) -> uint256:
    """
    @dev The part of `amount_left` for `weight` out of `weight_left`. Floor; all of it when
         `weight` is all the weight left, which closes every split exactly; none for no weight.
    """
    if weight == 0:
        return 0
    if weight >= weight_left:
        return amount_left
    return amount_left * weight // weight_left


@internal
@pure
def risk_aware_haircut_weight(profit: uint256, account_leverage: uint256, level: uint256) -> uint256:
    """
    @dev Leverage water-filling of the deficit: winners at or above `level` give all their
         profit, those below give the fraction leverage / level of it. A lower level draws in
         more of the profit; the keeper picks the level whose weights just cover the deficit.
         Floor.
    """
    if account_leverage >= level:
        return profit
    return profit * account_leverage // level


@internal
@pure
def risk_aware_close_weight(size: int256, price: uint256, net_notional: int256, account_value: int256, level: uint256) -> uint256:
    """
    @dev Leverage draining: the base units that bring the account's net (single-factor)
         leverage down to `level`, at most the position. Zero when closing this position would
         raise the account's net exposure (it hedges the rest of the book). Level 0 drains
         nothing in particular: the weight is the position (pro rata by size), the fallback when
         the directional winners alone cannot offset the size. Floor.
    """
    if level == 0:
        return convert(abs(size), uint256)
    if (net_notional > 0) != (size > 0) or net_notional == 0:
        return 0
    target: uint256 = level * convert(account_value, uint256) // fixed_point.WAD
    exposure: uint256 = convert(abs(net_notional), uint256)
    if exposure <= target:
        return 0
    return min(convert(abs(size), uint256), (exposure - target) * fixed_point.NOTIONAL_SCALE // price)


@internal
@pure
def haircut_room(size: int256, closed: uint256, price: uint256, mark: uint256, profit: uint256, account_value: int256) -> uint256:
    """
    @dev The most a winner holding `size` can pay while `closed` of it is force-closed at the
         round's `price`: its profit at that price, and what its account (worth `account_value`
         at the latest `mark`) can lose without going below zero. Closing at the round's price
         instead of the mark gives up the move in between on what is closed (rounded up); the
         haircut moves the entry price (rounded against the winner) and the PnL realised and
         marked round down: two units, and one more per 1e12 base units held.
    """
    signed_closed: int256 = convert(closed, int256) if size > 0 else -convert(closed, int256)
    close_cost: int256 = max(-margin_math.pnl(-signed_closed, price, mark), 0)
    rounding: int256 = 2 + convert(convert(abs(size), uint256) // fixed_point.NOTIONAL_SCALE, int256)
    room: int256 = account_value - close_cost - rounding
    return min(profit, convert(max(room, 0), uint256))
