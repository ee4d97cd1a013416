# pragma version ~=0.4.3
"""
@title adl_candidates
@notice How the ADL contracts see a position: its profit at a price, its account's value, its
        place in a policy's order, and how much of a bankrupt position the insurance vault can
        take. The AdlEngine acts on it; the AdlRanking views let anyone audit a keeper with it.
        The Python reference model (backstop/model/adl.py) computes the same figures.
@dev Reads the clearinghouse and the oracle; writes nothing. Floor on every bound.
"""

from interfaces import IInsuranceVault
from interfaces import IOracle
from interfaces import IVolunteerAuctions
from interfaces import IWaterfallClearinghouse
from modules import adl_math
from modules import fixed_point
from modules import margin_math


struct Candidate:
    size: int256
    # @dev unrealised PnL at the round's price, positive
    profit: uint256
    # @dev cross-margin account value, positive
    value: int256
    # @dev the policy's ranking key
    key: uint256
    # @dev cross-margin leverage on the account's net exposure (risk-aware)
    net_leverage: uint256
    # @dev signed sum of the account's notionals over its markets (risk-aware)
    net_notional: int256

struct Entry:
    # @dev why it is skipped (a SKIP_* code), or PROCESS
    skip: uint256
    # @dev the winner evaluated at the round's price (left empty for a skipped entry)
    candidate: Candidate


MAX_MARKETS: constant(uint256) = 16
# @dev Largest list of winners in one `AdlEngine.execute`; the clearinghouse takes as many transfers.
MAX_CANDIDATES: constant(uint256) = 400
# @dev An entry of `execute` is processed, or skipped for one of these reasons (the first four
#      found when AdlRanking.evaluate_winners evaluates it, the others by the engine).
PROCESS: constant(uint256) = 0
SKIP_BANKRUPT: constant(uint256) = 1
SKIP_SIDE: constant(uint256) = 2
SKIP_UNPROFITABLE: constant(uint256) = 3
SKIP_NO_VALUE: constant(uint256) = 4
SKIP_ORDER: constant(uint256) = 5
SKIP_WEIGHT: constant(uint256) = 6
SKIP_RESOLVED: constant(uint256) = 7


# @dev Positions, account values and flags.
clearinghouse: public(immutable(IWaterfallClearinghouse))
# @dev Mark prices.
oracle: public(immutable(IOracle))


@deploy
def __init__(clearing: IWaterfallClearinghouse, price_oracle: IOracle):
    clearinghouse = clearing
    oracle = price_oracle


@internal
@view
def _ranking_key(account: address, market: uint256, long_side: bool, market_policy: uint256) -> uint256:
    """
    @dev A position's ADL ranking key on one side of a market at the latest mark (pro-rata: its
         profit, the weight of its haircut); zero for an account that is not a winner there.
    """
    if self._is_bankrupt(account):
        return 0
    position: IWaterfallClearinghouse.Position = staticcall clearinghouse.positions(account, market)
    if position.size == 0 or (position.size > 0) != long_side:
        return 0
    candidate: Candidate = self._evaluate(account, market, position, self._latest_mark(market), market_policy)
    if candidate.profit == 0 or candidate.value <= 0:
        return 0
    if market_policy == adl_math.PRO_RATA:
        return candidate.profit
    return max(candidate.key, 1)


@internal
@view
def _evaluate(account: address, market: uint256, position: IWaterfallClearinghouse.Position, price: uint256, market_policy: uint256) -> Candidate:
    """
    @dev A position's profit at `price`, its account's value and the policy's ranking key.
         The key is zero for a position without profit or an account without value.
    """
    return self._evaluate_at(account, market, position, price, market_policy, (staticcall clearinghouse.account_health(account)).value)


@internal
@view
def _evaluate_at(account: address, market: uint256, position: IWaterfallClearinghouse.Position, price: uint256, market_policy: uint256, account_value: int256) -> Candidate:
    """
    @dev `_evaluate` with the account's value (at the latest prices) already known.
    """
    size: int256 = position.size
    candidate: Candidate = empty(Candidate)
    candidate.size = size
    candidate.profit = convert(max(margin_math.pnl(size, position.entry_price, price), 0), uint256)
    candidate.value = account_value
    if candidate.profit == 0 or candidate.value <= 0:
        return candidate
    if adl_math.is_queue(market_policy):
        candidate.key = adl_math.queue_key(market_policy, size, position.entry_price, price, candidate.value)
    elif market_policy == adl_math.RISK_AWARE:
        candidate.net_notional = self._net_notional(account, market, size, price)
        candidate.net_leverage = adl_math.leverage(convert(abs(candidate.net_notional), uint256), candidate.value)
        candidate.key = candidate.net_leverage
    return candidate


@internal
@view
def _net_notional(account: address, market: uint256, size: int256, price: uint256) -> int256:
    """
    @dev Signed notional summed over the account's markets (`market` at `price`, the others at
         their latest marks): the exposure to one common factor, so a hedged book nets out.
    """
    net: int256 = 0
    open_mask: uint256 = staticcall clearinghouse.open_markets(account)
    for other: uint256 in range(MAX_MARKETS):
        if open_mask & (1 << other) == 0:
            continue
        other_size: int256 = size
        other_price: uint256 = price
        if other != market:
            other_size = (staticcall clearinghouse.positions(account, other)).size
            other_price = self._latest_mark(other)
        notional: int256 = convert(margin_math.notional(other_size, other_price), int256)
        net += notional if other_size > 0 else -notional
    return net


@internal
@view
def _vault_capacity(vault: address, account: address, market: uint256, price: uint256, taking_long: bool) -> uint256:
    """
    @dev Base units of a position in `market` (long if `taking_long`) the vault can take within
         its position limit and its leverage limit. Zero for a vault that is bankrupt, in a
         round, the account itself, or without value. Floor on every bound.
    """
    if vault == account or staticcall clearinghouse.account_flags(vault) != empty(IWaterfallClearinghouse.AccountFlag):
        return 0
    value: int256 = (staticcall clearinghouse.account_health(vault)).value
    if value <= 0:
        return 0
    held: int256 = (staticcall clearinghouse.positions(vault, market)).size
    held_abs: uint256 = convert(abs(held), uint256)
    opposite: bool = held != 0 and (held > 0) != taking_long
    # Taking the other side first unwinds what the vault holds, then grows a new position.
    limit: uint256 = staticcall IInsuranceVault(vault).max_position(market)
    position_room: uint256 = held_abs + limit if opposite else (limit - held_abs if limit > held_abs else 0)

    gross: uint256 = 0
    open_mask: uint256 = staticcall clearinghouse.open_markets(vault)
    for other: uint256 in range(MAX_MARKETS):
        if open_mask & (1 << other) == 0:
            continue
        other_size: int256 = (staticcall clearinghouse.positions(vault, other)).size
        # Ceiling: the limit check counts the larger notional.
        gross += fixed_point.ceil_div(convert(abs(other_size), uint256) * self._latest_mark(other), fixed_point.NOTIONAL_SCALE)
    allowed: uint256 = staticcall IInsuranceVault(vault).max_leverage() * convert(value, uint256) // fixed_point.WAD
    leverage_room: uint256 = 2 * held_abs if opposite else 0
    if allowed > gross:
        leverage_room += (allowed - gross) * fixed_point.NOTIONAL_SCALE // price
    return min(position_room, leverage_room)


@internal
@view
def _is_bankrupt(account: address) -> bool:
    return IWaterfallClearinghouse.AccountFlag.BANKRUPT in staticcall clearinghouse.account_flags(account)


@internal
@view
def _volunteer_auctions() -> IVolunteerAuctions:
    """@dev The volunteer auctions are the LiquidationEngine's."""
    return IVolunteerAuctions(staticcall clearinghouse.liquidation_engine())


@internal
@view
def _fresh_mark(market: uint256) -> uint256:
    index_price: uint256 = 0
    mark_price: uint256 = 0
    index_price, mark_price = staticcall oracle.fresh_prices(market)
    return mark_price


@internal
@view
def _latest_mark(market: uint256) -> uint256:
    index_price: uint256 = 0
    mark_price: uint256 = 0
    index_price, mark_price = staticcall oracle.latest_prices(market)
    return mark_price
