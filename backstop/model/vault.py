"""The executable specification of contracts/InsuranceVault.vy, attached to a `Model`.

Same rules, order of checks, revert strings and rounding as the contract. The vault's account lives
in the exchange model (its pool balance and positions under the vault's address), so every action
runs as one transaction of the exchange model: a revert restores both.

The contract's rules, in the words of docs/design.md (section 4.1):
- deposits are synchronous (ERC-4626), for oneself or for a receiver that made the caller its
  operator; they lock the receiver's shares for `lockup_period`;
- exits are EIP-7540 asynchronous redemptions with requestId 0: one aggregated request per
  controller, claimable `withdrawal_delay` after its last addition, claimed through `redeem` or
  `withdraw` for min(value at request, value at claim);
- totalAssets = min(account value, value at the last report - income still locked): a gain reaches
  the share price only as it unlocks, linearly over `profit_unlock_time`; a loss at once;
- the loss allowance is the per-event cap, or what the day's drawdown (from the day's high) leaves
  of the daily cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from backstop.model.protocol import ZERO_ADDRESS, Account, Model, ModelRevert, _require, atomic, ceil_div

VIRTUAL_SHARES = 10**6  # InsuranceVault.VIRTUAL_SHARES
VIRTUAL_ASSETS = 1  # InsuranceVault.VIRTUAL_ASSETS
SECONDS_PER_DAY = 86400
MAX_TOTAL_ASSETS = 2**96  # InsuranceVault.MAX_TOTAL_ASSETS
MAX_TOTAL_SUPPLY = 2**150  # InsuranceVault.MAX_TOTAL_SUPPLY
MIN_PROFIT_UNLOCK = 86400  # InsuranceVault.MIN_PROFIT_UNLOCK
MAX_PROFIT_UNLOCK = 365 * 86400  # InsuranceVault.MAX_PROFIT_UNLOCK
REQUEST_ID = 0  # InsuranceVault.REQUEST_ID: EIP-7540 requestId 0, requests aggregated per controller
CAP = "InsuranceVault: deposit above the vault's cap"
CANNOT_PAY = "InsuranceVault: the vault cannot pay this claim now, retry later"
NOT_CONTROLLER = "InsuranceVault: caller is not the controller or its operator"


@dataclass(frozen=True)
class Request:
    """A controller's redemption request (the contract's `Request`)."""

    shares: int = 0
    assets: int = 0
    claimable_at: int = 0


class ClaimPreview(NamedTuple):
    """`claim_preview(controller)`: the request's shares and when they are claimable, what claiming
    all of them would pay now, and how much of that the vault can pay now."""

    shares: int
    claimable_at: int
    owed: int
    payable_now: int


class VaultModel:
    """Storage names as in the contract; shares are `balance_of`/`total_supply`, operators
    `is_operator[(controller, operator)]`. Views that answer for msg.sender take `caller`."""

    def __init__(self, exchange: Model, address: Account, lockup: int, delay: int, leverage: int, cap_per_event: int, cap_per_day: int,
                 profit_unlock: int = MIN_PROFIT_UNLOCK):
        """`profit_unlock` may be left out by drivers that book no income (the ADL property books)."""
        self.exchange, self.address = exchange, address
        self.total_supply = 0
        self.balance_of: dict[Account, int] = {}
        self.allowance: dict[tuple[Account, Account], int] = {}
        self.unlock_time: dict[Account, int] = {}
        self.requests: dict[Account, Request] = {}
        self.is_operator: dict[tuple[Account, Account], bool] = {}
        self.last_report_value = 0
        self.last_report = 0
        self.locked_profit = 0
        self.unlock_end = 0
        self.high_day = 0
        self.day_high = 0
        self.max_position: dict[int, int] = {}
        # Not storage: the gain the last report booked (the ProfitLocked event's, 0 if none).
        self.reported_gain = 0
        self.set_lockup(lockup, delay)
        self.set_risk_limits(leverage, cap_per_event, cap_per_day)
        self.set_profit_unlock(profit_unlock)
        exchange.close_to_third_party_deposits(address)
        exchange.vault = self

    def snapshot(self) -> dict:
        return {name: value.copy() if isinstance(value, dict) else value for name, value in vars(self).items() if name != "exchange"}

    def restore(self, saved: dict) -> None:
        vars(self).update({name: value.copy() if isinstance(value, dict) else value for name, value in saved.items()})

    # ------------------------------------------------------------ ERC-4626: deposits

    @atomic
    def deposit(self, caller: Account, assets: int, now: int, receiver: Account | None = None) -> int:
        receiver = caller if receiver is None else receiver
        total_assets = self._deposit_checks(caller, receiver, now)
        _require(assets <= self._asset_room(self.last_report_value), CAP)
        shares = self.convert_to_shares(assets, total_assets)
        self._deposit(caller, receiver, assets, shares, now)
        return shares

    @atomic
    def mint(self, caller: Account, shares: int, now: int, receiver: Account | None = None) -> int:
        receiver = caller if receiver is None else receiver
        total_assets = self._deposit_checks(caller, receiver, now)
        _require(shares <= MAX_TOTAL_SUPPLY - self.total_supply, CAP)
        assets = self.convert_to_assets(shares, total_assets, round_up=True)
        _require(assets <= self._asset_room(self.last_report_value), CAP)
        self._deposit(caller, receiver, assets, shares, now)
        return assets

    # ------------------------------------------------------------ EIP-7540: asynchronous redemption

    @atomic
    def request_redeem(self, caller: Account, shares: int, now: int, controller: Account | None = None, owner: Account | None = None) -> int:
        """`requestRedeem(shares, controller, owner)`; controller and owner default to the caller."""
        controller = caller if controller is None else controller
        owner = caller if owner is None else owner
        _require(shares > 0, "InsuranceVault: zero shares")
        _require(self._acts_for(caller, controller), NOT_CONTROLLER)
        _require(now >= self.unlock_time.get(owner, 0), "InsuranceVault: shares locked")
        request = self.requests.get(controller, Request())
        _require(request.shares == 0 or now < request.claimable_at, "InsuranceVault: claim the claimable request first")
        if owner != caller and not self.is_operator.get((owner, caller), False):
            self._spend_allowance(owner, caller, shares)
        assets = self.convert_to_assets(shares, self._report(0, now))
        self._transfer(owner, self.address, shares)
        self.requests[controller] = Request(request.shares + shares, request.assets + assets, now + self.withdrawal_delay)
        return REQUEST_ID

    @atomic
    def redeem(self, caller: Account, shares: int, now: int, receiver: Account | None = None, controller: Account | None = None) -> int:
        """`redeem(shares, receiver, controller)`; returns the assets paid."""
        receiver = caller if receiver is None else receiver
        controller = caller if controller is None else controller
        request = self._claimable_request(caller, controller, receiver, shares, now)
        _require(shares <= request.shares, "InsuranceVault: shares above the claimable request")
        assets = self._owed(request, shares, self._report(0, now))
        self._claim(request, controller, shares, assets, now)
        return assets

    @atomic
    def withdraw(self, caller: Account, assets: int, now: int, receiver: Account | None = None, controller: Account | None = None) -> int:
        """`withdraw(assets, receiver, controller)`; returns the shares burned."""
        receiver = caller if receiver is None else receiver
        controller = caller if controller is None else controller
        request = self._claimable_request(caller, controller, receiver, assets, now)
        total_assets = self._report(0, now)
        _require(assets <= self._owed(request, request.shares, total_assets), "InsuranceVault: assets above the claimable request")
        shares = max(ceil_div(assets * request.shares, request.assets), self.convert_to_shares(assets, total_assets, round_up=True))
        self._claim(request, controller, shares, assets, now)
        return shares

    def set_operator(self, caller: Account, operator: Account, approved: bool) -> bool:
        self.is_operator[(caller, operator)] = approved
        return True

    # ------------------------------------------------------------ shares as a token

    @atomic
    def transfer(self, caller: Account, to: Account, amount: int, now: int) -> None:
        _require(now >= self.unlock_time.get(caller, 0), "InsuranceVault: shares locked")
        self._transfer(caller, to, amount)

    @atomic
    def transfer_from(self, caller: Account, owner: Account, to: Account, amount: int, now: int) -> None:
        _require(now >= self.unlock_time.get(owner, 0), "InsuranceVault: shares locked")
        self._spend_allowance(owner, caller, amount)
        self._transfer(owner, to, amount)

    def approve(self, caller: Account, spender: Account, amount: int) -> None:
        """snekmate's `approve` (the contract's checks on the zero address left out: drivers never pass it)."""
        self.allowance[(caller, spender)] = amount

    # ------------------------------------------------------------ income, drawdown, the clearinghouse

    @atomic
    def process_report(self, now: int) -> int:
        self._report(0, now)
        return self.locked_profit

    def record_takeover(self, loss: int, now: int) -> int:
        """The LiquidationEngine's call after a takeover; returns the event's drawdown."""
        self._report(loss, now)
        return self._drawdown(self.last_report_value, now)

    def loss_allowance(self, now: int) -> int:
        cap = self.loss_cap_per_day
        return min(self.loss_cap_per_event, cap - min(self._drawdown(self._vault_value(now), now), cap))

    def drawdown(self, now: int) -> int:
        return self._drawdown(self._vault_value(now), now)

    def profit_locked(self, now: int) -> int:
        return self._locked_now(now)

    # ------------------------------------------------------------ owner

    def set_risk_limits(self, leverage: int, cap_per_event: int, cap_per_day: int) -> None:
        _require(leverage > 0, "InsuranceVault: zero leverage")
        self.max_leverage, self.loss_cap_per_event, self.loss_cap_per_day = leverage, cap_per_event, cap_per_day

    def set_max_position(self, market: int, size: int) -> None:
        self.max_position[market] = size

    def set_lockup(self, lockup: int, delay: int) -> None:
        self.lockup_period, self.withdrawal_delay = lockup, delay

    def set_profit_unlock(self, profit_unlock: int) -> None:
        _require(MIN_PROFIT_UNLOCK <= profit_unlock <= MAX_PROFIT_UNLOCK, "InsuranceVault: profit unlock time out of bounds")
        self.profit_unlock_time = profit_unlock

    # ------------------------------------------------------------ views

    def total_assets(self, now: int) -> int:
        return self._total_assets(self._vault_value(now), now)

    def convert_to_shares(self, assets: int, total_assets: int, round_up: bool = False) -> int:
        numerator, denominator = assets * (self.total_supply + VIRTUAL_SHARES), total_assets + VIRTUAL_ASSETS
        return ceil_div(numerator, denominator) if round_up else numerator // denominator

    def convert_to_assets(self, shares: int, total_assets: int, round_up: bool = False) -> int:
        numerator, denominator = shares * (total_assets + VIRTUAL_ASSETS), self.total_supply + VIRTUAL_SHARES
        return ceil_div(numerator, denominator) if round_up else numerator // denominator

    def min_deposit(self, now: int) -> int:
        return ceil_div(self.total_assets(now) + VIRTUAL_ASSETS, self.total_supply + VIRTUAL_SHARES)

    def max_deposit(self, caller: Account, receiver: Account, now: int) -> int:
        value = self._vault_value(now)
        if receiver == ZERO_ADDRESS or not self._acts_for(caller, receiver) or value < 0 or self.exchange.bankrupt.get(self.address, False):
            return 0
        total_assets, supply = self._total_assets(value, now), self.total_supply
        by_supply = ((MAX_TOTAL_SUPPLY - supply + 1) * (total_assets + VIRTUAL_ASSETS) - 1) // (supply + VIRTUAL_SHARES)
        most = min(self._asset_room(value), by_supply)
        return most if most >= ceil_div(total_assets + VIRTUAL_ASSETS, supply + VIRTUAL_SHARES) else 0

    def max_mint(self, caller: Account, receiver: Account, now: int) -> int:
        most = self.max_deposit(caller, receiver, now)
        return self.convert_to_shares(most, self.total_assets(now)) if most else 0

    def max_withdraw(self, caller: Account, controller: Account, now: int) -> int:
        return self.claim_preview(controller, now).payable_now if self._can_claim(caller, controller, now) else 0

    def max_redeem(self, caller: Account, controller: Account, now: int) -> int:
        if not self._can_claim(caller, controller, now):
            return 0
        request, preview = self.requests[controller], self.claim_preview(controller, now)
        if preview.owed == preview.payable_now:
            return request.shares
        can_pay = preview.payable_now
        by_request = ((can_pay + 1) * request.shares - 1) // request.assets
        by_value = ((can_pay + 1) * (self.total_supply + VIRTUAL_SHARES) - 1) // (self.total_assets(now) + VIRTUAL_ASSETS)
        return max(by_request, by_value)

    def pending_redeem_request(self, controller: Account, now: int) -> int:
        request = self.requests.get(controller, Request())
        return request.shares if now < request.claimable_at else 0

    def claimable_redeem_request(self, controller: Account, now: int) -> int:
        request = self.requests.get(controller, Request())
        return request.shares if now >= request.claimable_at else 0

    def claim_preview(self, controller: Account, now: int) -> ClaimPreview:
        request = self.requests.get(controller, Request())
        if request.shares == 0:
            return ClaimPreview(0, 0, 0, 0)
        owed = self._owed(request, request.shares, self.total_assets(now))
        return ClaimPreview(request.shares, request.claimable_at, owed, min(owed, self._withdrawable(now)))

    def accepts_deposits(self, now: int) -> bool:
        """Whether the vault takes deposits at all (value >= 0, not flagged)."""
        return self._vault_value(now) >= 0 and not self.exchange.bankrupt.get(self.address, False)

    # ------------------------------------------------------------ internals

    def _deposit_checks(self, caller: Account, receiver: Account, now: int) -> int:
        _require(self._acts_for(caller, receiver), "InsuranceVault: receiver has not made you its operator")
        total_assets = self._report(0, now)
        _require(self.last_report_value >= 0, "InsuranceVault: vault in deficit")
        _require(not self.exchange.bankrupt.get(self.address, False), "InsuranceVault: vault flagged bankrupt")
        return total_assets

    def _deposit(self, caller: Account, receiver: Account, assets: int, shares: int, now: int) -> None:
        _require(assets > 0 and shares > 0, "InsuranceVault: zero deposit")
        _require(shares <= MAX_TOTAL_SUPPLY - self.total_supply, CAP)
        self.exchange.deposit(self.address, assets)
        self.last_report_value += assets
        self.day_high += assets
        _require(receiver != ZERO_ADDRESS, "erc20: mint to the zero address")
        self.balance_of[receiver] = self.balance_of.get(receiver, 0) + shares
        self.total_supply += shares
        self.unlock_time[receiver] = now + self.lockup_period

    def _claimable_request(self, caller: Account, controller: Account, receiver: Account, amount: int, now: int) -> Request:
        _require(self._acts_for(caller, controller), NOT_CONTROLLER)
        _require(amount > 0, "InsuranceVault: zero amount")
        _require(receiver != ZERO_ADDRESS, "InsuranceVault: zero receiver")
        request = self.requests.get(controller, Request())
        _require(request.shares > 0, "InsuranceVault: no redeem request")
        _require(now >= request.claimable_at, "InsuranceVault: request not yet claimable")
        return request

    def _claim(self, request: Request, controller: Account, shares: int, assets: int, now: int) -> None:
        if assets > 0:
            _require(assets <= self._withdrawable(now), CANNOT_PAY)
        left = request.shares - shares
        if left == 0:
            self.requests.pop(controller, None)
        else:
            self.requests[controller] = Request(left, request.assets - request.assets * shares // request.shares, request.claimable_at)
        self.balance_of[self.address] -= shares
        self.total_supply -= shares
        if assets > 0:
            self.last_report_value -= assets
            self.day_high -= assets
            self.exchange.withdraw(self.address, assets, now)

    def _report(self, loss: int, now: int) -> int:
        value = self._vault_value(now)
        self.day_high = max(self._reference_high(now), value + loss)
        self.high_day = now // SECONDS_PER_DAY
        self.reported_gain = 0
        if value == self.last_report_value:
            return self._total_assets(value, now)  # nothing to book: the unlocking schedule stands
        locked = self._locked_now(now)
        unlocked = max(self.last_report_value - locked, 0)
        total_assets = max(min(value, unlocked), 0)
        locked_after = max(value - unlocked, 0)
        gain = locked_after - min(locked_after, locked)
        end = now
        if locked_after > 0:
            remaining = self.unlock_end - now if locked > 0 else 0
            end += ceil_div((locked_after - gain) * remaining + gain * self.profit_unlock_time, locked_after)
        self.last_report_value, self.last_report, self.locked_profit, self.unlock_end = value, now, locked_after, end
        self.reported_gain = gain
        return total_assets

    def _acts_for(self, caller: Account, account: Account) -> bool:
        return account == caller or self.is_operator.get((account, caller), False)

    def _can_claim(self, caller: Account, controller: Account, now: int) -> bool:
        request = self.requests.get(controller, Request())
        return request.shares > 0 and now >= request.claimable_at and self._acts_for(caller, controller)

    def _vault_value(self, now: int) -> int:
        return self.exchange.account_value(self.address, now)

    def _locked_now(self, now: int) -> int:
        if now >= self.unlock_end:
            return 0
        return ceil_div(self.locked_profit * (self.unlock_end - now), self.unlock_end - self.last_report)

    def _total_assets(self, value: int, now: int) -> int:
        return max(min(value, self.last_report_value - self._locked_now(now)), 0)

    def _reference_high(self, now: int) -> int:
        return self.day_high if self.high_day == now // SECONDS_PER_DAY else self.last_report_value

    def _drawdown(self, value: int, now: int) -> int:
        return max(self._reference_high(now), value) - value

    def _withdrawable(self, now: int) -> int:
        """The clearinghouse's `withdrawable(vault)`, 0 where it reverts (the contract's raw_call)."""
        try:
            return self.exchange.withdrawable(self.address, now)
        except ModelRevert:
            return 0

    def _owed(self, request: Request, shares: int, total_assets: int) -> int:
        return min(request.assets * shares // request.shares, self.convert_to_assets(shares, total_assets))

    def _asset_room(self, value: int) -> int:
        return max(MAX_TOTAL_ASSETS - max(value, 0), 0)

    def _spend_allowance(self, owner: Account, spender: Account, amount: int) -> None:
        current = self.allowance.get((owner, spender), 0)
        if current != 2**256 - 1:
            _require(current >= amount, "erc20: insufficient allowance")
            self.allowance[(owner, spender)] = current - amount

    def _transfer(self, sender: Account, receiver: Account, amount: int) -> None:
        _require(sender != ZERO_ADDRESS, "erc20: transfer from the zero address")
        _require(receiver != ZERO_ADDRESS, "erc20: transfer to the zero address")
        _require(self.balance_of.get(sender, 0) >= amount, "erc20: transfer amount exceeds balance")
        self.balance_of[sender] = self.balance_of.get(sender, 0) - amount  # a zero transfer from an account never seen
        self.balance_of[receiver] = self.balance_of.get(receiver, 0) + amount
