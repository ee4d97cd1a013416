# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title InsuranceVault
@notice The second layer of the waterfall: an ERC-4626 vault with EIP-7540 asynchronous
        redemptions whose depositors own an account in the margin pool. It earns liquidation
        penalties, trading fees and the buffer of the accounts it takes over, and bears the
        deficits it covers and the moves of the positions it holds. The LiquidationEngine hands it
        failing accounts; the vault's risk limits (leverage, position per market, a loss allowance
        that counts the day's drawdown) decide what it may accept.
@dev totalAssets = min(account value now, value at the last report - income still locked), never
     below 0: a gain reaches the share price only through a report (`process_report`, and every
     deposit, request, claim and takeover), which locks it and unlocks it linearly over
     `profit_unlock_time`; a loss shows at once, first against the income still locked. Virtual
     shares (1e6) and assets (1) keep the empty and the drained vault from being inflated; deposits
     go straight into the pool, which refuses deposits from others on the vault's behalf, so a
     donation moves nothing; the vault never reads `balanceOf(self)`.
     Exits (EIP-7540, requestId 0: one aggregated request per controller): `requestRedeem`
     escrows the shares (they keep bearing losses), `redeem` or `withdraw` after
     `withdrawal_delay` pay min(value at request, value at claim) for the shares claimed. Fresh
     deposits are locked for `lockup_period` first.
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

# @dev EIP-7540: `sender` escrowed `shares` of `owner` into the request of `controller`.
event RedeemRequest:
    controller: indexed(address)
    owner: indexed(address)
    requestId: indexed(uint256)
    sender: address
    shares: uint256

# @dev EIP-7540: `controller` let `operator` act for it (or stopped it).
event OperatorSet:
    controller: indexed(address)
    operator: indexed(address)
    approved: bool

event ProfitLocked:
    # @dev income booked by this report
    gain: uint256
    # @dev income now locked in all, and when the last of it unlocks
    locked_profit: uint256
    unlock_end: uint256

event TakeoverRecorded:
    account: indexed(address)
    loss: uint256
    # @dev the day's drawdown after the takeover, the deficit included
    drawdown: uint256

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

event UpdateProfitUnlock:
    profit_unlock_time: uint256


# ---------------------------------------------------------------- structs

struct Request:
    # @dev escrowed shares, Pending before `claimable_at` and Claimable from then on
    shares: uint256
    # @dev their value when requested (convertToAssets, summed): the most a claim of them pays
    assets: uint256
    claimable_at: uint256

struct ClaimPreview:
    # @dev the controller's request: shares and when they are claimable
    shares: uint256
    claimable_at: uint256
    # @dev what claiming every share would pay now: min(value at request, value now)
    owed: uint256
    # @dev the part of `owed` the vault's margin lets it pay now (maxWithdraw once claimable)
    payable_now: uint256


# ---------------------------------------------------------------- constants

# @dev Virtual shares and assets (OpenZeppelin's decimals offset of 6): an attacker must donate
# about 1e6 times what they want to steal, and the empty vault has a defined price.
VIRTUAL_SHARES: constant(uint256) = 10**6
VIRTUAL_ASSETS: constant(uint256) = 1
SHARE_DECIMALS: constant(uint8) = 12
SECONDS_PER_DAY: constant(uint256) = 86400
# @dev Deposit caps: with both, no share or asset conversion can overflow (2**96 x 2**150 < 2**256).
MAX_TOTAL_ASSETS: constant(uint256) = 2**96
MAX_TOTAL_SUPPLY: constant(uint256) = 2**150
# @dev Bounds of `profit_unlock_time` (yearn v3 allows up to a year).
MIN_PROFIT_UNLOCK: constant(uint256) = 86400
MAX_PROFIT_UNLOCK: constant(uint256) = 365 * 86400
# @dev The vault's request ids: EIP-7540's requestId 0, requests aggregated per controller.
REQUEST_ID: constant(uint256) = 0
# @dev ERC-165 ids: ERC-165, EIP-7540 operators, EIP-7540 async redeem, ERC-7575 (all five of its
# interfaces and each of them: minimal, deposit, mint, redeem, withdraw).
INTERFACE_IDS: constant(bytes4[9]) = [
    0x01ffc9a7, 0xe3bc4e65, 0x620ee8e4, 0x2f0a18c5, 0x50a526d6, 0xc1f329ef, 0xe1550342, 0x2fd7d42a, 0x70dec094
]


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
# @dev Each controller's redemption request (EIP-7540 requestId 0).
requests: public(HashMap[address, Request])
# @dev EIP-7540 operators: controller => operator => approved.
isOperator: public(HashMap[address, HashMap[address, bool]])
# @dev Seconds over which a reported gain unlocks into totalAssets.
profit_unlock_time: public(uint256)
# @dev The account value at the last report, plus deposits and less claims since.
last_report_value: public(int256)
# @dev When the unlocking schedule was last set (by a report that found the value changed).
last_report: public(uint256)
# @dev Income locked at the last report; it unlocks linearly until `unlock_end`.
locked_profit: public(uint256)
# @dev When the last of the locked income unlocks.
unlock_end: public(uint256)
# @dev The day (timestamp // 86400) that `day_high` belongs to.
high_day: public(uint256)
# @dev The highest account value seen at a report on `high_day` (plus deposits, less claims since).
day_high: public(int256)
# @dev Largest notional / equity of the vault's account after a takeover (1e18 = 1x).
max_leverage: public(uint256)
# @dev Largest |position| per market (base units) the vault may hold after a takeover.
max_position: public(HashMap[uint256, uint256])
# @dev Largest deficit the vault covers in one takeover (collateral units).
loss_cap_per_event: public(uint256)
# @dev Largest drawdown per UTC day from the day's high, deficits included (collateral units).
loss_cap_per_day: public(uint256)


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
    profit_unlock: uint256,
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
    @param cap_per_day Largest drawdown per UTC day (collateral units).
    @param profit_unlock Seconds over which reported income unlocks (1 day to 365 days).
    """
    ownable.__init__()
    erc20.__init__("Backstop Insurance Vault", "bINS", SHARE_DECIMALS, "Backstop Insurance Vault", "1")
    collateral = collateral_token
    pool = margin_pool
    clearinghouse = clearing
    self._set_lockup(lockup, delay)
    self._set_risk_limits(leverage, cap_per_event, cap_per_day)
    self._set_profit_unlock(profit_unlock)
    extcall collateral_token.approve(margin_pool.address, max_value(uint256))
    extcall IPoolAccount(margin_pool.address).close_to_third_party_deposits()


# ---------------------------------------------------------------- ERC-4626: deposits (synchronous)

@external
def deposit(assets: uint256, receiver: address) -> uint256:
    """
    @notice Deposits `assets` for shares (rounded down) and locks the receiver's shares for
            `lockup_period`. The smallest deposit that mints a share is `min_deposit()`.
    @dev For yourself, or for a receiver that made you its operator: a deposit re-locks all of
         the receiver's shares, which nobody else may do to it.
    @param assets Collateral units, pulled with transferFrom.
    @param receiver The caller, or a controller whose operator the caller is.
    @return The shares minted.
    """
    total_assets: uint256 = self._deposit_checks(receiver)
    assert assets <= self._asset_room(self.last_report_value), "InsuranceVault: deposit above the vault's cap"
    shares: uint256 = self._convert_to_shares(assets, total_assets, False)
    self._deposit(assets, shares, receiver)
    return shares


@external
def mint(shares: uint256, receiver: address) -> uint256:
    """
    @notice Mints exactly `shares` for the assets they cost (rounded up); locks as `deposit` does.
    @param shares Shares to mint.
    @param receiver The caller, or a controller whose operator the caller is.
    @return The assets pulled.
    """
    total_assets: uint256 = self._deposit_checks(receiver)
    assert shares <= MAX_TOTAL_SUPPLY - erc20.totalSupply, "InsuranceVault: deposit above the vault's cap"
    assets: uint256 = self._convert_to_assets(shares, total_assets, True)
    assert assets <= self._asset_room(self.last_report_value), "InsuranceVault: deposit above the vault's cap"
    self._deposit(assets, shares, receiver)
    return assets


# ---------------------------------------------------------------- EIP-7540: asynchronous redemption

@external
def requestRedeem(shares: uint256, controller: address, owner: address) -> uint256:
    """
    @notice Starts an exit: escrows `shares` of `owner` into `controller`'s request and records
            their value now, the most their claim pays. Claimable `withdrawal_delay` later.
    @dev One request per controller (requestId 0): shares added to a Pending request join it and
         the whole request waits a full delay again; a Claimable request must be claimed first.
         The caller must be the controller or its operator, and `owner` itself, its operator, or
         hold an ERC-20 allowance of its shares (spent). Escrowed shares stay in the supply and
         keep bearing the vault's losses until claimed.
    @param shares Unlocked shares of `owner`.
    @param controller Who may claim the request.
    @param owner Whose shares are escrowed.
    @return The request id: always 0.
    """
    assert shares > 0, "InsuranceVault: zero shares"
    assert self._acts_for(controller), "InsuranceVault: caller is not the controller or its operator"
    assert block.timestamp >= self.unlock_time[owner], "InsuranceVault: shares locked"
    request: Request = self.requests[controller]
    assert request.shares == 0 or block.timestamp < request.claimable_at, "InsuranceVault: claim the claimable request first"
    if owner != msg.sender and not self.isOperator[owner][msg.sender]:
        erc20._spend_allowance(owner, msg.sender, shares)
    assets: uint256 = self._convert_to_assets(shares, self._report(0), False)
    erc20._transfer(owner, self, shares)
    self.requests[controller] = Request(
        shares=request.shares + shares, assets=request.assets + assets, claimable_at=block.timestamp + self.withdrawal_delay
    )
    log RedeemRequest(controller=controller, owner=owner, requestId=REQUEST_ID, sender=msg.sender, shares=shares)
    return REQUEST_ID


@external
def redeem(shares: uint256, receiver: address, controller: address) -> uint256:
    """
    @notice Claims `shares` of `controller`'s Claimable request: burns them and pays `receiver`
            min(their value at request, their value now), rounded down.
    @dev Reverts while the vault cannot pay it (margin, stale or paused prices, an ADL round):
         `maxRedeem(controller)` and `claim_preview(controller)` tell in advance.
    @param shares Shares of the request to claim.
    @param receiver Who receives the assets.
    @param controller The request's controller: the caller or one it made its operator.
    @return The assets paid.
    """
    request: Request = self._claimable_request(controller, receiver, shares)
    assert shares <= request.shares, "InsuranceVault: shares above the claimable request"
    assets: uint256 = self._owed(request, shares, self._report(0))
    self._claim(request, controller, receiver, shares, assets)
    return assets


@external
def withdraw(assets: uint256, receiver: address, controller: address) -> uint256:
    """
    @notice Claims exactly `assets` from `controller`'s Claimable request, burning the fewest
            of its shares that pay them at the request's rate (rounded up).
    @dev The request's rate per share is min(value at request, value now) per share.
    @param assets Collateral units to pay `receiver`.
    @param receiver Who receives the assets.
    @param controller The request's controller: the caller or one it made its operator.
    @return The shares burned.
    """
    request: Request = self._claimable_request(controller, receiver, assets)
    total_assets: uint256 = self._report(0)
    assert assets <= self._owed(request, request.shares, total_assets), "InsuranceVault: assets above the claimable request"
    # Ceiling at both rates: the claim of `shares` pays at least `assets` (request.assets >= assets > 0).
    shares: uint256 = max(
        fixed_point.ceil_div(assets * request.shares, request.assets), self._convert_to_shares(assets, total_assets, True)
    )
    self._claim(request, controller, receiver, shares, assets)
    return shares


@external
def setOperator(operator: address, approved: bool) -> bool:
    """
    @notice Lets `operator` request, claim and deposit for the caller (or stops it).
    @dev An operator may escrow the caller's shares and send its claims anywhere: trust it.
    @param operator The operator.
    @param approved True to approve, false to revoke.
    @return True.
    """
    self.isOperator[msg.sender][operator] = approved
    log OperatorSet(controller=msg.sender, operator=operator, approved=approved)
    return True


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


# ---------------------------------------------------------------- income and drawdown

@external
def process_report() -> uint256:
    """
    @notice Books the vault's gain since the last report as locked income, which unlocks into
            totalAssets linearly over `profit_unlock_time`, and updates the day's high.
    @dev Anyone may call; every deposit, request, claim and takeover does it too. Changes no
         share price: totalAssets is the same before and after.
    @return Income still locked after the report.
    """
    self._report(0)
    return self.locked_profit


# ---------------------------------------------------------------- clearinghouse

@external
def record_takeover(account: address, loss: uint256):
    """
    @notice Reports the vault's value right after a takeover: a buffer is locked as income, a
            deficit counts in the day's drawdown from the value before it.
    @dev The clearinghouse's LiquidationEngine only; it has checked `loss_allowance` first.
    @param account The account taken over.
    @param loss The deficit covered (0 if the account still had value).
    """
    assert msg.sender == staticcall clearinghouse.liquidation_engine(), "InsuranceVault: caller is not the liquidation engine"
    self._report(loss)
    log TakeoverRecorded(account=account, loss=loss, drawdown=self._drawdown(self.last_report_value))


# ---------------------------------------------------------------- owner

@external
def set_risk_limits(leverage: uint256, cap_per_event: uint256, cap_per_day: uint256):
    """
    @notice Sets the takeover limits.
    @dev Owner only.
    @param leverage Largest notional / equity after a takeover (1e18 = 1x), positive.
    @param cap_per_event Largest deficit covered in one takeover.
    @param cap_per_day Largest drawdown per UTC day from the day's high, deficits included.
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


@external
def set_profit_unlock(profit_unlock: uint256):
    """
    @notice Sets the time over which reported income unlocks into the share price.
    @dev Owner only; between 1 day and 365 days. Applies to income reported afterwards.
    @param profit_unlock Seconds.
    """
    ownable._check_owner()
    self._set_profit_unlock(profit_unlock)


# ---------------------------------------------------------------- internals

@internal
def _deposit_checks(receiver: address) -> uint256:
    """
    @dev The checks every deposit and mint share, after a report; returns totalAssets.
    """
    assert self._acts_for(receiver), "InsuranceVault: receiver has not made you its operator"
    total_assets: uint256 = self._report(0)
    assert self.last_report_value >= 0, "InsuranceVault: vault in deficit"
    assert not staticcall clearinghouse.bankrupt(self), "InsuranceVault: vault flagged bankrupt"
    return total_assets


@internal
def _deposit(assets: uint256, shares: uint256, receiver: address):
    assert assets > 0 and shares > 0, "InsuranceVault: zero deposit"
    assert shares <= MAX_TOTAL_SUPPLY - erc20.totalSupply, "InsuranceVault: deposit above the vault's cap"
    assert extcall collateral.transferFrom(msg.sender, self, assets, default_return_value=True), "InsuranceVault: transfer failed"
    extcall IPoolAccount(pool.address).deposit(assets)
    # A deposit is not income: the report value and the day's high move with it.
    self.last_report_value += convert(assets, int256)
    self.day_high += convert(assets, int256)
    erc20._mint(receiver, shares)
    self.unlock_time[receiver] = block.timestamp + self.lockup_period
    log IERC4626.Deposit(sender=msg.sender, owner=receiver, assets=assets, shares=shares)


@internal
@view
def _claimable_request(controller: address, receiver: address, amount: uint256) -> Request:
    """
    @dev The checks `redeem` and `withdraw` share; returns the controller's request.
    """
    assert self._acts_for(controller), "InsuranceVault: caller is not the controller or its operator"
    assert amount > 0, "InsuranceVault: zero amount"
    assert receiver != empty(address), "InsuranceVault: zero receiver"
    request: Request = self.requests[controller]
    assert request.shares > 0, "InsuranceVault: no redeem request"
    assert block.timestamp >= request.claimable_at, "InsuranceVault: request not yet claimable"
    return request


@internal
def _claim(request: Request, controller: address, receiver: address, shares: uint256, assets: uint256):
    if assets > 0:
        assert assets <= self._withdrawable(), "InsuranceVault: the vault cannot pay this claim now, retry later"
    left: uint256 = request.shares - shares
    if left == 0:
        self.requests[controller] = empty(Request)
    else:
        # The shares left keep their part of the value at request (the claim took its floor).
        self.requests[controller] = Request(
            shares=left, assets=request.assets - request.assets * shares // request.shares, claimable_at=request.claimable_at
        )
    erc20._burn(self, shares)
    if assets > 0:
        self.last_report_value -= convert(assets, int256)
        self.day_high -= convert(assets, int256)
        extcall IPoolAccount(pool.address).withdraw(assets)
        assert extcall collateral.transfer(receiver, assets, default_return_value=True), "InsuranceVault: transfer failed"
    log IERC4626.Withdraw(sender=msg.sender, receiver=receiver, owner=controller, assets=assets, shares=shares)


@internal
def _report(loss: uint256) -> uint256:
    """
    @dev Books the gain since the last report as locked income and returns totalAssets, which the
         report leaves unchanged. The income still locked unlocks on its schedule; new income
         joins it and the end of the unlocking becomes their weighted average (as in yearn v3),
         so a report never speeds up the unlocking of income already locked. `loss`: a deficit
         the vault has just paid, so the value before it (value + loss) counts for the day's high.
    """
    value: int256 = self._vault_value()
    self.day_high = max(self._reference_high(), value + convert(loss, int256))
    self.high_day = block.timestamp // SECONDS_PER_DAY
    if value == self.last_report_value:
        return self._total_assets(value)  # nothing to book: the unlocking schedule stands
    locked: uint256 = self._locked_now()
    unlocked: int256 = max(self.last_report_value - convert(locked, int256), 0)
    total_assets: uint256 = convert(max(min(value, unlocked), 0), uint256)
    locked_after: uint256 = convert(max(value - unlocked, 0), uint256)
    gain: uint256 = locked_after - min(locked_after, locked)
    end: uint256 = block.timestamp
    if locked_after > 0:
        remaining: uint256 = self.unlock_end - block.timestamp if locked > 0 else 0
        # Ceiling: the unlocking ends no earlier than the weighted average.
        end += fixed_point.ceil_div((locked_after - gain) * remaining + gain * self.profit_unlock_time, locked_after)
        if gain > 0:
            log ProfitLocked(gain=gain, locked_profit=locked_after, unlock_end=end)
    self.last_report_value = value
    self.last_report = block.timestamp
    self.locked_profit = locked_after
    self.unlock_end = end
    return total_assets


@internal
@view
def _acts_for(account: address) -> bool:
    return account == msg.sender or self.isOperator[account][msg.sender]


@internal
@view
def _vault_value() -> int256:
    return staticcall clearinghouse.account_value(self)


@internal
@view
def _locked_now() -> uint256:
    end: uint256 = self.unlock_end
    if block.timestamp >= end:
        return 0
    # Ceiling: income unlocks no earlier than its schedule.
    return fixed_point.ceil_div(self.locked_profit * (end - block.timestamp), end - self.last_report)


@internal
@view
def _total_assets(vault_value: int256) -> uint256:
    return convert(max(min(vault_value, self.last_report_value - convert(self._locked_now(), int256)), 0), uint256)


@internal
@view
def _reference_high() -> int256:
    """
    @dev Today's reference for the drawdown before the value now is counted: the day's high so
         far, or, before the first report of the day, the value at the last report (the best
         estimate of the value when the day began: a loss since then counts today).
    """
    if self.high_day == block.timestamp // SECONDS_PER_DAY:
        return self.day_high
    return self.last_report_value


@internal
@view
def _drawdown(vault_value: int256) -> uint256:
    return convert(max(self._reference_high(), vault_value) - vault_value, uint256)


@internal
@view
def _withdrawable() -> uint256:
    """
    @dev What the clearinghouse lets the vault's account withdraw now; 0 if it refuses to say
         (a stale or paused market), so that the max* views never revert.
    """
    success: bool = False
    response: Bytes[32] = b""
    success, response = raw_call(
        clearinghouse.address,
        abi_encode(self, method_id=method_id("withdrawable(address)")),
        max_outsize=32,
        is_static_call=True,
        revert_on_failure=False,
    )
    if not success or len(response) < 32:
        return 0
    return abi_decode(response, uint256)


@internal
@view
def _owed(request: Request, shares: uint256, total_assets: uint256) -> uint256:
    """
    @dev What a claim of `shares` of `request` pays: min(their part of the value at request,
         their value now), each rounded down.
    """
    return min(request.assets * shares // request.shares, self._convert_to_assets(shares, total_assets, False))


@internal
@pure
def _asset_room(vault_value: int256) -> uint256:
    return convert(max(convert(MAX_TOTAL_ASSETS, int256) - max(vault_value, 0), 0), uint256)


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
@view
def _max_deposit(receiver: address) -> uint256:
    """
    @dev The most `receiver` can be credited by the caller now: 0 unless the caller may deposit
         for it and the vault takes deposits; below the caps, and 0 if that is under the minimum.
    """
    value: int256 = self._vault_value()
    if receiver == empty(address) or not self._acts_for(receiver) or value < 0 or staticcall clearinghouse.bankrupt(self):
        return 0
    total_assets: uint256 = self._total_assets(value)
    supply: uint256 = erc20.totalSupply
    # The largest deposit whose shares fit under the supply cap (shares round down).
    by_supply: uint256 = ((MAX_TOTAL_SUPPLY - supply + 1) * (total_assets + VIRTUAL_ASSETS) - 1) // (supply + VIRTUAL_SHARES)
    most: uint256 = min(self._asset_room(value), by_supply)
    return most if most >= fixed_point.ceil_div(total_assets + VIRTUAL_ASSETS, supply + VIRTUAL_SHARES) else 0


@internal
@view
def _claim_preview(controller: address) -> ClaimPreview:
    request: Request = self.requests[controller]
    if request.shares == 0:
        return empty(ClaimPreview)
    owed: uint256 = self._owed(request, request.shares, self._total_assets(self._vault_value()))
    return ClaimPreview(shares=request.shares, claimable_at=request.claimable_at, owed=owed, payable_now=min(owed, self._withdrawable()))


@internal
@view
def _can_claim(controller: address) -> bool:
    request: Request = self.requests[controller]
    return request.shares > 0 and block.timestamp >= request.claimable_at and self._acts_for(controller)


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


@internal
def _set_profit_unlock(profit_unlock: uint256):
    assert profit_unlock >= MIN_PROFIT_UNLOCK and profit_unlock <= MAX_PROFIT_UNLOCK, "InsuranceVault: profit unlock time out of bounds"
    self.profit_unlock_time = profit_unlock
    log UpdateProfitUnlock(profit_unlock_time=profit_unlock)


# ---------------------------------------------------------------- views: ERC-4626

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
def share() -> address:
    """
    @notice ERC-7575: the share token, the vault itself.
    @return This contract's address.
    """
    return self


@external
@view
def totalAssets() -> uint256:
    """
    @notice The vault's account value marked to market, less the income still locked; a loss
            shows at once, a gain only as it unlocks. 0 while the vault is in deficit.
    @return Collateral units.
    """
    return self._total_assets(self._vault_value())


@external
@view
def convertToShares(assets: uint256) -> uint256:
    """
    @notice Shares worth `assets` at the current price, rounded down.
    @param assets Collateral units.
    @return Shares.
    """
    return self._convert_to_shares(assets, self._total_assets(self._vault_value()), False)


@external
@view
def convertToAssets(shares: uint256) -> uint256:
    """
    @notice Assets worth `shares` at the current price, rounded down; a request records this.
    @param shares Shares.
    @return Collateral units.
    """
    return self._convert_to_assets(shares, self._total_assets(self._vault_value()), False)


@external
@view
def maxDeposit(receiver: address) -> uint256:
    """
    @notice The largest deposit the caller can make for `receiver` now without a revert: 0 unless
            the caller is the receiver or its operator, 0 while the vault is in deficit or flagged
            bankrupt, at most the caps, and 0 if that would be below `min_deposit()`.
    @dev Answers for msg.sender (the caller's rights decide); ignores the caller's token balance.
    @param receiver The depositor's receiver.
    @return Collateral units.
    """
    return self._max_deposit(receiver)


@external
@view
def maxMint(receiver: address) -> uint256:
    """
    @notice The most shares the caller can mint for `receiver` now: as `maxDeposit`, in shares.
    @param receiver The receiver.
    @return Shares.
    """
    most: uint256 = self._max_deposit(receiver)
    if most == 0:
        return 0
    # Whose cost (rounded up) is at most `most`: the shares `most` buys, rounded down.
    return self._convert_to_shares(most, self._total_assets(self._vault_value()), False)


@external
@view
def maxWithdraw(controller: address) -> uint256:
    """
    @notice The most assets the caller can claim now from `controller`'s Claimable request: what
            the request is owed now, within what the vault's margin lets it pay.
    @dev 0 unless the caller is the controller or its operator and the request is Claimable.
    @param controller The request's controller.
    @return Collateral units.
    """
    if not self._can_claim(controller):
        return 0
    return self._claim_preview(controller).payable_now


@external
@view
def maxRedeem(controller: address) -> uint256:
    """
    @notice The most shares the caller can claim now from `controller`'s Claimable request
            without a revert: all of them if the vault can pay their claim, else the most whose
            claim (rounded down) fits in what it can pay.
    @dev 0 unless the caller is the controller or its operator and the request is Claimable.
    @param controller The request's controller.
    @return Shares.
    """
    if not self._can_claim(controller):
        return 0
    request: Request = self.requests[controller]
    preview: ClaimPreview = self._claim_preview(controller)
    if preview.owed == preview.payable_now:
        return request.shares
    # The claim pays min(f1, f2) of two floors; it fits in W if either does: the largest shares
    # with floor(assets x s / shares) <= W, or with floor(s x (total + 1) / (supply + 1e6)) <= W.
    can_pay: uint256 = preview.payable_now
    by_request: uint256 = ((can_pay + 1) * request.shares - 1) // request.assets
    by_value: uint256 = ((can_pay + 1) * (erc20.totalSupply + VIRTUAL_SHARES) - 1) // (
        self._total_assets(self._vault_value()) + VIRTUAL_ASSETS
    )
    return max(by_request, by_value)


@external
@view
def previewDeposit(assets: uint256) -> uint256:
    """
    @notice Shares a deposit of `assets` would mint now (rounded down).
    @param assets Collateral units.
    @return Shares.
    """
    return self._convert_to_shares(assets, self._total_assets(self._vault_value()), False)


@external
@view
def previewMint(shares: uint256) -> uint256:
    """
    @notice Assets a mint of `shares` would cost now (rounded up).
    @param shares Shares.
    @return Collateral units.
    """
    return self._convert_to_assets(shares, self._total_assets(self._vault_value()), True)


@external
@view
def previewWithdraw(assets: uint256) -> uint256:
    """
    @notice Reverts for every input (EIP-7540: redemptions are asynchronous); see `claim_preview`.
    @param assets Ignored.
    @return Never returns.
    """
    raise "InsuranceVault: asynchronous redeem, see claim_preview"


@external
@view
def previewRedeem(shares: uint256) -> uint256:
    """
    @notice Reverts for every input (EIP-7540: redemptions are asynchronous); see `claim_preview`.
    @param shares Ignored.
    @return Never returns.
    """
    raise "InsuranceVault: asynchronous redeem, see claim_preview"


# ---------------------------------------------------------------- views: EIP-7540 and ERC-165

@external
@view
def pendingRedeemRequest(requestId: uint256, controller: address) -> uint256:
    """
    @notice Shares of `controller`'s request still waiting out `withdrawal_delay`.
    @dev requestId 0 aggregation: requests are told apart by the controller alone.
    @param requestId Ignored (always 0).
    @param controller The controller.
    @return Shares.
    """
    request: Request = self.requests[controller]
    return request.shares if block.timestamp < request.claimable_at else 0


@external
@view
def claimableRedeemRequest(requestId: uint256, controller: address) -> uint256:
    """
    @notice Shares of `controller`'s request that `redeem`/`withdraw` may claim (if the vault can
            pay: see `maxRedeem`).
    @param requestId Ignored (always 0).
    @param controller The controller.
    @return Shares.
    """
    request: Request = self.requests[controller]
    return request.shares if block.timestamp >= request.claimable_at else 0


@external
@view
def claim_preview(controller: address) -> ClaimPreview:
    """
    @notice `controller`'s request and, in advance, what claiming all of it would pay now and how
            much of that the vault can pay now (its margin, fresh prices and no ADL round allowing).
    @param controller The controller.
    @return shares, claimable_at, owed, payable_now (all 0 without a request).
    """
    return self._claim_preview(controller)


@external
@pure
def supportsInterface(interfaceId: bytes4) -> bool:
    """
    @notice ERC-165: ERC-165, EIP-7540 operators and asynchronous redeem, ERC-7575.
    @param interfaceId The interface id.
    @return Whether the vault implements it.
    """
    return interfaceId in INTERFACE_IDS


# ---------------------------------------------------------------- views: income and limits

@external
@view
def min_deposit() -> uint256:
    """
    @notice The smallest deposit that mints at least one share now (a smaller one reverts).
    @return Collateral units.
    """
    return fixed_point.ceil_div(self._total_assets(self._vault_value()) + VIRTUAL_ASSETS, erc20.totalSupply + VIRTUAL_SHARES)


@external
@view
def profit_locked() -> uint256:
    """
    @notice Reported income not yet unlocked into totalAssets.
    @return Collateral units.
    """
    return self._locked_now()


@external
@view
def drawdown() -> uint256:
    """
    @notice The vault's drawdown today: the day's high (or the value at the last report before
            the day's first) less its value now, 0 at a new high.
    @return Collateral units.
    """
    return self._drawdown(self._vault_value())


@external
@view
def loss_allowance() -> uint256:
    """
    @notice The largest deficit the vault may cover in a takeover now: the per-event cap, or what
            today's drawdown leaves of the daily cap if less.
    @return Collateral units.
    """
    cap: uint256 = self.loss_cap_per_day
    return min(self.loss_cap_per_event, cap - min(self._drawdown(self._vault_value()), cap))
