# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title MarketConfigurator
@notice The owner's door to the clearinghouse's markets: lists a market and changes a market's
        risk, funding and fee parameters, each checked against hard bounds first. The
        clearinghouse stores the parameters (and logs `UpdateMarket`) and takes them from this
        contract only; keeping the checks here keeps the clearinghouse's code for trading.
@dev Fractions are 1e18 = 100%. The bounds are hard: no owner can set a fee above 1% of the
     notional, a maintenance margin at or above the initial margin, or a zero funding period.
"""

from snekmate.auth import ownable
from interfaces import IMarketClearinghouse
from modules import fixed_point

initializes: ownable

exports: (
    ownable.owner,
    ownable.transfer_ownership,
)


# ---------------------------------------------------------------- constants

# @dev Hard cap on a trading fee, 1% of the notional: the owner can tune fees, not confiscate.
MAX_TRADING_FEE: constant(uint256) = 10**16


# ---------------------------------------------------------------- storage

# @dev The clearinghouse whose markets this contract configures.
clearinghouse: public(immutable(IMarketClearinghouse))


# ---------------------------------------------------------------- constructor

@deploy
def __init__(clearing: IMarketClearinghouse):
    """
    @notice Deploys the configurator of one clearinghouse; the deployer becomes owner. The
            clearinghouse's owner then names it (`Clearinghouse.set_market_configurator`).
    @param clearing The clearinghouse.
    """
    ownable.__init__()
    clearinghouse = clearing


# ---------------------------------------------------------------- owner

@external
def list_market(params: IMarketClearinghouse.MarketParams) -> uint256:
    """
    @notice Lists a new market under the next id.
    @dev Owner only. The oracle must already have a feed for that id before anyone trades.
    @param params Risk, funding and fee parameters.
    @return The new market id.
    """
    ownable._check_owner()
    self._check(params)
    market: uint256 = staticcall clearinghouse.market_count()
    extcall clearinghouse.set_market(market, params)
    return market


@external
def set_market_params(market: uint256, params: IMarketClearinghouse.MarketParams):
    """
    @notice Replaces a listed market's parameters; its funding accrues at the old ones up to now.
    @dev Owner only.
    @param market The market id.
    @param params New risk, funding and fee parameters.
    """
    ownable._check_owner()
    assert market < staticcall clearinghouse.market_count(), "MarketConfigurator: unknown market"
    self._check(params)
    extcall clearinghouse.set_market(market, params)


# ---------------------------------------------------------------- views

@external
@pure
def max_trading_fee() -> uint256:
    """
    @notice The hard cap on a maker or taker fee.
    @return A fraction of the notional, 1e18 = 100%.
    """
    return MAX_TRADING_FEE


# ---------------------------------------------------------------- internals

@internal
@pure
def _check(params: IMarketClearinghouse.MarketParams):
    assert params.maintenance_margin > 0, "MarketConfigurator: zero maintenance margin"
    assert params.initial_margin > params.maintenance_margin, "MarketConfigurator: initial margin must exceed maintenance"
    assert params.initial_margin <= fixed_point.WAD, "MarketConfigurator: initial margin above 100%"
    assert params.price_band > 0 and params.price_band < fixed_point.WAD, "MarketConfigurator: price band out of range"
    assert params.max_open_interest > 0, "MarketConfigurator: zero open interest cap"
    assert params.funding_premium_cap <= fixed_point.WAD, "MarketConfigurator: funding cap above 100%"
    assert params.funding_period > 0, "MarketConfigurator: zero funding period"
    assert params.taker_fee <= MAX_TRADING_FEE, "MarketConfigurator: taker fee above the cap"
    assert params.maker_fee <= params.taker_fee, "MarketConfigurator: maker fee above taker fee"
