"""The executable specification of contracts/InsuranceVault.vy, attached to a `Model`.

Same rules, order of checks, revert strings and rounding as the contract. The vault's account lives
in the exchange model (its pool balance and positions under the vault's address), so every action
runs as one transaction of the exchange model: a revert restores both.
"""

from __future__ import annotations

from dataclasses import dataclass

from backstop.model.protocol import ZERO_ADDRESS, Account, Model, _require, atomic, ceil_div

VIRTUAL_SHARES = 10**6  # InsuranceVault.VIRTUAL_SHARES
VIRTUAL_ASSETS = 1  # InsuranceVault.VIRTUAL_ASSETS
SECONDS_PER_DAY = 86400


@dataclass(frozen=True)
class WithdrawalRequest:
    owner: Account
    shares: int
    assets: int
    claimable_at: int




class VaultModel:
    """Storage names as in the contract; shares are `balance_of`/`total_supply`."""

    def __init__(self, exchange: Model, address: Account, lockup: int, delay: int, leverage: int, cap_per_event: int, cap_per_day: int):
        self.exchange, self.address = exchange, address
        self.total_supply = 0
        self.balance_of: dict[Account, int] = {}
        self.unlock_time: dict[Account, int] = {}
        self.requests: dict[int, WithdrawalRequest] = {}
        self.next_request_id = 0
        self.max_position: dict[int, int] = {}
        self.loss_day = 0
        self.lost_today = 0
        self.set_lockup(lockup, delay)
        self.set_risk_limits(leverage, cap_per_event, cap_per_day)
        exchange.close_to_third_party_deposits(address)
        exchange.vault = self

    def snapshot(self) -> dict:
        return {name: value.copy() if isinstance(value, dict) else value for name, value in vars(self).items() if name != "exchange"}

    def restore(self, saved: dict) -> None:
        vars(self).update({name: value.copy() if isinstance(value, dict) else value for name, value in saved.items()})

    # ------------------------------------------------------------ ERC-4626

    def total_assets(self, now: int) -> int:
        return max(self.exchange.account_value(self.address, now), 0)

    def convert_to_shares(self, assets: int, total_assets: int, round_up: bool = False) -> int:
        numerator, denominator = assets * (self.total_supply + VIRTUAL_SHARES), total_assets + VIRTUAL_ASSETS
        return ceil_div(numerator, denominator) if round_up else numerator // denominator

    def convert_to_assets(self, shares: int, total_assets: int, round_up: bool = False) -> int:
        numerator, denominator = shares * (total_assets + VIRTUAL_ASSETS), self.total_supply + VIRTUAL_SHARES
        return ceil_div(numerator, denominator) if round_up else numerator // denominator

    @atomic
    def deposit(self, caller: Account, assets: int, now: int) -> int:
        shares = self.convert_to_shares(assets, self._total_assets_checked(now))
        self._deposit(caller, assets, shares, now)
        return shares

    @atomic
    def mint(self, caller: Account, shares: int, now: int) -> int:
        assets = self.convert_to_assets(shares, self._total_assets_checked(now), round_up=True)
        self._deposit(caller, assets, shares, now)
        return assets

    # ------------------------------------------------------------ exits

    @atomic
    def request_redeem(self, caller: Account, shares: int, now: int) -> int:
        _require(shares > 0, "InsuranceVault: zero shares")
        _require(now >= self.unlock_time.get(caller, 0), "InsuranceVault: shares locked")
        assets = self.convert_to_assets(shares, self.total_assets(now))
        self._transfer(caller, self.address, shares)
        request_id = self.next_request_id
        self.next_request_id += 1
        self.requests[request_id] = WithdrawalRequest(caller, shares, assets, now + self.withdrawal_delay)
        return request_id

    @atomic
    def claim(self, caller: Account, request_id: int, now: int) -> int:
        request = self.requests.get(request_id)
        _require(request is not None, "InsuranceVault: unknown request")
        _require(request.owner == caller, "InsuranceVault: not your request")
        _require(now >= request.claimable_at, "InsuranceVault: request not yet claimable")
        assets = min(request.assets, self.convert_to_assets(request.shares, self.total_assets(now)))
        if assets > 0:
            _require(self.exchange.balance(self.address) >= assets, "InsuranceVault: collateral tied up in positions, retry later")
            _require(assets <= self.exchange.withdrawable(self.address, now), "InsuranceVault: claim would breach the vault's margin, retry later")
        del self.requests[request_id]
        self.balance_of[self.address] -= request.shares
        self.total_supply -= request.shares
        if assets > 0:
            self.exchange.withdraw(self.address, assets, now)
        return assets

    @atomic
    def transfer(self, caller: Account, to: Account, amount: int, now: int) -> None:
        _require(now >= self.unlock_time.get(caller, 0), "InsuranceVault: shares locked")
        self._transfer(caller, to, amount)

    # ------------------------------------------------------------ clearinghouse and owner

    def loss_allowance(self, now: int) -> int:
        lost = self.lost_today if now // SECONDS_PER_DAY == self.loss_day else 0
        return min(self.loss_cap_per_event, self.loss_cap_per_day - min(lost, self.loss_cap_per_day))

    def record_takeover(self, loss: int, now: int) -> None:
        today = now // SECONDS_PER_DAY
        if today != self.loss_day:
            self.loss_day, self.lost_today = today, 0
        self.lost_today += loss

    def set_risk_limits(self, leverage: int, cap_per_event: int, cap_per_day: int) -> None:
        _require(leverage > 0, "InsuranceVault: zero leverage")
        self.max_leverage, self.loss_cap_per_event, self.loss_cap_per_day = leverage, cap_per_event, cap_per_day

    def set_max_position(self, market: int, size: int) -> None:
        self.max_position[market] = size

    def set_lockup(self, lockup: int, delay: int) -> None:
        self.lockup_period, self.withdrawal_delay = lockup, delay

    # ------------------------------------------------------------ internals

    def _deposit(self, caller: Account, assets: int, shares: int, now: int) -> None:
        _require(assets > 0 and shares > 0, "InsuranceVault: zero deposit")
        self.exchange.deposit(self.address, assets)
        self.balance_of[caller] = self.balance_of.get(caller, 0) + shares
        self.total_supply += shares
        self.unlock_time[caller] = now + self.lockup_period

    def accepts_deposits(self, now: int) -> bool:
        """`maxDeposit`/`maxMint` are unlimited when this holds, else 0."""
        return self.exchange.account_value(self.address, now) >= 0 and not self.exchange.bankrupt.get(self.address, False)

    def _total_assets_checked(self, now: int) -> int:
        value = self.exchange.account_value(self.address, now)
        _require(value >= 0, "InsuranceVault: vault in deficit")
        _require(not self.exchange.bankrupt.get(self.address, False), "InsuranceVault: vault flagged bankrupt")
        return value

    def _transfer(self, sender: Account, receiver: Account, amount: int) -> None:
        _require(sender != ZERO_ADDRESS, "erc20: transfer from the zero address")
        _require(receiver != ZERO_ADDRESS, "erc20: transfer to the zero address")
        _require(self.balance_of.get(sender, 0) >= amount, "erc20: transfer amount exceeds balance")
        self.balance_of[sender] -= amount
        self.balance_of[receiver] = self.balance_of.get(receiver, 0) + amount


