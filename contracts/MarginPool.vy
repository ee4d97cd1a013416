# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title MarginPool
@notice Custody of all collateral and each account's collateral balance. Traders deposit and
        withdraw; a withdrawal succeeds only if the clearinghouse finds the account at or above
        initial margin with the post-withdrawal balance. Balances move between accounts only on the
        clearinghouse's word (realised PnL, funding, liquidation fees).
@dev Balances are signed: a bankrupt account's balance can be negative until the backstop or ADL
     covers it. The tokens held are tracked in storage (`total_held` = deposits - withdrawals),
     never read from `balanceOf(self)`, so a donation changes nothing.
"""

from ethereum.ercs import IERC20
from snekmate.auth import ownable
from interfaces import IClearinghouse

initializes: ownable

exports: (
    ownable.owner,
    ownable.transfer_ownership,
)


# ---------------------------------------------------------------- events

event Deposit:
    account: indexed(address)
    amount: uint256
    balance: int256

event Withdrawal:
    account: indexed(address)
    amount: uint256
    balance: int256

event BalanceSettled:
    account: indexed(address)
    amount: int256
    balance: int256

event BalanceTransfer:
    sender: indexed(address)
    receiver: indexed(address)
    amount: uint256

event UpdateClearinghouse:
    clearinghouse: address

event ClosedToThirdPartyDeposits:
    account: indexed(address)


# ---------------------------------------------------------------- storage

# @dev The collateral token (6 decimals).
collateral: public(immutable(IERC20))
# @dev The only contract allowed to move balances; set once after deployment.
clearinghouse: public(IClearinghouse)
# @dev Collateral balance per account, in token units; negative only for a bankrupt account.
_balances: HashMap[address, int256]
# @dev Accounts that accept deposits from themselves only (the insurance vault: a donation would move its share price).
closed_to_third_party_deposits: public(HashMap[address, bool])
# @dev Sum of all deposits ever made, for conservation checks.
total_deposited: public(uint256)
# @dev Sum of all withdrawals ever made, for conservation checks.
total_withdrawn: public(uint256)


# ---------------------------------------------------------------- constructor

@deploy
def __init__(collateral_token: IERC20):
    """
    @notice Deploys the pool for one collateral token; the deployer becomes owner.
    @param collateral_token The ERC-20 used as margin.
    """
    ownable.__init__()
    assert collateral_token.address != empty(address), "MarginPool: zero collateral"
    collateral = collateral_token


# ---------------------------------------------------------------- owner

@external
def set_clearinghouse(new_clearinghouse: IClearinghouse):
    """
    @notice Wires the clearinghouse, once.
    @dev Owner only. The clearinghouse is fixed afterwards: no one can redirect custody.
    @param new_clearinghouse The clearinghouse contract.
    """
    ownable._check_owner()
    assert self.clearinghouse.address == empty(address), "MarginPool: clearinghouse already set"
    assert new_clearinghouse.address != empty(address), "MarginPool: zero clearinghouse"
    self.clearinghouse = new_clearinghouse
    log UpdateClearinghouse(clearinghouse=new_clearinghouse.address)


# ---------------------------------------------------------------- traders

@external
def deposit(amount: uint256):
    """
    @notice Deposits collateral into the caller's balance.
    @dev Pulls `amount` tokens with `transferFrom`; approve the pool first.
    @param amount Token units (1e6 = one token), positive.
    """
    self._deposit(msg.sender, amount)


@external
def deposit_for(account: address, amount: uint256):
    """
    @notice Deposits collateral from the caller into another account's balance.
    @dev Lets a funding script or a vault top up an account in one call.
    @param account The account credited.
    @param amount Token units, positive.
    """
    assert account != empty(address), "MarginPool: zero account"
    assert account == msg.sender or not self.closed_to_third_party_deposits[account], "MarginPool: account closed to third-party deposits"
    self._deposit(account, amount)


@external
def close_to_third_party_deposits():
    """
    @notice From now on only the caller itself can deposit into its balance; this cannot be undone.
    @dev The insurance vault calls it at deployment, so that nobody can move its share price by
         depositing on its behalf.
    """
    self.closed_to_third_party_deposits[msg.sender] = True
    log ClosedToThirdPartyDeposits(account=msg.sender)


@external
def withdraw(amount: uint256):
    """
    @notice Withdraws collateral from the caller's balance to the caller.
    @dev Reverts unless the account stays at or above initial margin after the withdrawal, as
         judged by the clearinghouse with fresh prices (`Clearinghouse.withdrawable`), and while
         the pool's books hold less than `amount` (an open deficit; see the check below).
    @param amount Token units, positive and at most the caller's balance.
    """
    assert amount > 0, "MarginPool: zero amount"
    balance: int256 = self._balances[msg.sender]
    assert balance >= convert(amount, int256), "MarginPool: amount above balance"
    assert amount <= staticcall self.clearinghouse.withdrawable(msg.sender), "MarginPool: withdrawal below initial margin"
    # While a bankrupt account's deficit is open, the positive balances add up to more than the
    # pool holds: the last withdrawals wait, with a reason, until the waterfall covers it.
    withdrawn: uint256 = self.total_withdrawn + amount
    assert withdrawn <= self.total_deposited, "MarginPool: pool short until an open deficit is covered"
    balance -= convert(amount, int256)
    self._balances[msg.sender] = balance
    self.total_withdrawn = withdrawn
    assert extcall collateral.transfer(msg.sender, amount, default_return_value=True), "MarginPool: transfer failed"
    log Withdrawal(account=msg.sender, amount=amount, balance=balance)


# ---------------------------------------------------------------- clearinghouse

@external
def settle(account: address, amount: int256) -> int256:
    """
    @notice Credits (positive) or debits (negative) an account: realised PnL and funding.
    @dev Clearinghouse only. The clearinghouse rounds every amount in the pool's favour.
    @param account The account.
    @param amount Signed token units.
    @return The account's balance afterwards (the clearinghouse's margin check reads it).
    """
    self._check_clearinghouse()
    balance: int256 = self._balances[account] + amount
    self._balances[account] = balance
    log BalanceSettled(account=account, amount=amount, balance=balance)
    return balance


@external
def transfer_balance(sender: address, receiver: address, amount: uint256):
    """
    @notice Moves collateral balance between two accounts (liquidation discount and penalty).
    @dev Clearinghouse only; the clearinghouse has checked that the sender can afford it.
    @param sender The account debited.
    @param receiver The account credited.
    @param amount Token units.
    """
    self._check_clearinghouse()
    self._balances[sender] -= convert(amount, int256)
    self._balances[receiver] += convert(amount, int256)
    log BalanceTransfer(sender=sender, receiver=receiver, amount=amount)


# ---------------------------------------------------------------- views

@external
@view
@reentrant
def balance_of(account: address) -> int256:
    """
    @notice An account's collateral balance.
    @dev Readable while the pool is locked: `withdraw` asks the clearinghouse for a margin check,
         which reads the balance back, before the pool has changed any state.
    @param account The account.
    @return Token units; negative only for a bankrupt account.
    """
    return self._balances[account]


@external
@view
def total_held() -> uint256:
    """
    @notice Tokens the pool holds by its own accounting: all deposits minus all withdrawals.
    @return Token units.
    """
    return self.total_deposited - self.total_withdrawn


# ---------------------------------------------------------------- internals

@internal
def _deposit(account: address, amount: uint256):
    assert amount > 0, "MarginPool: zero amount"
    assert extcall collateral.transferFrom(msg.sender, self, amount, default_return_value=True), "MarginPool: transfer failed"
    balance: int256 = self._balances[account] + convert(amount, int256)
    self._balances[account] = balance
    self.total_deposited += amount
    log Deposit(account=account, amount=amount, balance=balance)


@internal
@view
def _check_clearinghouse():
    assert msg.sender == self.clearinghouse.address, "MarginPool: caller is not the clearinghouse"
