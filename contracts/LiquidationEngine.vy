# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title LiquidationEngine
@notice The first two layers of the waterfall for an account that can no longer carry its risk,
        and the bankruptcy flags that hand the rest to ADL:
        1. below maintenance margin anyone may `liquidate` it: a liquidator takes (part of) a
           position over at the mark, for a discount; a penalty goes to the insurance vault;
        2. below `backstop_ratio` x maintenance margin (or below maintenance when a keeper found no
           liquidator) anyone may `backstop` it: the insurance vault takes over every position and
           all remaining collateral, covering a deficit within its loss cap, if its risk limits allow;
        3. an account with negative value that the vault refuses is flagged bankrupt and frozen;
           the ADL engine (contracts/AdlEngine.vy) then resolves it.
@dev Positions and balances move only through the clearinghouse's waterfall hooks, which accept
     this contract and the ADL engine. Every fee is a floor of the notional and is bounded by what
     the account has left, so a liquidation never makes an account's value negative.
"""

from snekmate.auth import ownable
from interfaces import IInsuranceVault
from interfaces import IMarginPool
from interfaces import IOracle
from interfaces import IWaterfallClearinghouse
from modules import fixed_point
from modules import keeper_roles
from modules import margin_math

initializes: ownable
initializes: keeper_roles[ownable := ownable]

exports: (
    ownable.owner,
    ownable.transfer_ownership,
    keeper_roles.is_keeper,
    keeper_roles.set_keeper,
)


# ---------------------------------------------------------------- events

event Liquidation:
    account: indexed(address)
    liquidator: indexed(address)
    market: indexed(uint256)
    size: uint256
    price: uint256
    discount: uint256
    penalty: uint256

event Takeover:
    account: indexed(address)
    vault: indexed(address)
    # @dev the account's value handed over: positive is the vault's buffer, negative its loss
    value: int256
    markets: uint256

event TakeoverRefused:
    account: indexed(address)
    vault: indexed(address)
    reason: String[48]

event BankruptcyFlagged:
    account: indexed(address)
    deficit: uint256

event BankruptcyCleared:
    account: indexed(address)

event UpdateLiquidationParams:
    discount: uint256
    penalty: uint256

event UpdateBackstopRatio:
    backstop_ratio: uint256


# ---------------------------------------------------------------- constants

MAX_MARKETS: constant(uint256) = 16


# ---------------------------------------------------------------- storage

# @dev Positions, account values and the waterfall hooks.
clearinghouse: public(immutable(IWaterfallClearinghouse))
# @dev Prices: every move of risk here needs fresh ones.
oracle: public(immutable(IOracle))
# @dev Collateral balances (read only; they move through the clearinghouse).
pool: public(immutable(IMarginPool))
# @dev Liquidator's discount as a fraction of the notional liquidated (1e18 = 100%).
liquidation_discount: public(uint256)
# @dev Insurance penalty as a fraction of the notional liquidated.
liquidation_penalty: public(uint256)
# @dev Fraction of maintenance margin (1e18 = 100%) below which anyone may hand an account to the vault.
backstop_ratio: public(uint256)


# ---------------------------------------------------------------- constructor

@deploy
def __init__(clearing: IWaterfallClearinghouse, price_oracle: IOracle, discount: uint256, penalty: uint256, ratio: uint256):
    """
    @notice Deploys the engine; the deployer becomes owner. Wire it with
            `Clearinghouse.set_liquidation_engine`.
    @param clearing The clearinghouse.
    @param price_oracle The oracle the clearinghouse uses.
    @param discount Liquidator's discount, fraction of notional (1e18 = 100%).
    @param penalty Insurance penalty, fraction of notional.
    @param ratio Backstop ratio, fraction of maintenance margin (Hyperliquid uses 2/3).
    """
    ownable.__init__()
    clearinghouse = clearing
    oracle = price_oracle
    pool = IMarginPool(staticcall clearing.pool())
    self._set_liquidation_params(discount, penalty)
    self._set_backstop_ratio(ratio)


# ---------------------------------------------------------------- owner

@external
def set_liquidation_params(discount: uint256, penalty: uint256):
    """
    @notice Sets the liquidator's discount and the insurance penalty.
    @dev Owner only. Their sum must stay below 100%.
    @param discount Fraction of the notional liquidated paid to the liquidator.
    @param penalty Fraction of the notional liquidated paid to the insurance account.
    """
    ownable._check_owner()
    self._set_liquidation_params(discount, penalty)


@external
def set_backstop_ratio(ratio: uint256):
    """
    @notice Sets the fraction of maintenance margin below which anyone may hand an account to the vault.
    @dev Owner only; at most 100%.
    @param ratio 1e18 = 100%.
    """
    ownable._check_owner()
    self._set_backstop_ratio(ratio)


# ---------------------------------------------------------------- liquidation

@external
def liquidate(account: address, market: uint256, size: uint256) -> uint256:
    """
    @notice Takes over (part of) a position of an account below maintenance margin at the oracle
            mark. The liquidator receives a discount and the insurance account a penalty, both
            fractions of the notional taken and both bounded by what the account has left, so
            the liquidation never makes the account's value negative.
    @dev The size is clamped to the current position, so a keeper's stale figure is safe. A
         partial take-over must leave the account healthier (higher value per unit of maintenance
         margin); the liquidator must end at or above initial margin.
    @param account The account to liquidate.
    @param market The market of the position taken over.
    @param size Base units to take over; clamped to the position.
    @return The base units taken over.
    """
    assert account != msg.sender, "LiquidationEngine: cannot liquidate yourself"
    assert market < staticcall clearinghouse.market_count(), "LiquidationEngine: unknown market"
    assert not self._is_bankrupt(account), "LiquidationEngine: account bankrupt"
    assert not self._is_bankrupt(msg.sender), "LiquidationEngine: liquidator bankrupt"
    position_size: int256 = (staticcall clearinghouse.positions(account, market)).size
    assert position_size != 0, "LiquidationEngine: no position"
    mark: uint256 = self._fresh_mark(market)

    before: IWaterfallClearinghouse.AccountHealth = staticcall clearinghouse.account_health(account)
    assert before.value >= 0, "LiquidationEngine: account bankrupt"
    assert before.value < convert(before.maintenance_margin, int256), "LiquidationEngine: account healthy"

    taken: uint256 = min(size, convert(abs(position_size), uint256))
    assert taken > 0, "LiquidationEngine: zero size"
    account_delta: int256 = -convert(taken, int256) if position_size > 0 else convert(taken, int256)
    extcall clearinghouse.transfer_positions(
        account, market, mark, [IWaterfallClearinghouse.PositionTransfer(counterparty=msg.sender, size=-account_delta, payment=0)]
    )

    after: IWaterfallClearinghouse.AccountHealth = staticcall clearinghouse.account_health(account)
    # Fees come out of what the account has left, discount first: a liquidation never bankrupts.
    # Floor on both: they move balance between accounts, never out of the pool.
    available: uint256 = convert(max(after.value, 0), uint256)
    taken_notional: uint256 = margin_math.notional(account_delta, mark)
    discount: uint256 = min(taken_notional * self.liquidation_discount // fixed_point.WAD, available)
    penalty: uint256 = min(taken_notional * self.liquidation_penalty // fixed_point.WAD, available - discount)
    if discount > 0:
        extcall clearinghouse.transfer_balance(account, msg.sender, discount)
    if penalty > 0:
        extcall clearinghouse.transfer_balance(account, staticcall clearinghouse.insurance_account(), penalty)
    value_after: int256 = after.value - convert(discount + penalty, int256)

    # A position taken over in full always passes: below (discount + penalty) / maintenance fraction
    # of its margin no partial take-over can raise an account's margin ratio, and such an account
    # must still be liquidatable market by market.
    if taken < convert(abs(position_size), uint256):
        assert value_after * convert(before.maintenance_margin, int256) > before.value * convert(after.maintenance_margin, int256), "LiquidationEngine: partial liquidation must leave the account healthier"
    liquidator: IWaterfallClearinghouse.AccountHealth = staticcall clearinghouse.fresh_account_health(msg.sender)
    assert liquidator.value >= convert(liquidator.initial_margin, int256), "LiquidationEngine: liquidator below initial margin"

    log Liquidation(account=account, liquidator=msg.sender, market=market, size=taken, price=mark, discount=discount, penalty=penalty)
    return taken


# ---------------------------------------------------------------- insurance vault

@external
def backstop(account: address) -> bool:
    """
    @notice Hands a failing account to the insurance vault: the vault takes over every position at
            the mark and all remaining collateral; the trader keeps nothing. If the account's value
            is negative the vault covers the deficit, but only within its loss allowance.
    @dev Anyone may call once the account's value is below `backstop_ratio` x maintenance margin; a
         keeper may call below maintenance margin (a liquidation found no taker). The vault's
         risk limits (loss allowance, position per market, leverage) are checked on the state
         after the takeover; if one would break, nothing moves, `TakeoverRefused` names the limit,
         and a bankrupt account is flagged for ADL.
    @param account The failing account.
    @return True if the vault took the account over, False if it refused.
    """
    vault: address = staticcall clearinghouse.insurance_account()
    assert account != vault, "LiquidationEngine: the vault cannot take itself over"
    flags: IWaterfallClearinghouse.AccountFlag = staticcall clearinghouse.account_flags(account)
    assert IWaterfallClearinghouse.AccountFlag.IN_ADL_ROUND not in flags, "LiquidationEngine: account in an ADL round"
    open_mask: uint256 = staticcall clearinghouse.open_markets(account)
    assert open_mask != 0, "LiquidationEngine: no position"
    health: IWaterfallClearinghouse.AccountHealth = staticcall clearinghouse.fresh_account_health(account)
    line: uint256 = health.maintenance_margin if keeper_roles.is_keeper[msg.sender] else health.maintenance_margin * self.backstop_ratio // fixed_point.WAD
    assert health.value < convert(line, int256), "LiquidationEngine: account above the backstop line"

    refusal: String[48] = self._takeover_refusal(account, vault, health.value)
    if refusal != "":
        log TakeoverRefused(account=account, vault=vault, reason=refusal)
        if health.value < 0 and IWaterfallClearinghouse.AccountFlag.BANKRUPT not in flags:
            extcall clearinghouse.set_account_flags(account, flags | IWaterfallClearinghouse.AccountFlag.BANKRUPT)
            log BankruptcyFlagged(account=account, deficit=convert(-health.value, uint256))
        return False

    markets: uint256 = 0
    for market: uint256 in range(MAX_MARKETS):
        if open_mask & (1 << market) == 0:
            continue
        size: int256 = (staticcall clearinghouse.positions(account, market)).size
        extcall clearinghouse.transfer_positions(
            account, market, self._fresh_mark(market), [IWaterfallClearinghouse.PositionTransfer(counterparty=vault, size=size, payment=0)]
        )
        markets += 1
    # Positions closed at the mark realise exactly their marked value, so the balance left is the
    # account's value: a buffer the vault keeps, or a deficit it pays.
    balance: int256 = staticcall pool.balance_of(account)
    if balance > 0:
        extcall clearinghouse.transfer_balance(account, vault, convert(balance, uint256))
    elif balance < 0:
        extcall clearinghouse.transfer_balance(vault, account, convert(-balance, uint256))
    extcall IInsuranceVault(vault).record_takeover(account, convert(max(-balance, 0), uint256))
    if IWaterfallClearinghouse.AccountFlag.BANKRUPT in flags:
        extcall clearinghouse.set_account_flags(account, flags & ~IWaterfallClearinghouse.AccountFlag.BANKRUPT)
    log Takeover(account=account, vault=vault, value=balance, markets=markets)
    return True


# ---------------------------------------------------------------- bankruptcy flags

@external
def flag_bankruptcy(account: address):
    """
    @notice Marks an account with negative value as bankrupt: it can no longer trade, withdraw or be
            liquidated through the market; the backstop and ADL layers resolve it.
    @dev Anyone may call. Uses the latest prices (no freshness needed to recognise a loss).
    @param account The account.
    """
    flags: IWaterfallClearinghouse.AccountFlag = staticcall clearinghouse.account_flags(account)
    assert IWaterfallClearinghouse.AccountFlag.BANKRUPT not in flags, "LiquidationEngine: already bankrupt"
    value: int256 = (staticcall clearinghouse.account_health(account)).value
    assert value < 0, "LiquidationEngine: account solvent"
    extcall clearinghouse.set_account_flags(account, flags | IWaterfallClearinghouse.AccountFlag.BANKRUPT)
    log BankruptcyFlagged(account=account, deficit=convert(-value, uint256))


@external
def clear_bankruptcy(account: address):
    """
    @notice Lifts the bankruptcy flag of an account whose value is no longer negative (prices
            recovered or it was topped up), so it can trade, withdraw and be liquidated again.
    @dev Anyone may call. Uses the latest prices, as `flag_bankruptcy` does.
    @param account The account.
    """
    flags: IWaterfallClearinghouse.AccountFlag = staticcall clearinghouse.account_flags(account)
    assert IWaterfallClearinghouse.AccountFlag.BANKRUPT in flags, "LiquidationEngine: not bankrupt"
    assert IWaterfallClearinghouse.AccountFlag.IN_ADL_ROUND not in flags, "LiquidationEngine: account in an ADL round"
    assert (staticcall clearinghouse.account_health(account)).value >= 0, "LiquidationEngine: account still in deficit"
    extcall clearinghouse.set_account_flags(account, flags & ~IWaterfallClearinghouse.AccountFlag.BANKRUPT)
    log BankruptcyCleared(account=account)


# ---------------------------------------------------------------- internals

@internal
@view
def _takeover_refusal(account: address, vault: address, account_value: int256) -> String[48]:
    """
    @dev The first of the vault's limits that taking `account` over would break, or "" if none:
         its loss allowance, its largest position per market, its leverage afterwards.
    """
    if self._is_bankrupt(vault):
        return "vault flagged bankrupt"
    if account_value < 0 and convert(-account_value, uint256) > staticcall IInsuranceVault(vault).loss_allowance():
        return "loss above the vault's allowance"
    equity_after: int256 = (staticcall clearinghouse.fresh_account_health(vault)).value + account_value
    if equity_after <= 0:
        return "vault equity exhausted"
    notional_after: uint256 = 0
    both_mask: uint256 = staticcall clearinghouse.open_markets(account) | staticcall clearinghouse.open_markets(vault)
    for market: uint256 in range(MAX_MARKETS):
        if both_mask & (1 << market) == 0:
            continue
        mark_price: uint256 = self._fresh_mark(market)
        vault_size: int256 = (staticcall clearinghouse.positions(vault, market)).size
        size_after: int256 = vault_size + (staticcall clearinghouse.positions(account, market)).size
        if abs(size_after) > abs(vault_size) and convert(abs(size_after), uint256) > staticcall IInsuranceVault(vault).max_position(market):
            return "position above the vault's limit"
        # Ceiling: the limit check counts the larger notional.
        notional_after += fixed_point.ceil_div(convert(abs(size_after), uint256) * mark_price, fixed_point.NOTIONAL_SCALE)
    if notional_after * fixed_point.WAD > staticcall IInsuranceVault(vault).max_leverage() * convert(equity_after, uint256):
        return "leverage above the vault's limit"
    return ""


@internal
@view
def _is_bankrupt(account: address) -> bool:
    return IWaterfallClearinghouse.AccountFlag.BANKRUPT in staticcall clearinghouse.account_flags(account)


@internal
@view
def _fresh_mark(market: uint256) -> uint256:
    index_price: uint256 = 0
    mark_price: uint256 = 0
    index_price, mark_price = staticcall oracle.fresh_prices(market)
    return mark_price


@internal
def _set_liquidation_params(discount: uint256, penalty: uint256):
    assert discount + penalty < fixed_point.WAD, "LiquidationEngine: liquidation fees of 100% or more"
    self.liquidation_discount = discount
    self.liquidation_penalty = penalty
    log UpdateLiquidationParams(discount=discount, penalty=penalty)


@internal
def _set_backstop_ratio(ratio: uint256):
    assert ratio <= fixed_point.WAD, "LiquidationEngine: backstop ratio above 100%"
    self.backstop_ratio = ratio
    log UpdateBackstopRatio(backstop_ratio=ratio)
