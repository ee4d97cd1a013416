# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title InsuranceVault
@notice The second layer of the waterfall: an ERC-4626 vault whose depositors own an account in the
        margin pool. It earns liquidation penalties and the buffer of the accounts it takes over,
        and bears the deficits it covers. The LiquidationEngine hands it failing accounts; the vault's
        risk limits (leverage, position per market, loss per event and per day) decide what it
        may accept, so it can never be drained without limit.
@dev Share price = the vault's account value in the pool, marked to market (`totalAssets`), over
     the share supply, with a virtual offset of 1e6 shares and 1 asset so that neither the empty
     nor the drained vault can be inflated. Every deposit goes straight into the pool and the pool
     refuses deposits from others on the vault's behalf, so a donation moves nothing; the vault
     never reads `balanceOf(self)`.
     Exits are two-step: `request_redeem` escrows the shares (they keep bearing losses), `claim`
     after `withdrawal_delay` pays min(value at request, value at claim). Fresh deposits are locked
     for `lockup_period` first. The ERC-4626 `withdraw`/`redeem` are therefore closed (`max*` = 0).
"""

from ethereum.ercs import IERC20
from ethereum.ercs import IERC4626
from snekmate.auth import ownable
from snekmate.tokens import erc20
from interfaces import IClearinghouse
from interfaces import IInsuranceVault
from interfaces import IMarginPool
from modules import fixed_point

implements: IERC4626
implements: IInsuranceVault

initializes: ownable
initializes: erc20[ownable := ownable]

exports: (
    ownable.owner,
    ownable.transfer_ownership,
    erc20.balanceOf,
    erc20.totalSupply,
    erc20.allowance,
    erc20.approve,
    erc20.name,
    erc20.symbol,
    erc20.decimals,
)


# ---------------------------------------------------------------- interfaces

interface IPoolAccount:
    def deposit(amount: uint256): nonpayable
    def withdraw(amount: uint256): nonpayable
    def close_to_third_party_deposits(): nonpayable


# ---------------------------------------------------------------- events

event WithdrawalRequested:
    request_id: indexed(uint256)
    owner: indexed(address)
    shares: uint256
    assets: uint256
    claimable_at: uint256

event TakeoverRecorded:
    account: indexed(address)
    loss: uint256
    lost_today: uint256

event UpdateRiskLimits:
    max_leverage: uint256
    loss_cap_per_event: uint256
    loss_cap_per_day: uint256

event UpdateMaxPosition:
    market: indexed(uint256)
    max_position: uint256

event UpdateLockup:
    lockup_period: uint256
    withdrawal_delay: uint256


# ---------------------------------------------------------------- structs

struct WithdrawalRequest:
    owner: address
    shares: uint256
    # @dev convertToAssets(shares) when requested: the most the claim can pay
    assets: uint256
    claimable_at: uint256


# ---------------------------------------------------------------- constants

# @dev Virtual shares and assets (OpenZeppelin's decimals offset of 6): an attacker must donate
# about 1e6 times what they want to steal, and the empty vault has a defined price.
VIRTUAL_SHARES: constant(uint256) = 10**6
VIRTUAL_ASSETS: constant(uint256) = 1
SHARE_DECIMALS: constant(uint8) = 12
SECONDS_PER_DAY: constant(uint256) = 86400


# ---------------------------------------------------------------- storage

# @dev The collateral token (the ERC-4626 asset).
collateral: immutable(IERC20)
# @dev The margin pool that holds the vault's account.
pool: public(immutable(IMarginPool))
# @dev The clearinghouse: marks the vault's account to market and names the LiquidationEngine.
clearinghouse: public(immutable(IClearinghouse))
# @dev Seconds a depositor's shares stay locked after their last deposit.
lockup_period: public(uint256)
# @dev Seconds between a redemption request and its claim.
withdrawal_delay: public(uint256)
# @dev When each holder's shares unlock (their last deposit + lockup_period).
unlock_time: public(HashMap[address, uint256])
# @dev Open redemption requests by id.
requests: public(HashMap[uint256, WithdrawalRequest])
# @dev Id of the next redemption request.
next_request_id: public(uint256)
# @dev Largest notional / equity of the vault's account after a takeover (1e18 = 1x).
max_leverage: public(uint256)
# @dev Largest |position| per market (base units) the vault may hold after a takeover.
max_position: public(HashMap[uint256, uint256])
# @dev Largest deficit the vault covers in one takeover (collateral units).
loss_cap_per_event: public(uint256)
# @dev Largest sum of deficits the vault covers in one UTC day (collateral units).
loss_cap_per_day: public(uint256)
# @dev The day (timestamp // 86400) that `lost_today` counts.
loss_day: public(uint256)
# @dev Deficits covered so far on `loss_day`.
lost_today: public(uint256)


# ---------------------------------------------------------------- constructor

@deploy
def __init__(
    collateral_token: IERC20,
    margin_pool: IMarginPool,
    clearing: IClearinghouse,
    lockup: uint256,
    delay: uint256,
    leverage: uint256,
    cap_per_event: uint256,
    cap_per_day: uint256,
):
    """
    @notice Deploys the vault and opens its account in the pool; the deployer becomes owner.
    @param collateral_token The pool's collateral token.
    @param margin_pool The margin pool.
    @param clearing The clearinghouse (point its insurance account here afterwards).
    @param lockup Seconds a deposit stays locked.
    @param delay Seconds between a redemption request and its claim.
    @param leverage Largest notional / equity after a takeover (1e18 = 1x).
    @param cap_per_event Largest deficit covered in one takeover (collateral units).
    @param cap_per_day Largest sum of deficits covered per day (collateral units).
    """
    ownable.__init__()
    erc20.__init__("Backstop Insurance Vault", "bINS", SHARE_DECIMALS, "Backstop Insurance Vault", "1")
    collateral = collateral_token
    pool = margin_pool
    clearinghouse = clearing
    self._set_lockup(lockup, delay)
    self._set_risk_limits(leverage, cap_per_event, cap_per_day)
    extcall collateral_token.approve(margin_pool.address, max_value(uint256))
    extcall IPoolAccount(margin_pool.address).close_to_third_party_deposits()


# ---------------------------------------------------------------- ERC-4626: deposits

@external
def deposit(assets: uint256, receiver: address) -> uint256:
    """
    @notice Deposits `assets` for shares (rounded down) and locks the caller's shares for `lockup_period`.
    @dev Only for oneself: a deposit for someone else would re-lock their shares.
    @param assets Collateral units, pulled with transferFrom.
    @param receiver Must be the caller.
    @return The shares minted.
    """
    shares: uint256 = self._convert_to_shares(assets, self._total_assets_checked(), False)
    self._deposit(assets, shares, receiver)
    return shares


@external
def mint(shares: uint256, receiver: address) -> uint256:
    """
    @notice Mints exactly `shares` for the assets they cost (rounded up); locks as `deposit` does.
    @param shares Shares to mint.
    @param receiver Must be the caller.
    @return The assets pulled.
    """
    assets: uint256 = self._convert_to_assets(shares, self._total_assets_checked(), True)
    self._deposit(assets, shares, receiver)
    return assets


@external
def withdraw(assets: uint256, receiver: address, owner: address) -> uint256:
    """
    @notice Closed: exits go through `request_redeem` and `claim` (`maxWithdraw` is 0).
    """
    raise "InsuranceVault: exit with request_redeem, then claim"


@external
def redeem(shares: uint256, receiver: address, owner: address) -> uint256:
    """
    @notice Closed: exits go through `request_redeem` and `claim` (`maxRedeem` is 0).
    """
    raise "InsuranceVault: exit with request_redeem, then claim"


# ---------------------------------------------------------------- exits

@external
def request_redeem(shares: uint256) -> uint256:
    """
    @notice Starts an exit: escrows `shares` and records their value now, the most the claim pays.
    @dev The escrowed shares stay in the supply and keep bearing the vault's losses until claimed.
    @param shares Unlocked shares of the caller.
    @return The request id.
    """
    assert shares > 0, "InsuranceVault: zero shares"
    assert block.timestamp >= self.unlock_time[msg.sender], "InsuranceVault: shares locked"
    assets: uint256 = self._convert_to_assets(shares, self._total_assets(), False)
    erc20._transfer(msg.sender, self, shares)
    request_id: uint256 = self.next_request_id
    self.next_request_id = request_id + 1
    claimable_at: uint256 = block.timestamp + self.withdrawal_delay
    self.requests[request_id] = WithdrawalRequest(owner=msg.sender, shares=shares, assets=assets, claimable_at=claimable_at)
    log WithdrawalRequested(request_id=request_id, owner=msg.sender, shares=shares, assets=assets, claimable_at=claimable_at)
    return request_id


@external
def claim(request_id: uint256) -> uint256:
    """
    @notice Completes an exit: burns the escrowed shares and pays min(value at request, value now).
    @dev Waits (reverts) while the payment would take the vault's account below initial margin.
    @param request_id The caller's request.
    @return The assets paid.
    """
    request: WithdrawalRequest = self.requests[request_id]
    assert request.shares > 0, "InsuranceVault: unknown request"
    assert request.owner == msg.sender, "InsuranceVault: not your request"
    assert block.timestamp >= request.claimable_at, "InsuranceVault: request not yet claimable"
    assets: uint256 = min(request.assets, self._convert_to_assets(request.shares, self._total_assets(), False))
    if assets > 0:
        assert staticcall pool.balance_of(self) >= convert(assets, int256), "InsuranceVault: collateral tied up in positions, retry later"
        assert assets <= staticcall clearinghouse.withdrawable(self), "InsuranceVault: claim would breach the vault's margin, retry later"
    self.requests[request_id] = empty(WithdrawalRequest)
    erc20._burn(self, request.shares)
    if assets > 0:
        extcall IPoolAccount(pool.address).withdraw(assets)
        assert extcall collateral.transfer(msg.sender, assets, default_return_value=True), "InsuranceVault: transfer failed"
    log IERC4626.Withdraw(sender=msg.sender, receiver=msg.sender, owner=msg.sender, assets=assets, shares=request.shares)
    return assets


# ---------------------------------------------------------------- shares as a token

@external
def transfer(to: address, amount: uint256) -> bool:
    """
    @notice ERC-20 transfer of shares; locked shares cannot move (no escaping the lock-up).
    @param to The receiver.
    @param amount Shares.
    @return True.
    """
    assert block.timestamp >= self.unlock_time[msg.sender], "InsuranceVault: shares locked"
    erc20._transfer(msg.sender, to, amount)
    return True


@external
def transferFrom(owner: address, to: address, amount: uint256) -> bool:
    """
    @notice ERC-20 transferFrom of shares; locked shares cannot move.
    @param owner The holder.
    @param to The receiver.
    @param amount Shares.
    @return True.
    """
    assert block.timestamp >= self.unlock_time[owner], "InsuranceVault: shares locked"
    erc20._spend_allowance(owner, msg.sender, amount)
    erc20._transfer(owner, to, amount)
    return True


# ---------------------------------------------------------------- clearinghouse

@external
def record_takeover(account: address, loss: uint256):
    """
    @notice Books the deficit of an account the vault has just taken over against today's cap.
    @dev The clearinghouse's LiquidationEngine only; it has checked `loss_allowance` first.
    @param account The account taken over.
    @param loss The deficit covered (0 if the account still had value).
    """
    assert msg.sender == staticcall clearinghouse.liquidation_engine(), "InsuranceVault: caller is not the liquidation engine"
    today: uint256 = block.timestamp // SECONDS_PER_DAY
    if today != self.loss_day:
        self.loss_day = today
        self.lost_today = 0
    self.lost_today += loss
    log TakeoverRecorded(account=account, loss=loss, lost_today=self.lost_today)


# ---------------------------------------------------------------- owner

@external
def set_risk_limits(leverage: uint256, cap_per_event: uint256, cap_per_day: uint256):
    """
    @notice Sets the takeover limits.
    @dev Owner only.
    @param leverage Largest notional / equity after a takeover (1e18 = 1x), positive.
    @param cap_per_event Largest deficit covered in one takeover.
    @param cap_per_day Largest sum of deficits covered per day.
    """
    ownable._check_owner()
    self._set_risk_limits(leverage, cap_per_event, cap_per_day)


@external
def set_max_position(market: uint256, size: uint256):
    """
    @notice Sets the largest |position| the vault may hold in a market after a takeover.
    @dev Owner only. 0 (the default) refuses any takeover that grows the vault's position there.
    @param market The market id.
    @param size Base units (1e18).
    """
    ownable._check_owner()
    self.max_position[market] = size
    log UpdateMaxPosition(market=market, max_position=size)


@external
def set_lockup(lockup: uint256, delay: uint256):
    """
    @notice Sets the deposit lock-up and the redemption delay.
    @dev Owner only. Applies to deposits and requests made afterwards.
    @param lockup Seconds a deposit stays locked.
    @param delay Seconds between a redemption request and its claim.
    """
    ownable._check_owner()
    self._set_lockup(lockup, delay)


# ---------------------------------------------------------------- ERC-4626 views

@external
@view
def asset() -> address:
    """
    @notice The collateral token.
    @return Its address.
    """
    return collateral.address


@external
@view
def totalAssets() -> uint256:
    """
    @notice The vault's account value in the pool, marked to market; 0 while it is in deficit.
    @return Collateral units.
    """
    return self._total_assets()


@external
@view
def convertToShares(assets: uint256) -> uint256:
    """
    @notice Shares worth `assets` at the current price, rounded down.
    @param assets Collateral units.
    @return Shares.
    """
    return self._convert_to_shares(assets, self._total_assets(), False)


@external
@view
def convertToAssets(shares: uint256) -> uint256:
    """
    @notice Assets worth `shares` at the current price, rounded down.
    @param shares Shares.
    @return Collateral units.
    """
    return self._convert_to_assets(shares, self._total_assets(), False)


@external
@view
def maxDeposit(receiver: address) -> uint256:
    """
    @notice Unlimited, except 0 while the vault is in deficit or flagged bankrupt (a deposit would
            fill the hole, or could not leave).
    @param receiver The depositor.
    @return Collateral units.
    """
    return max_value(uint256) if self._accepts_deposits() else 0


@external
@view
def maxMint(receiver: address) -> uint256:
    """
    @notice Unlimited, except 0 while the vault is in deficit or flagged bankrupt.
    @param receiver The depositor.
    @return Shares.
    """
    return max_value(uint256) if self._accepts_deposits() else 0


@external
@view
def maxWithdraw(owner: address) -> uint256:
    """
    @notice Always 0: exits go through `request_redeem` and `claim`.
    @param owner The holder.
    @return 0.
    """
    return 0


@external
@view
def maxRedeem(owner: address) -> uint256:
    """
    @notice Always 0: exits go through `request_redeem` and `claim`.
    @param owner The holder.
    @return 0.
    """
    return 0


@external
@view
def previewDeposit(assets: uint256) -> uint256:
    """
    @notice Shares a deposit of `assets` would mint now (rounded down).
    @param assets Collateral units.
    @return Shares.
    """
    return self._convert_to_shares(assets, self._total_assets(), False)


@external
@view
def previewMint(shares: uint256) -> uint256:
    """
    @notice Assets a mint of `shares` would cost now (rounded up).
    @param shares Shares.
    @return Collateral units.
    """
    return self._convert_to_assets(shares, self._total_assets(), True)


@external
@view
def previewWithdraw(assets: uint256) -> uint256:
    """
    @notice Shares that `assets` would cost to withdraw at the current price (rounded up).
    @param assets Collateral units.
    @return Shares.
    """
    return self._convert_to_shares(assets, self._total_assets(), True)


@external
@view
def previewRedeem(shares: uint256) -> uint256:
    """
    @notice Assets `shares` are worth at the current price (rounded down); a request records this.
    @param shares Shares.
    @return Collateral units.
    """
    return self._convert_to_assets(shares, self._total_assets(), False)


@external
@view
def loss_allowance() -> uint256:
    """
    @notice The largest deficit the vault may cover in a takeover now: the per-event cap, or what
            is left of today's cap if less.
    @return Collateral units.
    """
    lost: uint256 = self.lost_today if block.timestamp // SECONDS_PER_DAY == self.loss_day else 0
    return min(self.loss_cap_per_event, self.loss_cap_per_day - min(lost, self.loss_cap_per_day))


# ---------------------------------------------------------------- internals

@internal
def _deposit(assets: uint256, shares: uint256, receiver: address):
    assert receiver == msg.sender, "InsuranceVault: deposit for yourself only"
    assert assets > 0 and shares > 0, "InsuranceVault: zero deposit"
    assert extcall collateral.transferFrom(msg.sender, self, assets, default_return_value=True), "InsuranceVault: transfer failed"
    extcall IPoolAccount(pool.address).deposit(assets)
    erc20._mint(receiver, shares)
    self.unlock_time[receiver] = block.timestamp + self.lockup_period
    log IERC4626.Deposit(sender=msg.sender, owner=receiver, assets=assets, shares=shares)


@internal
@view
def _vault_value() -> int256:
    return staticcall clearinghouse.account_value(self)


@internal
@view
def _total_assets() -> uint256:
    return convert(max(self._vault_value(), 0), uint256)


@internal
@view
def _accepts_deposits() -> bool:
    return self._vault_value() >= 0 and not staticcall clearinghouse.bankrupt(self)


@internal
@view
def _total_assets_checked() -> uint256:
    value: int256 = self._vault_value()
    assert value >= 0, "InsuranceVault: vault in deficit"
    assert not staticcall clearinghouse.bankrupt(self), "InsuranceVault: vault flagged bankrupt"
    return convert(value, uint256)


@internal
@view
def _convert_to_shares(assets: uint256, total_assets: uint256, round_up: bool) -> uint256:
    numerator: uint256 = assets * (erc20.totalSupply + VIRTUAL_SHARES)
    denominator: uint256 = total_assets + VIRTUAL_ASSETS
    return fixed_point.ceil_div(numerator, denominator) if round_up else numerator // denominator


@internal
@view
def _convert_to_assets(shares: uint256, total_assets: uint256, round_up: bool) -> uint256:
    numerator: uint256 = shares * (total_assets + VIRTUAL_ASSETS)
    denominator: uint256 = erc20.totalSupply + VIRTUAL_SHARES
    return fixed_point.ceil_div(numerator, denominator) if round_up else numerator // denominator


@internal
def _set_risk_limits(leverage: uint256, cap_per_event: uint256, cap_per_day: uint256):
    assert leverage > 0, "InsuranceVault: zero leverage"
    self.max_leverage = leverage
    self.loss_cap_per_event = cap_per_event
    self.loss_cap_per_day = cap_per_day
    log UpdateRiskLimits(max_leverage=leverage, loss_cap_per_event=cap_per_event, loss_cap_per_day=cap_per_day)


@internal
def _set_lockup(lockup: uint256, delay: uint256):
    self.lockup_period = lockup
    self.withdrawal_delay = delay
    log UpdateLockup(lockup_period=lockup, withdrawal_delay=delay)
