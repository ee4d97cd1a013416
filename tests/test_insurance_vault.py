"""The insurance vault as an ERC-4626 vault with EIP-7540 asynchronous redemptions, against the
reference model (backstop/model/vault.py).

`VaultMirror` extends the clearinghouse `Mirror` with the vault: it drives contracts and model with
the same actions (deposits and mints, for oneself or as an operator; redemption requests and their
claims through `redeem` and `withdraw`; operators; reports; donations; takeovers; the owner's
limits) and, after every action, compares everything the base mirror compares plus the vault's
shares, supply, totalAssets, conversions, unlock times, each controller's request with its
pending/claimable split and claim preview, operators, the income still locked, the day's high and
drawdown, the loss allowance and the limits; every report that books income must log
`ProfitLocked` with the model's figures. It talks to
Anvil through backstop/chain/fast_chain.py (one HTTP round trip per transaction, every comparison in
one JSON-RPC batch) and decodes events from the receipts, so the hypothesis properties below can
afford a whole round trip (deposit, lock-up, request, delay, claim) per example. Each example of a
`@given` test starts from the same chain state: the mirror rolls chain and model back to a
checkpoint (`evm_snapshot`/`evm_revert`) after every example.

"Yield" here is anything that moves the vault's own account value: a liquidation penalty or a
takeover buffer (positive), a deficit it covers or a loss on a taken-over position (negative). A
gain reaches totalAssets only as it unlocks (over `profit_unlock_time`, 30 days by default); a loss
at once.
"""

from contextlib import contextmanager
from fractions import Fraction
from types import SimpleNamespace

import pytest
from eth_abi import decode as abi_decode
from eth_utils import keccak, to_checksum_address
from hypothesis import given
from hypothesis import strategies as st

from backstop.chain.fast_chain import FastChain, RevertError, _type_string
from backstop.model.protocol import ModelRevert, ZERO_ADDRESS
from backstop.model.vault import REQUEST_ID, VIRTUAL_ASSETS, VIRTUAL_SHARES, Request, VaultModel
from conftest import BTC, USDC, WAD
from test_clearinghouse_vs_model import Mirror

MAX_UINT = 2**256 - 1
BTC_PRICE = 100_000 * WAD
LOCKED = "InsuranceVault: shares locked"
NO_PREVIEW = "InsuranceVault: asynchronous redeem, see claim_preview"
CANNOT_PAY = "InsuranceVault: the vault cannot pay this claim now, retry later"
NOT_CONTROLLER = "InsuranceVault: caller is not the controller or its operator"
NOT_OPERATOR = "InsuranceVault: receiver has not made you its operator"


# ---------------------------------------------------------------- events from raw receipts

class EventDecoder:
    """Decodes the logs of a raw receipt with the ABIs of the protocol's contracts."""

    def __init__(self, contracts):
        self.events = {}
        for contract in contracts:
            for item in _abi(contract):
                if item["type"] != "event":
                    continue
                types = [_type_string(p) for p in item["inputs"]]
                topic = keccak(text=f"{item['name']}({','.join(types)})")
                self.events[(str(contract.address).lower(), topic)] = (item, types)

    def decode(self, logs):
        decoded = []
        for log in logs:
            key = (log["address"].lower(), bytes.fromhex(log["topics"][0][2:]))
            if key not in self.events:
                continue
            item, types = self.events[key]
            topics = iter(log["topics"][1:])
            data_types = [t for p, t in zip(item["inputs"], types) if not p["indexed"]]
            data = iter(abi_decode(data_types, bytes.fromhex(log["data"][2:])))
            fields = {}
            for param, kind in zip(item["inputs"], types):
                value = abi_decode([kind], bytes.fromhex(next(topics)[2:]))[0] if param["indexed"] else next(data)
                fields[param["name"]] = to_checksum_address(value) if kind == "address" else value
            decoded.append(SimpleNamespace(event=item["name"], address=to_checksum_address(log["address"]), **fields))
        return decoded


class Tx:
    """A mined transaction: its block's timestamp and number, and its decoded events."""

    def __init__(self, receipt, decoder):
        stamp, number = receipt["blockTimestamp"], receipt["blockNumber"]
        self.timestamp = int(stamp, 16) if isinstance(stamp, str) else stamp
        self.block_number = int(number, 16) if isinstance(number, str) else number
        self.events = decoder.decode(receipt["logs"])

    def all(self, name, at=None):
        return [event for event in self.events if event.event == name and (at is None or event.address == _address(at))]

    def one(self, name, at=None):
        found = self.all(name, at)
        assert len(found) == 1, f"{len(found)} {name} events in {[e.event for e in self.events]}"
        return found[0]


def _abi(contract):
    return [item.model_dump(mode="json") for item in contract.contract_type.abi]


def _address(who):
    return who if isinstance(who, str) else who.address


# ---------------------------------------------------------------- the mirror with a vault

class VaultMirror(Mirror):
    """`Mirror` plus the insurance vault: vault actions on both sides and the vault's state compared."""

    def __init__(self, chain, fast, protocol, config, owner, keeper, signer, fund, expiry, people):
        self.vault_model = None
        self.owner = owner
        self.idle = 0  # collateral tokens sent to the vault outside `deposit`: donations, never counted
        self.fast = fast
        self.decoder = EventDecoder([protocol.token, protocol.oracle, protocol.pool, protocol.clearinghouse, protocol.liquidation, protocol.vault])
        self.c = SimpleNamespace(**{
            name: self.fast.contract(contract.address, _abi(contract)) for name, contract in vars(protocol).items()
        })
        self.vault_address = protocol.vault.address
        self.stopped_at = None  # a timestamp every transaction is mined at while the clock is stopped
        super().__init__(chain, protocol, config, keeper, signer, fund, expiry, people)
        self.vault_model = VaultModel(
            self.model, self.vault_address, config.vault_lockup, config.vault_withdrawal_delay,
            config.vault_max_leverage, config.vault_loss_cap_per_event, config.vault_loss_cap_per_day, config.vault_profit_unlock,
        )
        for market_id, market in enumerate(config.markets):
            self.vault_model.set_max_position(market_id, market.vault_max_position)
        self.compare()

    # ------------------------------------------------------------ transport

    def send(self, sender, call):
        if self.stopped_at is not None:
            self.fast.request("evm_setNextBlockTimestamp", [self.stopped_at])
        failure = self.fast.send(_address(sender), call)
        assert failure is None, f"{call.function.name}: {failure}"
        return Tx(self.fast.last_receipt, self.decoder)

    def now(self):
        return self.fast.block()[1]

    def reverts(self, reason, sender, call, model_call=None):
        """The contract refuses with exactly `reason` (the model too, if given) and nothing changes."""
        saved = self.model.snapshot()
        # Gas estimation runs the transaction without mining it, as a wallet would before sending.
        tx = {"from": _address(sender), "to": call.function.address, "data": call.data}
        with pytest.raises(RevertError) as failure:
            self.fast.request("eth_estimateGas", [tx])
        assert failure.value.reason == reason
        if model_call is not None:
            with pytest.raises(ModelRevert) as refused:
                model_call(self.now())
            assert refused.value.reason == reason
        assert self.model.snapshot() == saved
        self.compare()

    @contextmanager
    def clock_stopped(self):
        """Mines every transaction at the latest block's time, so that a view read now (a preview)
        sees the same unlocked income as the transactions that follow it."""
        self.stopped_at = self.now()
        try:
            yield
        finally:
            self.stopped_at = None

    def checkpoint(self):
        return self.fast.snapshot(), self.model.snapshot(), self.idle

    def rollback(self, checkpoint):
        snapshot, saved, self.idle = checkpoint
        self.fast.revert(snapshot)
        self.model.restore(saved)

    # ------------------------------------------------------------ exchange actions (fast transport)

    def fund(self, account, amount):
        c = self.c
        self.send(self.owner, c.token.mint.call(account.address, amount))
        self.send(account, c.token.approve.call(c.pool.address, amount))
        self.send(account, c.pool.deposit.call(amount))
        self.model.deposit(account.address, amount)
        self.compare()

    def trade(self, *fills, sender):
        built = [self.signer.fill(b.address, s.address, m, size, price, self.expiry) for b, s, m, size, price in fills]
        tx = self.send(sender, self.c.clearinghouse.settle_fills.call([fill.abi for fill in built]))
        self.model.settle_fills(built, tx.timestamp)
        self.compare()
        return tx

    def set_prices(self, market, index_price, mark_price):
        tx = self.send(self.keeper, self.c.oracle.set_prices.call(market, index_price, mark_price))
        self.model.set_prices(market, index_price, mark_price, tx.timestamp, tx.block_number)
        self.compare()
        return tx

    def refresh(self):
        """The keeper re-pushes every market's prices unchanged: fresh again after a wait."""
        updates = [(m, *self.model.latest_prices(m)) for m in self.markets]
        tx = self.send(self.keeper, self.c.oracle.push_prices.call(updates))
        self.model.push_prices(updates, tx.timestamp, tx.block_number)
        self.compare()

    def wait(self, seconds):
        self.fast.request("evm_increaseTime", [seconds])
        self.fast.request("evm_mine")
        self.compare()

    def liquidate(self, liquidator, account, market, size):
        tx = self.send(liquidator, self.c.liquidation.liquidate.call(account.address, market, size))
        taken = self.model.liquidation.liquidate(liquidator.address, account.address, market, size, tx.timestamp)
        self.compare()
        return tx, taken

    def flag_bankruptcy(self, account, sender):
        tx = self.send(sender, self.c.liquidation.flag_bankruptcy.call(account.address))
        deficit = self.model.liquidation.flag_bankruptcy(account.address, tx.timestamp)
        self.compare()
        return tx, deficit

    def clear_bankruptcy(self, account, sender):
        tx = self.send(sender, self.c.liquidation.clear_bankruptcy.call(account.address))
        self.model.liquidation.clear_bankruptcy(account.address, tx.timestamp)
        self.compare()
        return tx

    def backstop(self, caller, account):
        """Returns the transaction and the refusal reason ("" when the vault took the account over)."""
        tx = self.send(caller, self.c.liquidation.backstop.call(account.address))
        refusal = self.model.liquidation.backstop(caller.address == self.keeper.address, account.address, tx.timestamp)
        if refusal:
            event = tx.one("TakeoverRefused")
            assert (event.account, event.vault, event.reason) == (account.address, self.vault_address, refusal)
            assert not tx.all("Takeover") and not tx.all("TakeoverRecorded")
        else:
            assert not tx.all("TakeoverRefused")
            assert tx.one("Takeover").account == account.address
        self.compare()
        return tx, refusal

    # ------------------------------------------------------------ vault actions

    def _check_report(self, tx):
        """A report that booked income logs ProfitLocked with the model's figures; one that did not, nothing."""
        vault = self.vault_model
        if vault.reported_gain:
            event = tx.one("ProfitLocked")
            assert (event.gain, event.locked_profit, event.unlock_end) == (vault.reported_gain, vault.locked_profit, vault.unlock_end)
        else:
            assert not tx.all("ProfitLocked")

    def _vault_action(self, sender, call, model_call):
        """Sends `call`, runs `model_call(timestamp)` on the model, checks the report's event; returns (tx, result)."""
        self.vault_model.reported_gain = 0
        tx = self.send(sender, call)
        result = model_call(tx.timestamp)
        self._check_report(tx)
        return tx, result

    def deposit(self, person, assets, receiver=None):
        """Mints `assets` tokens to `person`, approves exactly that and deposits for `receiver`
        (default: itself); returns the shares."""
        c, receiver = self.c, receiver or person
        self.send(self.owner, c.token.mint.call(person.address, assets))
        self.send(person, c.token.approve.call(self.vault_address, assets))
        tx, shares = self._vault_action(
            person, c.vault.deposit.call(assets, receiver.address),
            lambda now: self.vault_model.deposit(person.address, assets, now, receiver.address),
        )
        event = tx.one("Deposit", self.vault_address)
        assert (event.sender, event.owner, event.assets, event.shares) == (person.address, receiver.address, assets, shares)
        self.compare()
        return shares

    def mint(self, person, shares, receiver=None):
        """Mints `shares` for `receiver` (default: itself), having given `person` exactly the assets
        the model says they cost; returns them."""
        c, receiver = self.c, receiver or person
        cost = self.vault_model.convert_to_assets(shares, self.vault_model.total_assets(self.now()), round_up=True)
        before = self.token_balance(person)
        self.send(self.owner, c.token.mint.call(person.address, cost))
        self.send(person, c.token.approve.call(self.vault_address, cost))
        tx, assets = self._vault_action(
            person, c.vault.mint.call(shares, receiver.address),
            lambda now: self.vault_model.mint(person.address, shares, now, receiver.address),
        )
        event = tx.one("Deposit", self.vault_address)
        assert (event.owner, event.assets, event.shares) == (receiver.address, assets, shares)
        assert assets == cost and self.token_balance(person) == before  # pulled exactly what it cost
        self.compare()
        return assets

    def request(self, person, shares, controller=None, owner=None):
        """`person` calls requestRedeem(shares, controller, owner) (both default to `person`); returns
        the value at request this call recorded."""
        controller, owner = controller or person, owner or person
        before = self.vault_model.requests.get(controller.address, Request())
        tx, request_id = self._vault_action(
            person, self.c.vault.requestRedeem.call(shares, controller.address, owner.address),
            lambda now: self.vault_model.request_redeem(person.address, shares, now, controller.address, owner.address),
        )
        assert request_id == REQUEST_ID
        event = tx.one("RedeemRequest")
        assert (event.controller, event.owner, event.requestId, event.sender, event.shares) == (
            controller.address, owner.address, REQUEST_ID, person.address, shares
        )
        after = self.vault_model.requests[controller.address]
        assert (after.shares, after.claimable_at) == (before.shares + shares, tx.timestamp + self.vault_model.withdrawal_delay)
        self.compare()
        return after.assets - before.assets

    def claim(self, person, shares=None, controller=None, receiver=None):
        """`person` calls redeem(shares, receiver, controller) (default: all of the request, for
        itself); returns the assets paid."""
        controller = controller or person
        shares = self.vault_model.requests[controller.address].shares if shares is None else shares
        return self._claim("redeem", person, shares, controller, receiver)

    def claim_assets(self, person, assets, controller=None, receiver=None):
        """`person` calls withdraw(assets, receiver, controller); returns the shares burned."""
        return self._claim("withdraw", person, assets, controller, receiver)

    def _claim(self, name, person, amount, controller, receiver):
        """`redeem` or `withdraw` on both sides; checks the Withdraw event and the receiver's tokens."""
        controller, receiver = controller or person, receiver or person
        before = self.token_balance(receiver)
        tx, result = self._vault_action(
            person, getattr(self.c.vault, name).call(amount, receiver.address, controller.address),
            lambda now: getattr(self.vault_model, name)(person.address, amount, now, receiver.address, controller.address),
        )
        assets, shares = (result, amount) if name == "redeem" else (amount, result)
        # The claim event ties to its request: owner is the request's controller (requestId 0).
        event = tx.one("Withdraw")
        assert (event.sender, event.receiver, event.owner, event.assets, event.shares) == (
            person.address, receiver.address, controller.address, assets, shares
        )
        assert self.token_balance(receiver) - before == assets
        self.compare()
        return result

    def set_operator(self, controller, operator, approved=True):
        tx = self.send(controller, self.c.vault.setOperator.call(_address(operator), approved))
        assert self.vault_model.set_operator(controller.address, _address(operator), approved)
        event = tx.one("OperatorSet")
        assert (event.controller, event.operator, event.approved) == (controller.address, _address(operator), approved)
        self.compare()

    def approve_shares(self, owner, spender, amount):
        self.send(owner, self.c.vault.approve.call(spender.address, amount))
        self.vault_model.approve(owner.address, spender.address, amount)
        self.compare()

    def process_report(self, sender):
        tx, locked = self._vault_action(sender, self.c.vault.process_report.call(), self.vault_model.process_report)
        self.compare()
        return tx, locked

    def transfer_shares(self, sender, to, amount):
        tx = self.send(sender, self.c.vault.transfer.call(to.address, amount))
        self.vault_model.transfer(sender.address, to.address, amount, tx.timestamp)
        self.compare()
        return tx

    def donate(self, person, amount):
        """A plain token transfer to the vault: the vault must not count it."""
        c = self.c
        self.send(self.owner, c.token.mint.call(person.address, amount))
        self.send(person, c.token.transfer.call(self.vault_address, amount))
        self.idle += amount
        self.compare()

    def set_risk_limits(self, leverage, cap_per_event, cap_per_day):
        tx = self.send(self.owner, self.c.vault.set_risk_limits.call(leverage, cap_per_event, cap_per_day))
        self.vault_model.set_risk_limits(leverage, cap_per_event, cap_per_day)
        event = tx.one("UpdateRiskLimits")
        assert (event.max_leverage, event.loss_cap_per_event, event.loss_cap_per_day) == (leverage, cap_per_event, cap_per_day)
        self.compare()

    def set_max_position(self, market, size):
        tx = self.send(self.owner, self.c.vault.set_max_position.call(market, size))
        self.vault_model.set_max_position(market, size)
        event = tx.one("UpdateMaxPosition")
        assert (event.market, event.max_position) == (market, size)
        self.compare()

    def set_lockup(self, lockup, delay):
        tx = self.send(self.owner, self.c.vault.set_lockup.call(lockup, delay))
        self.vault_model.set_lockup(lockup, delay)
        event = tx.one("UpdateLockup")
        assert (event.lockup_period, event.withdrawal_delay) == (lockup, delay)
        self.compare()

    def set_profit_unlock(self, seconds):
        tx = self.send(self.owner, self.c.vault.set_profit_unlock.call(seconds))
        self.vault_model.set_profit_unlock(seconds)
        assert tx.one("UpdateProfitUnlock").profit_unlock_time == seconds
        self.compare()

    # ------------------------------------------------------------ reads

    def read(self, *calls):
        values = self.fast.read(list(calls))
        return values[0] if len(calls) == 1 else values

    def read_as(self, caller, call):
        """A view called from `caller` (previews must not depend on it; max* answer for it)."""
        result = self.fast.request("eth_call", [{"from": _address(caller), "to": call.function.address, "data": call.data}, "latest"])
        return call.function.decode(bytes.fromhex(result[2:]))

    def read_many_as(self, pairs):
        """Views each called from its own caller, in one batch: [(caller, call), ...]."""
        answers = self.fast.batch([
            ("eth_call", [{"from": _address(caller), "to": call.function.address, "data": call.data}, "latest"]) for caller, call in pairs
        ])
        for answer in answers:
            if isinstance(answer, Exception):
                raise answer
        return [call.function.decode(bytes.fromhex(answer[2:])) for (_, call), answer in zip(pairs, answers)]

    def token_balance(self, who):
        return self.read(self.c.token.balanceOf.call(_address(who)))

    def shares(self, who):
        return self.vault_model.balance_of.get(_address(who), 0)

    def vault_value(self):
        return self.model.account_value(self.vault_address, self.now())

    def price(self):
        """(totalAssets + 1, totalSupply + 1e6): the vault's share price as the pair that defines it."""
        return self.vault_model.total_assets(self.now()) + VIRTUAL_ASSETS, self.vault_model.total_supply + VIRTUAL_SHARES

    def max_views(self, caller, account):
        """maxDeposit, maxMint, maxWithdraw, maxRedeem of `account` as `caller` asks: chain and model."""
        v, vault, now = self.c.vault, self.vault_model, self.now()
        account, caller = _address(account), _address(caller)
        got = self.read_many_as([(caller, v.maxDeposit.call(account)), (caller, v.maxMint.call(account)),
                                 (caller, v.maxWithdraw.call(account)), (caller, v.maxRedeem.call(account))])
        expected = [vault.max_deposit(caller, account, now), vault.max_mint(caller, account, now),
                    vault.max_withdraw(caller, account, now), vault.max_redeem(caller, account, now)]
        assert got == expected, f"max* of {account} asked by {caller}"
        return got

    # ------------------------------------------------------------ the comparison

    def _compare_calls(self, people, holders):
        """The views `compare` reads. Each is encoded once and reused (encoding would dominate)."""
        cache = self.__dict__.setdefault("_encoded", {})

        def call(function, *args):
            key = (function.address, function.name, args)
            if key not in cache:
                cache[key] = function.call(*args)
            return cache[key]

        c, vault = self.c, self.vault_model
        ch, pool = c.clearinghouse, c.pool
        calls = []
        for market in self.markets:
            calls += [call(c.oracle.feeds, market), call(c.oracle.block_reference, market), call(c.oracle.window_reference, market)]
        for account in people:
            calls += [call(pool.balance_of, account), call(ch.bankrupt, account), call(ch.account_health, account)]
            calls += [call(ch.positions, account, market) for market in self.markets]
        for market in self.markets:
            calls += [call(ch.funding_index, market), call(ch.funding_updated_at, market)]
            calls += [call(ch.long_open_interest, market), call(ch.short_open_interest, market)]
        calls += [call(pool.total_held), call(pool.total_deposited), call(pool.total_withdrawn)]
        if vault is not None:
            v = c.vault
            calls += [call(v.totalSupply), call(v.totalAssets)]
            calls += [call(v.balanceOf, holder) for holder in holders]
            calls += [call(v.unlock_time, holder) for holder in holders]
            for holder in holders:
                calls += [call(v.requests, holder), call(v.pendingRedeemRequest, REQUEST_ID, holder)]
                calls += [call(v.claimableRedeemRequest, REQUEST_ID, holder), call(v.claim_preview, holder)]
            calls += [call(v.isOperator, controller, operator) for controller, operator in sorted(vault.is_operator)]
            calls += [call(v.last_report_value), call(v.last_report), call(v.locked_profit), call(v.unlock_end)]
            calls += [call(v.high_day), call(v.day_high), call(v.profit_unlock_time), call(v.profit_locked), call(v.drawdown)]
            calls += [call(v.loss_allowance), call(v.max_leverage), call(v.min_deposit)]
            calls += [call(v.loss_cap_per_event), call(v.loss_cap_per_day), call(v.lockup_period), call(v.withdrawal_delay)]
            calls += [call(v.max_position, market) for market in self.markets]
            calls += [call(v.convertToShares, 10**6), call(v.convertToAssets, 10**12), call(c.token.balanceOf, self.vault_address)]
        return calls

    def compare(self):
        model, vault = self.model, self.vault_model
        people = [person.address for person in self.people]
        holders = [account for account in people if account != self.vault_address] + [self.vault_address]
        calls = self._compare_calls(people, holders)
        now, values = self.fast.read_at(calls)
        got = iter(values)

        for market in self.markets:
            for stored in (model.feeds[market], model.block_reference[market], model.window_reference[market]):
                assert next(got) == tuple(vars(stored).values()), f"oracle state of market {market}"
        for account in people:
            assert next(got) == model.balance(account), f"balance of {account}"
            assert next(got) == model.bankrupt.get(account, False), f"bankrupt flag of {account}"
            expected = model.account_health(account, now)
            assert next(got) == (expected.value, expected.initial_margin, expected.maintenance_margin), f"health of {account}"
            for market in self.markets:
                position = model.position(account, market)
                assert next(got) == (position.size, position.entry_price, position.funding_snapshot), f"position of {account} in {market}"
        for market in self.markets:
            assert next(got) == model.funding_index.get(market, 0)
            assert next(got) == model.funding_updated_at[market]
            long_side, short_side = next(got), next(got)
            assert long_side == short_side == model.long_open_interest.get(market, 0)
        held, deposited, withdrawn = next(got), next(got), next(got)
        assert held == model.total_held() == deposited - withdrawn
        assert model.open_interest_balanced()
        assert model.sum_account_values(now) <= model.total_held()
        if vault is None:
            return

        total_assets = vault.total_assets(now)
        assert next(got) == vault.total_supply, "totalSupply"
        assert next(got) == total_assets, "totalAssets"
        # totalAssets never shows more than the account is worth (a loss shows at once).
        assert total_assets <= max(self.vault_value(), 0)
        balances = [next(got) for _ in holders]
        assert balances == [vault.balance_of.get(holder, 0) for holder in holders], "share balances"
        assert sum(balances) == vault.total_supply  # every holder is one of the people
        assert [next(got) for _ in holders] == [vault.unlock_time.get(holder, 0) for holder in holders], "unlock times"
        for holder in holders:
            request = vault.requests.get(holder, Request())
            assert next(got) == (request.shares, request.assets, request.claimable_at), f"request of {holder}"
            pending, claimable = next(got), next(got)
            assert (pending, claimable) == (vault.pending_redeem_request(holder, now), vault.claimable_redeem_request(holder, now))
            assert pending + claimable == request.shares and 0 in (pending, claimable)
            preview = vault.claim_preview(holder, now)
            assert next(got) == (preview.shares, preview.claimable_at, preview.owed, preview.payable_now), f"claim preview of {holder}"
        # Escrowed shares are exactly the shares of the open requests.
        assert balances[-1] == sum(request.shares for request in vault.requests.values())
        assert [next(got) for _ in vault.is_operator] == [vault.is_operator[pair] for pair in sorted(vault.is_operator)]
        assert [next(got) for _ in range(4)] == [vault.last_report_value, vault.last_report, vault.locked_profit, vault.unlock_end]
        assert [next(got) for _ in range(3)] == [vault.high_day, vault.day_high, vault.profit_unlock_time]
        assert (next(got), next(got)) == (vault.profit_locked(now), vault.drawdown(now)), "income locked, drawdown"
        assert next(got) == vault.loss_allowance(now)
        assert (next(got), next(got)) == (vault.max_leverage, vault.min_deposit(now))
        assert (next(got), next(got)) == (vault.loss_cap_per_event, vault.loss_cap_per_day)
        assert (next(got), next(got)) == (vault.lockup_period, vault.withdrawal_delay)
        assert [next(got) for _ in self.markets] == [vault.max_position.get(market, 0) for market in self.markets]
        assert next(got) == vault.convert_to_shares(10**6, total_assets)
        assert next(got) == vault.convert_to_assets(10**12, total_assets)
        assert next(got) == self.idle, "idle tokens: donations only"


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def dave(accounts):
    return accounts[8]


@pytest.fixture(scope="session")
def erin(accounts):
    return accounts[9]


@pytest.fixture
def mirror(chain, fast, protocol, config, owner, keeper, signer, fund, expiry, alice, bob, carol, dave, erin, liquidator, stranger):
    return VaultMirror(
        chain, fast, protocol, config, owner, keeper, signer, fund, expiry,
        [alice, bob, carol, dave, erin, liquidator, stranger, protocol.vault],
    )


@pytest.fixture(scope="session")
def fast(chain):
    return FastChain(chain.provider.http_uri)


@pytest.fixture(autouse=True)
def protocol_invariants(request, accounts):
    """conftest's invariants after each test, with the vault counted (it holds the positions it takes
    over), read in one batch."""
    yield
    if "protocol" not in request.fixturenames:
        return
    protocol, fast = request.getfixturevalue("protocol"), request.getfixturevalue("fast")
    ch, pool = (fast.contract(c.address, _abi(c)) for c in (protocol.clearinghouse, protocol.pool))
    token = fast.contract(protocol.token.address, _abi(protocol.token))
    people = [account.address for account in accounts[:10]] + [protocol.vault.address]
    markets = range(fast.read([ch.market_count.call()])[0])
    calls = [pool.total_held.call(), pool.total_deposited.call(), pool.total_withdrawn.call(), token.balanceOf.call(pool.address)]
    calls += [ch.account_value.call(person) for person in people]
    for market in markets:
        calls += [ch.long_open_interest.call(market), ch.short_open_interest.call(market)]
        calls += [ch.positions.call(person, market) for person in people]
    got = iter(fast.read(calls))
    held, deposited, withdrawn, custody = next(got), next(got), next(got), next(got)
    assert held == deposited - withdrawn and custody >= held
    assert sum(next(got) for _ in people) <= held
    for market in markets:
        long_side, short_side = next(got), next(got)
        sizes = [next(got)[0] for _ in people]
        assert long_side == short_side == sum(x for x in sizes if x > 0) == -sum(x for x in sizes if x < 0)


# ---------------------------------------------------------------- stories shared with test_backstop.py

def open_long(mirror, trader, counterparty, collateral, size=WAD // 2, market=BTC, price=BTC_PRICE, sender=None):
    """Funds `trader` and `counterparty` and opens `trader` long `size` against it at `price`."""
    mirror.fund(trader, collateral)
    if mirror.model.balance(counterparty.address) < 100_000 * USDC:
        mirror.fund(counterparty, 100_000 * USDC)
    mirror.trade((trader, counterparty, market, size, price), sender=sender or counterparty)


def apply_yield(mirror, kind, alice, bob, liquidator, stranger):
    """One event that moves the vault's value: from BTC at 100k with alice long 0.5 BTC on 6k.
    penalty: alice liquidated at 91k (+455 to the vault); buffer: alice taken over at 91k
    (+1.5k and a long); deficit: alice taken over at 86k (-1k and a long)."""
    if kind == "none":
        return
    mirror.walk_mark(BTC, BTC_PRICE * (86 if kind == "deficit" else 91) // 100)
    if kind == "penalty":
        mirror.liquidate(liquidator, alice, BTC, WAD)
    else:
        assert mirror.backstop(stranger, alice)[1] == ""


def move_btc(mirror, percent):
    """Moves BTC's index and mark together by `percent` (the vault's long, if any, gains or loses)."""
    mirror.walk_mark(BTC, mirror.model.latest_prices(BTC)[1] * (100 + percent) // 100)


def take_over_alice(mirror, alice, bob, dave, stranger):
    """dave puts 10k in the vault; alice goes long 0.5 BTC at 100k on 6k; at 91k she is worth 1.5k,
    below the backstop line, and the vault takes her over: it holds the long and 11.5k, the 1.5k
    buffer locked as income."""
    mirror.deposit(dave, 10_000 * USDC)
    open_long(mirror, alice, bob, 6_000 * USDC)
    mirror.walk_mark(BTC, BTC_PRICE * 91 // 100)
    assert mirror.backstop(stranger, alice)[1] == ""


def exit_all(mirror, *people):
    """Waits out the lock-ups, requests all the shares of each of `people` (each its own
    controller), waits out the delay and claims them with `redeem`; returns (recorded, paid) for one
    person, a list of them for several."""
    unlock = max(mirror.vault_model.unlock_time.get(person.address, 0) for person in people)
    if unlock > mirror.now():
        mirror.wait(unlock - mirror.now())
    mirror.refresh()
    recorded = [mirror.request(person, mirror.shares(person)) for person in people]
    mirror.wait(mirror.vault_model.withdrawal_delay)
    mirror.refresh()
    results = [(value, mirror.claim(person)) for person, value in zip(people, recorded)]
    return results[0] if len(people) == 1 else results


def round_trip(mirror, person, shares, cost):
    """Exits `person`'s `shares` (bought for `cost`) as exit_all does and checks that the exit pays
    at most `cost` plus the person's pro-rata share of the income that unlocked while they held the
    shares (between the deposit and the request; nothing else moves in between); returns (recorded, paid)."""
    vault = mirror.vault_model
    locked_after_deposit, supply = vault.profit_locked(mirror.now()), vault.total_supply
    unlock = vault.unlock_time[person.address]
    if unlock > mirror.now():
        mirror.wait(unlock - mirror.now())
    mirror.refresh()
    recorded = mirror.request(person, shares)
    requested_at = vault.requests[person.address].claimable_at - vault.withdrawal_delay
    unlocked = locked_after_deposit - vault.profit_locked(requested_at)  # nothing else moved the value
    assert recorded <= cost + Fraction(unlocked * shares, supply + VIRTUAL_SHARES)
    mirror.wait(vault.withdrawal_delay)
    mirror.refresh()
    paid = mirror.claim(person)
    assert paid <= recorded
    return recorded, paid


@pytest.fixture
def yield_base(mirror, alice, bob, dave, liquidator):
    """dave owns the vault (50k); alice long 0.5 BTC at 100k on 6k against bob; a funded liquidator."""
    mirror.deposit(dave, 50_000 * USDC)
    open_long(mirror, alice, bob, 6_000 * USDC)
    mirror.fund(liquidator, 100_000 * USDC)
    return mirror


YIELDS = st.sampled_from(["none", "penalty", "buffer", "deficit"])
MOVES = st.integers(min_value=-15, max_value=15)


# ---------------------------------------------------------------- ERC-4626 properties (hypothesis)

@given(kind=YIELDS, move=MOVES, assets=st.integers(min_value=1, max_value=10**13))
def test_deposit__preview_exact_and_round_trip_gains_only_unlocked_income(yield_base, alice, bob, erin, liquidator, stranger, kind, move, assets):
    mirror = yield_base
    checkpoint = mirror.checkpoint()
    try:
        apply_yield(mirror, kind, alice, bob, liquidator, stranger)
        move_btc(mirror, move)
        with mirror.clock_stopped():
            preview = mirror.read(mirror.c.vault.previewDeposit.call(assets))
            if preview == 0:  # below min_deposit: refused, nothing changes
                assert assets < mirror.vault_model.min_deposit(mirror.now())
                mirror.reverts("InsuranceVault: zero deposit", erin, mirror.c.vault.deposit.call(assets, erin.address))
                return
            price_before = mirror.price()
            assert mirror.deposit(erin, assets) == preview
        price_after = mirror.price()
        # The deposit never lowers the share price, and raises it by at most its rounding.
        assert Fraction(*price_after) >= Fraction(*price_before)
        assert Fraction(*price_after) - Fraction(*price_before) <= Fraction(*price_before) / price_after[1]  # one share's worth
        assert mirror.read(mirror.c.vault.convertToAssets.call(preview)) <= assets
        round_trip(mirror, erin, preview, assets)
    finally:
        mirror.rollback(checkpoint)


@given(kind=YIELDS, move=MOVES, shares=st.integers(min_value=1, max_value=10**19))
def test_mint__preview_exact_and_round_trip_gains_only_unlocked_income(yield_base, alice, bob, erin, liquidator, stranger, kind, move, shares):
    mirror = yield_base
    checkpoint = mirror.checkpoint()
    try:
        apply_yield(mirror, kind, alice, bob, liquidator, stranger)
        move_btc(mirror, move)
        with mirror.clock_stopped():
            preview = mirror.read(mirror.c.vault.previewMint.call(shares))
            price_before = mirror.price()
            assert mirror.mint(erin, shares) == preview
        assert Fraction(*mirror.price()) >= Fraction(*price_before)
        round_trip(mirror, erin, shares, preview)
    finally:
        mirror.rollback(checkpoint)


@given(
    kind=YIELDS, move=MOVES,
    assets=st.integers(min_value=0, max_value=10**15), shares=st.integers(min_value=0, max_value=10**21),
)
def test_previews__round_in_the_vaults_favour_and_ignore_the_caller(
    yield_base, alice, bob, carol, erin, liquidator, stranger, kind, move, assets, shares
):
    mirror = yield_base
    checkpoint = mirror.checkpoint()
    try:
        apply_yield(mirror, kind, alice, bob, liquidator, stranger)
        move_btc(mirror, move)
        total_assets, supply = mirror.price()
        exact_shares = Fraction(assets * supply, total_assets)
        exact_assets = Fraction(shares * total_assets, supply)
        v = mirror.c.vault
        views = [v.previewDeposit.call(assets), v.convertToShares.call(assets), v.previewMint.call(shares), v.convertToAssets.call(shares)]
        results = mirror.read(*views)
        deposit, to_shares, mint, to_assets = results
        # deposit and the conversions round down, mint up (EIP-4626)
        assert deposit == to_shares <= exact_shares < deposit + 1
        assert to_assets <= exact_assets < to_assets + 1
        assert mint - 1 < exact_assets <= mint
        vault, now = mirror.vault_model, mirror.now()
        model_total = vault.total_assets(now)
        assert results == [
            vault.convert_to_shares(assets, model_total), vault.convert_to_shares(assets, model_total),
            vault.convert_to_assets(shares, model_total, round_up=True), vault.convert_to_assets(shares, model_total),
        ]
        for caller in (carol, erin, stranger, mirror.owner, mirror.vault_address, ZERO_ADDRESS):
            assert [mirror.read_as(caller, view) for view in views] == results
            # EIP-7540: the previews of an asynchronous redeem revert for every caller and input.
            for preview in (v.previewWithdraw.call(assets), v.previewRedeem.call(shares)):
                with pytest.raises(RevertError) as refused:
                    mirror.read_as(caller, preview)
                assert refused.value.reason == NO_PREVIEW
            assert mirror.max_views(caller, caller)[2:] == [0, 0]  # nobody has a request
    finally:
        mirror.rollback(checkpoint)


# ---------------------------------------------------------------- EIP-7540 properties (hypothesis)

@given(kind=YIELDS, move=MOVES, later=MOVES, part=st.integers(min_value=1, max_value=100), path=st.sampled_from(["redeem", "withdraw"]))
def test_request_then_claim__pays_min_of_value_at_request_and_at_claim_by_either_path(
    yield_base, alice, bob, dave, liquidator, stranger, kind, move, later, part, path
):
    """dave requests part of his shares, prices move, he claims in two parts, first by `path`,
    then what the vault can pay of the rest by the other: every amount as the model says, never
    more than the value at request, and `maxRedeem` exact (one share more is refused)."""
    mirror = yield_base
    checkpoint = mirror.checkpoint()
    try:
        vault, v = mirror.vault_model, mirror.c.vault
        apply_yield(mirror, kind, alice, bob, liquidator, stranger)
        move_btc(mirror, move)
        mirror.wait(vault.lockup_period)
        mirror.refresh()
        shares = max(mirror.shares(dave) * part // 100, 1)
        recorded = mirror.request(dave, shares)
        assert recorded == vault.convert_to_assets(shares, vault.total_assets(mirror.now()))
        assert mirror.max_views(dave, dave)[2:] == [0, 0]  # pending: nothing to claim yet
        mirror.reverts("InsuranceVault: request not yet claimable", dave, v.redeem.call(shares, dave.address, dave.address),
                       lambda now: vault.redeem(dave.address, shares, now))
        move_btc(mirror, later)
        mirror.wait(vault.withdrawal_delay)
        mirror.refresh()
        paid, other = 0, "withdraw" if path == "redeem" else "redeem"
        for step, how in enumerate((path, other)):
            if dave.address not in vault.requests:
                break
            _, _, max_withdraw, max_redeem = mirror.max_views(dave, dave)
            left = vault.requests[dave.address].shares
            preview = vault.claim_preview(dave.address, mirror.now())
            assert max_withdraw == preview.payable_now <= preview.owed
            if max_redeem < left:  # the vault's margin limits the claim: one share more is refused
                mirror.reverts(CANNOT_PAY, dave, v.redeem.call(max_redeem + 1, dave.address, dave.address),
                               lambda now: vault.redeem(dave.address, max_redeem + 1, now))
            if how == "redeem":
                amount = max_redeem // 3 if step == 0 else max_redeem
                if amount:
                    paid += mirror.claim(dave, amount)
            else:
                amount = max_withdraw // 3 if step == 0 else max_withdraw
                if amount:
                    assert mirror.claim_assets(dave, amount) <= left
                    paid += amount
        assert paid <= recorded
    finally:
        mirror.rollback(checkpoint)


def test_request__adds_to_a_pending_request_and_restarts_its_delay(mirror, dave):
    shares = mirror.deposit(dave, 1_000 * USDC)
    vault = mirror.vault_model
    mirror.wait(vault.lockup_period)
    first = mirror.request(dave, shares // 2)
    mirror.wait(vault.withdrawal_delay // 2)
    second = mirror.request(dave, shares - shares // 2)  # joins the pending request: a full delay again
    request = vault.requests[dave.address]
    assert (request.shares, request.assets) == (shares, first + second) and request.claimable_at == mirror.now() + vault.withdrawal_delay
    mirror.wait(vault.withdrawal_delay - 60)
    mirror.reverts("InsuranceVault: request not yet claimable", dave, mirror.c.vault.redeem.call(shares, dave.address, dave.address),
                   lambda now: vault.redeem(dave.address, shares, now))
    mirror.wait(60)
    assert mirror.claim(dave) == 1_000 * USDC


def test_request__while_a_request_is_claimable_must_claim_it_first(mirror, dave):
    shares = mirror.deposit(dave, 1_000 * USDC)
    vault, v = mirror.vault_model, mirror.c.vault
    mirror.wait(vault.lockup_period)
    mirror.request(dave, shares // 2)
    mirror.wait(vault.withdrawal_delay)
    mirror.reverts("InsuranceVault: claim the claimable request first", dave, v.requestRedeem.call(1, dave.address, dave.address),
                   lambda now: vault.request_redeem(dave.address, 1, now))
    mirror.claim(dave, shares // 4)  # a partial claim leaves it claimable
    mirror.reverts("InsuranceVault: claim the claimable request first", dave, v.requestRedeem.call(1, dave.address, dave.address),
                   lambda now: vault.request_redeem(dave.address, 1, now))
    mirror.claim(dave)
    mirror.request(dave, shares - shares // 2)


def test_operator__requests_claims_and_deposits_for_its_controller_until_revoked(mirror, dave, erin, stranger):
    shares = mirror.deposit(erin, 1_000 * USDC)
    vault, v = mirror.vault_model, mirror.c.vault
    mirror.wait(vault.lockup_period)
    mirror.reverts(NOT_CONTROLLER, stranger, v.requestRedeem.call(shares, erin.address, erin.address),
                   lambda now: vault.request_redeem(stranger.address, shares, now, erin.address, erin.address))
    mirror.reverts("erc20: insufficient allowance", stranger, v.requestRedeem.call(shares, stranger.address, erin.address),
                   lambda now: vault.request_redeem(stranger.address, shares, now, stranger.address, erin.address))
    mirror.reverts(NOT_OPERATOR, stranger, v.deposit.call(1, erin.address), lambda now: vault.deposit(stranger.address, 1, now, erin.address))
    assert mirror.max_views(stranger, erin)[:2] == [0, 0]

    mirror.set_operator(erin, stranger)
    assert mirror.read(v.isOperator.call(erin.address, stranger.address)) is True
    # An operator requests erin's shares into erin's request, and claims it to itself.
    recorded = mirror.request(stranger, shares // 2, controller=erin, owner=erin)
    assert mirror.max_views(stranger, erin)[0] > 0  # and may deposit for her
    mirror.wait(vault.withdrawal_delay)
    assert mirror.max_views(stranger, erin)[2:] == [recorded, shares // 2]
    assert mirror.max_views(dave, erin) == [0, 0, 0, 0]  # not dave
    assert mirror.claim(stranger, controller=erin, receiver=stranger) == recorded
    unlock = vault.unlock_time[erin.address]
    mirror.deposit(stranger, 10 * USDC, receiver=erin)  # re-locks erin's shares: she allowed it
    assert vault.unlock_time[erin.address] > unlock

    mirror.set_operator(erin, stranger, False)
    mirror.wait(vault.lockup_period)
    mirror.reverts(NOT_CONTROLLER, stranger, v.requestRedeem.call(1, erin.address, erin.address),
                   lambda now: vault.request_redeem(stranger.address, 1, now, erin.address, erin.address))
    # An ERC-20 allowance lets dave escrow erin's shares into his own request, and is spent.
    mirror.approve_shares(erin, dave, 100)
    mirror.request(dave, 60, controller=dave, owner=erin)
    assert mirror.read(v.allowance.call(erin.address, dave.address)) == 40
    mirror.reverts("erc20: insufficient allowance", dave, v.requestRedeem.call(41, dave.address, erin.address),
                   lambda now: vault.request_redeem(dave.address, 41, now, dave.address, erin.address))


def test_supports_interface__erc165_eip7540_operator_and_redeem_erc7575(mirror):
    def interface_id(*signatures):
        word = 0
        for signature in signatures:
            word ^= int.from_bytes(keccak(text=signature)[:4], "big")
        return word.to_bytes(4, "big")

    erc7575 = {
        "minimal": ("asset()", "share()", "convertToAssets(uint256)", "convertToShares(uint256)", "totalAssets()"),
        "deposit": ("deposit(uint256,address)", "previewDeposit(uint256)", "maxDeposit(address)"),
        "mint": ("mint(uint256,address)", "previewMint(uint256)", "maxMint(address)"),
        "redeem": ("redeem(uint256,address,address)", "previewRedeem(uint256)", "maxRedeem(address)"),
        "withdraw": ("withdraw(uint256,address,address)", "previewWithdraw(uint256)", "maxWithdraw(address)"),
    }
    ids = {
        "erc165": interface_id("supportsInterface(bytes4)"),
        "operator": interface_id("setOperator(address,bool)", "isOperator(address,address)"),
        "redeem": interface_id("requestRedeem(uint256,address,address)", "pendingRedeemRequest(uint256,address)",
                               "claimableRedeemRequest(uint256,address)"),
        "erc7575": interface_id(*(s for group in erc7575.values() for s in group)),
        **{f"erc7575 {name}": interface_id(*group) for name, group in erc7575.items()},
    }
    assert {name: "0x" + value.hex() for name, value in list(ids.items())[:4]} == {
        "erc165": "0x01ffc9a7", "operator": "0xe3bc4e65", "redeem": "0x620ee8e4", "erc7575": "0x2f0a18c5",  # as the EIPs print them
    }
    v = mirror.c.vault
    assert mirror.read(*[v.supportsInterface.call(value) for value in ids.values()]) == [True] * len(ids)
    deposit_async = interface_id("requestDeposit(uint256,address,address)", "pendingDepositRequest(uint256,address)",
                                 "claimableDepositRequest(uint256,address)")
    assert mirror.read(v.supportsInterface.call(b"\xff\xff\xff\xff"), v.supportsInterface.call(deposit_async)) == [False, False]
    assert mirror.read(v.share.call()) == mirror.vault_address


# ---------------------------------------------------------------- income unlocking (hypothesis)

def _observe(mirror):
    vault, now = mirror.vault_model, mirror.now()
    return SimpleNamespace(
        now=now, total=vault.total_assets(now), value=mirror.vault_value(), locked=vault.profit_locked(now),
        at_report=vault.locked_profit, end=vault.unlock_end, report=vault.last_report,
    )


def _unlock_bound(before, now):
    """The most income booked by `before` can unlock by `now`: linear, plus one unit of rounding."""
    if before.end <= before.now:
        return 0
    return Fraction(before.at_report * (min(now, before.end) - before.now), before.end - before.report) + 1


@given(
    kind=st.sampled_from(["penalty", "buffer"]), first_wait=st.integers(min_value=1, max_value=40 * 86400),
    move=st.integers(min_value=-15, max_value=15), second_wait=st.integers(min_value=1, max_value=40 * 86400),
)
def test_unlocking__share_price_never_jumps_up_on_a_gain_and_drops_at_once_on_a_loss(
    yield_base, alice, bob, erin, liquidator, stranger, kind, first_wait, move, second_wait
):
    """After each step (an income, a report, a wait, a price move, a report) totalAssets has risen by
    at most the unlocking of what was locked before the step; a loss beyond what the vault held
    back (income locked, gains not yet reported) shows at once: totalAssets is then the account value."""
    mirror = yield_base
    checkpoint = mirror.checkpoint()
    try:
        mirror.deposit(erin, 10_000 * USDC)
        mirror.walk_mark(BTC, BTC_PRICE * 91 // 100)
        steps = [
            lambda: apply_yield(mirror, kind, alice, bob, liquidator, stranger),
            lambda: mirror.process_report(stranger),
            lambda: mirror.wait(first_wait),
            lambda: move_btc(mirror, move),
            lambda: mirror.process_report(stranger),
            lambda: mirror.wait(second_wait),
        ]
        for step in steps:
            before = _observe(mirror)
            step()
            after = _observe(mirror)
            assert after.total - before.total <= _unlock_bound(before, after.now)
            assert after.total <= max(after.value, 0)
            held_back = before.value - before.total
            loss = before.value - after.value
            if loss > held_back + _unlock_bound(before, after.now):
                assert after.total == max(after.value, 0)
        # In the end every income has unlocked (two waits of up to 40 days against 30) or is on its way.
        assert mirror.vault_model.unlock_end <= mirror.now() + mirror.vault_model.profit_unlock_time
    finally:
        mirror.rollback(checkpoint)


# ---------------------------------------------------------------- inflation and donation

@given(
    seed=st.integers(min_value=1, max_value=10**6), donation=st.integers(min_value=0, max_value=10**13),
    victim=st.integers(min_value=1, max_value=10**12),
)
def test_deposit__inflation_attack_by_donation_gains_nothing(mirror, dave, erin, seed, donation, victim):
    attacker = dave
    checkpoint = mirror.checkpoint()
    try:
        first = mirror.deposit(attacker, seed)
        assert first == seed * VIRTUAL_SHARES  # the empty vault: 1e6 shares per unit
        price = mirror.price()
        if donation:
            mirror.donate(attacker, donation)
            assert mirror.price() == price  # a donation moves nothing
            assert mirror.read(mirror.c.vault.totalAssets.call()) == seed
        victim_shares = mirror.deposit(erin, victim)
        assert victim_shares == victim * VIRTUAL_SHARES  # the attacker did not move the price
        assert Fraction(*mirror.price()) == Fraction(*price)
        (attacker_recorded, attacker_paid), (victim_recorded, victim_paid) = exit_all(mirror, attacker, erin)
        assert attacker_paid <= attacker_recorded <= seed  # the donation is lost, never recovered
        assert victim - 1 <= victim_paid <= victim  # at most one unit of rounding
        assert mirror.token_balance(mirror.vault_address) == donation  # stuck as idle tokens
    finally:
        mirror.rollback(checkpoint)


def test_deposit_for__into_the_vaults_pool_account_reverts(mirror, dave, stranger):
    mirror.deposit(dave, 1)
    c = mirror.c
    mirror.send(mirror.owner, c.token.mint.call(stranger.address, 10**12))
    mirror.send(stranger, c.token.approve.call(c.pool.address, 10**12))
    mirror.reverts(
        "MarginPool: account closed to third-party deposits", stranger, c.pool.deposit_for.call(mirror.vault_address, 10**12),
        lambda now: mirror.model.deposit_for(stranger.address, mirror.vault_address, 10**12),
    )
    assert mirror.vault_model.total_assets(mirror.now()) == 1


def test_deposit__inflation_attack_by_losing_into_the_vault_gains_nothing(mirror, alice, bob, dave, erin, liquidator):
    """The attacker owns the whole (tiny) vault and loses a liquidation penalty into it on purpose:
    the penalty is the attacker's own money; it is not in totalAssets yet (income unlocks), so the
    victim's deposit is priced without it, and the attacker's 1e6 shares own a sliver of it."""
    attacker = alice
    mirror.deposit(attacker, 1)
    open_long(mirror, attacker, bob, 6_000 * USDC)
    mirror.fund(liquidator, 100_000 * USDC)
    mirror.walk_mark(BTC, BTC_PRICE * 91 // 100)
    tx, _ = mirror.liquidate(liquidator, attacker, BTC, WAD)
    penalty = tx.one("Liquidation").penalty
    assert penalty == 455 * USDC and mirror.vault_value() == 1 + penalty
    assert mirror.vault_model.total_assets(mirror.now()) == 1  # income is not in the price until it unlocks
    price = mirror.price()
    victim = 10_000 * USDC
    shares = mirror.deposit(erin, victim)
    assert shares == victim * price[1] // price[0]
    assert Fraction(*mirror.price()) >= Fraction(*price)
    (_, attacker_paid), (_, victim_paid) = exit_all(mirror, attacker, erin)
    # The attacker's 1e6 of 1e10 + 2e6 shares: a ten-thousandth of what unlocked (a third of 455).
    assert attacker_paid <= 1 + penalty * VIRTUAL_SHARES // (shares + 2 * VIRTUAL_SHARES) + 1
    left_in_pool = mirror.model.balance(attacker.address)
    assert attacker_paid + left_in_pool < 1 + 6_000 * USDC  # far less than the attacker put in
    assert victim_paid >= victim  # the victim loses nothing (it earns the unlocked penalty instead)


# ---------------------------------------------------------------- empty, drained, deficit

def test_deposit__empty_vault_with_income_locks_it_for_the_holders(mirror, alice, bob, erin, liquidator, stranger):
    """No shares yet, but a penalty already credited: it is locked at the first report and unlocks
    to whoever holds shares while it does; a deposit below `min_deposit` is refused."""
    open_long(mirror, alice, bob, 6_000 * USDC)
    mirror.fund(liquidator, 100_000 * USDC)
    mirror.walk_mark(BTC, BTC_PRICE * 91 // 100)
    mirror.liquidate(liquidator, alice, BTC, WAD)
    vault = mirror.vault_model
    assert vault.total_supply == 0 and vault.total_assets(mirror.now()) == 0 and mirror.vault_value() == 455 * USDC
    mirror.process_report(stranger)
    assert vault.locked_profit == 455 * USDC and vault.unlock_end == mirror.now() + vault.profit_unlock_time
    mirror.wait(vault.profit_unlock_time)  # nobody holds shares: the virtual shares own it all once unlocked
    assert vault.total_assets(mirror.now()) == 455 * USDC
    minimum = vault.min_deposit(mirror.now())
    assert minimum == 456 and mirror.read(mirror.c.vault.min_deposit.call()) == minimum
    mirror.send(mirror.owner, mirror.c.token.mint.call(erin.address, minimum))
    mirror.send(erin, mirror.c.token.approve.call(mirror.vault_address, minimum))
    mirror.reverts("InsuranceVault: zero deposit", erin, mirror.c.vault.deposit.call(minimum - 1, erin.address),
                   lambda now: vault.deposit(erin.address, minimum - 1, now))
    assets = 1_000 * USDC
    shares = mirror.deposit(erin, assets)
    assert shares == assets * VIRTUAL_SHARES // (455 * USDC + 1)
    value = mirror.read(mirror.c.vault.convertToAssets.call(shares))
    share_worth = 455 * USDC // VIRTUAL_SHARES + 1  # coarse shares: 1e6 virtual shares own the penalty
    assert assets - share_worth <= value <= assets
    _, paid = exit_all(mirror, erin)
    assert paid == value


def test_deposit__drained_vault_mints_fair_shares(mirror, alice, bob, dave, erin, stranger):
    """dave's 10k vault takes over alice's long at 91k and BTC falls until the vault is worth ~0:
    supply > 0, assets ≈ 0. A new deposit is neither diluted by nor dilutes the old shares."""
    take_over_alice(mirror, alice, bob, dave, stranger)
    vault = mirror.vault_model
    position = mirror.model.position(mirror.vault_address, BTC)
    balance = mirror.model.balance(mirror.vault_address)
    # The price at which the vault's value is exactly 2 units: balance + size * (p - entry) / 1e30 = 2.
    drained = position.entry_price - (balance - 2) * 10**30 // position.size
    mirror.walk_mark(BTC, drained)
    assert mirror.vault_value() == 2 and vault.total_supply == 10_000 * USDC * VIRTUAL_SHARES
    assert vault.total_assets(mirror.now()) == 2  # the loss shows at once, through the locked buffer
    dave_before = mirror.read(mirror.c.vault.convertToAssets.call(mirror.shares(dave)))
    assert dave_before <= 2
    assets = 5_000 * USDC
    with mirror.clock_stopped():
        preview = mirror.read(mirror.c.vault.previewDeposit.call(assets))
        shares = mirror.deposit(erin, assets)
    assert shares == preview > 0
    assert assets - 1 <= mirror.read(mirror.c.vault.convertToAssets.call(shares)) <= assets
    assert mirror.read(mirror.c.vault.convertToAssets.call(mirror.shares(dave))) <= 2
    # A mint in the drained state costs what the shares are worth, rounded up.
    cost = mirror.mint(dave, shares)
    assert assets <= cost <= assets + 1


def test_deposit__vault_in_deficit_reverts_and_max_deposit_is_zero(mirror, alice, bob, dave, erin, stranger):
    take_over_alice(mirror, alice, bob, dave, stranger)
    mirror.walk_mark(BTC, BTC_PRICE * 65 // 100)  # the vault's long loses 13k on 11.5k
    assert mirror.vault_value() < 0
    v = mirror.c.vault
    assert mirror.read(v.totalAssets.call()) == 0
    assert mirror.max_views(erin, erin) == [0, 0, 0, 0]
    mirror.send(mirror.owner, mirror.c.token.mint.call(erin.address, 10**9))
    mirror.send(erin, mirror.c.token.approve.call(mirror.vault_address, 10**9))
    for call, model_call in (
        (v.deposit.call(10**9, erin.address), lambda now: mirror.vault_model.deposit(erin.address, 10**9, now)),
        (v.mint.call(10**12, erin.address), lambda now: mirror.vault_model.mint(erin.address, 10**12, now)),
    ):
        mirror.reverts("InsuranceVault: vault in deficit", erin, call, model_call)
    # Recovery above zero opens deposits again.
    mirror.walk_mark(BTC, BTC_PRICE * 80 // 100)
    assert mirror.vault_value() > 0
    assert mirror.max_views(erin, erin)[0] > 0
    assert mirror.deposit(erin, 10**9) > 0


@given(kind=YIELDS, move=MOVES)
def test_max_functions__never_revert_and_match_the_model_for_every_caller(yield_base, alice, bob, dave, erin, liquidator, stranger, kind, move):
    mirror = yield_base
    checkpoint = mirror.checkpoint()
    try:
        apply_yield(mirror, kind, alice, bob, liquidator, stranger)
        move_btc(mirror, move)
        accounts = (dave, erin, stranger, mirror.vault_address, ZERO_ADDRESS)
        for caller in accounts:
            for account in accounts:
                got = mirror.max_views(caller, account)
                if _address(caller) != _address(account) or account == ZERO_ADDRESS:
                    assert got == [0, 0, 0, 0]  # nobody acts for an address that has not made it its operator
                elif not mirror.vault_model.accepts_deposits(mirror.now()):
                    assert got[:2] == [0, 0]
    finally:
        mirror.rollback(checkpoint)


# ---------------------------------------------------------------- lock-up and exits

def test_request_redeem__before_lockup_reverts(mirror, dave):
    shares = mirror.deposit(dave, 1_000 * USDC)
    v, vault = mirror.c.vault, mirror.vault_model
    request = v.requestRedeem.call(shares, dave.address, dave.address)
    mirror.reverts(LOCKED, dave, request, lambda now: vault.request_redeem(dave.address, shares, now))
    mirror.wait(vault.lockup_period - 10 * 60)
    mirror.reverts(LOCKED, dave, v.requestRedeem.call(1, dave.address, dave.address), lambda now: vault.request_redeem(dave.address, 1, now))
    mirror.wait(10 * 60)
    assert mirror.request(dave, shares) == 1_000 * USDC


def test_deposit__relocks_all_of_the_holders_shares(mirror, dave):
    mirror.deposit(dave, 1_000 * USDC)
    mirror.wait(mirror.vault_model.lockup_period)
    tx_time = mirror.now()
    mirror.deposit(dave, 1)  # a top-up locks the old shares again
    assert mirror.vault_model.unlock_time[dave.address] > tx_time + mirror.vault_model.lockup_period - 5
    mirror.reverts(LOCKED, dave, mirror.c.vault.requestRedeem.call(1, dave.address, dave.address),
                   lambda now: mirror.vault_model.request_redeem(dave.address, 1, now))


def test_transfer__locked_shares_revert(mirror, dave, erin, stranger):
    shares = mirror.deposit(dave, 1_000 * USDC)
    v = mirror.c.vault
    mirror.reverts(LOCKED, dave, v.transfer.call(erin.address, shares), lambda now: mirror.vault_model.transfer(dave.address, erin.address, shares, now))
    mirror.approve_shares(dave, stranger, shares)
    mirror.reverts(LOCKED, stranger, v.transferFrom.call(dave.address, erin.address, shares),
                   lambda now: mirror.vault_model.transfer_from(stranger.address, dave.address, erin.address, shares, now))
    mirror.wait(mirror.vault_model.lockup_period)
    tx = mirror.transfer_shares(dave, erin, shares // 2)
    event = tx.one("Transfer")
    assert (event.sender, event.receiver, event.value) == (dave.address, erin.address, shares // 2)
    mirror.reverts(
        "erc20: transfer amount exceeds balance", dave, v.transfer.call(erin.address, shares),
        lambda now: mirror.vault_model.transfer(dave.address, erin.address, shares, now),
    )


def test_request_redeem__more_than_the_owners_shares_reverts(mirror, dave, erin):
    shares = mirror.deposit(dave, 1_000 * USDC)
    mirror.deposit(erin, 1_000 * USDC)
    mirror.wait(mirror.vault_model.lockup_period)
    mirror.reverts(
        "erc20: transfer amount exceeds balance", dave, mirror.c.vault.requestRedeem.call(shares + 1, dave.address, dave.address),
        lambda now: mirror.vault_model.request_redeem(dave.address, shares + 1, now),
    )


def test_transfer__to_the_zero_address_reverts(mirror, dave):
    """The contract (snekmate's ERC-20) refuses; the model must refuse the same way."""
    shares = mirror.deposit(dave, 1_000 * USDC)
    mirror.wait(mirror.vault_model.lockup_period)
    mirror.reverts(
        "erc20: transfer to the zero address", dave, mirror.c.vault.transfer.call(ZERO_ADDRESS, shares),
        lambda now: mirror.vault_model.transfer(dave.address, ZERO_ADDRESS, shares, now),
    )


def test_claim__before_withdrawal_delay_reverts(mirror, dave):
    shares = mirror.deposit(dave, 1_000 * USDC)
    vault = mirror.vault_model
    mirror.wait(vault.lockup_period)
    mirror.request(dave, shares)
    claim = mirror.c.vault.redeem.call(shares, dave.address, dave.address)
    mirror.reverts("InsuranceVault: request not yet claimable", dave, claim, lambda now: vault.redeem(dave.address, shares, now))
    mirror.wait(vault.withdrawal_delay - 10 * 60)
    mirror.reverts("InsuranceVault: request not yet claimable", dave, claim, lambda now: vault.redeem(dave.address, shares, now))
    mirror.wait(10 * 60)
    assert mirror.claim(dave) == 1_000 * USDC
    assert vault.total_supply == 0 and dave.address not in vault.requests


def test_claim__someone_elses_request_reverts(mirror, dave, stranger):
    shares = mirror.deposit(dave, 1_000 * USDC)
    vault, v = mirror.vault_model, mirror.c.vault
    mirror.wait(vault.lockup_period)
    mirror.request(dave, shares)
    mirror.wait(vault.withdrawal_delay)
    for call, model_call in (
        (v.redeem.call(shares, stranger.address, dave.address), lambda now: vault.redeem(stranger.address, shares, now, stranger.address, dave.address)),
        (v.withdraw.call(1, stranger.address, dave.address), lambda now: vault.withdraw(stranger.address, 1, now, stranger.address, dave.address)),
    ):
        mirror.reverts(NOT_CONTROLLER, stranger, call, model_call)
    assert mirror.token_balance(stranger) == 0
    assert mirror.claim(dave) == 1_000 * USDC


def test_claim__without_a_request_or_above_it_reverts(mirror, dave):
    vault, v = mirror.vault_model, mirror.c.vault
    mirror.reverts("InsuranceVault: no redeem request", dave, v.redeem.call(1, dave.address, dave.address),
                   lambda now: vault.redeem(dave.address, 1, now))
    shares = mirror.deposit(dave, 1_000 * USDC)
    mirror.wait(vault.lockup_period)
    mirror.request(dave, shares)
    mirror.wait(vault.withdrawal_delay)
    for call, model_call, reason in (
        (v.redeem.call(shares + 1, dave.address, dave.address), lambda now: vault.redeem(dave.address, shares + 1, now),
         "InsuranceVault: shares above the claimable request"),
        (v.withdraw.call(1_000 * USDC + 1, dave.address, dave.address), lambda now: vault.withdraw(dave.address, 1_000 * USDC + 1, now),
         "InsuranceVault: assets above the claimable request"),
        (v.redeem.call(0, dave.address, dave.address), lambda now: vault.redeem(dave.address, 0, now), "InsuranceVault: zero amount"),
        (v.withdraw.call(0, dave.address, dave.address), lambda now: vault.withdraw(dave.address, 0, now), "InsuranceVault: zero amount"),
        (v.redeem.call(1, ZERO_ADDRESS, dave.address), lambda now: vault.redeem(dave.address, 1, now, ZERO_ADDRESS),
         "InsuranceVault: zero receiver"),
    ):
        mirror.reverts(reason, dave, call, model_call)
    assert mirror.claim_assets(dave, 400 * USDC) == 400 * USDC * VIRTUAL_SHARES  # withdraw: exactly these assets
    mirror.claim(dave)
    mirror.reverts("InsuranceVault: no redeem request", dave, v.withdraw.call(1, dave.address, dave.address),
                   lambda now: vault.withdraw(dave.address, 1, now))


def test_claim__pays_the_value_at_request_after_a_gain(yield_base, alice, bob, dave, stranger):
    """The vault gains while the request waits: the claim pays what the shares were worth at request;
    the gain stays with the holders who remain."""
    mirror = yield_base
    apply_yield(mirror, "buffer", alice, bob, None, stranger)
    mirror.wait(mirror.vault_model.lockup_period)
    mirror.refresh()
    recorded = mirror.request(dave, mirror.shares(dave) // 2)
    move_btc(mirror, 10)  # the vault's long gains 4.55k
    mirror.wait(mirror.vault_model.withdrawal_delay)
    mirror.refresh()
    shares = mirror.vault_model.requests[dave.address].shares
    worth_now = mirror.read(mirror.c.vault.convertToAssets.call(shares))
    assert worth_now > recorded  # the buffer kept unlocking
    price = mirror.price()
    assert mirror.claim(dave) == recorded
    assert Fraction(*mirror.price()) > Fraction(*price)  # the forgone value goes to the remaining shares


def test_claim__request_before_a_takeover_loss_still_bears_the_loss(mirror, alice, bob, dave, erin, stranger):
    """erin sees alice going bankrupt and asks to leave first: the deficit the vault covers in the
    meantime is still hers in proportion, because the claim pays min(value at request, value now)."""
    mirror.deposit(dave, 40_000 * USDC)
    mirror.deposit(erin, 10_000 * USDC)
    open_long(mirror, alice, bob, 6_000 * USDC)
    mirror.wait(mirror.vault_model.lockup_period)
    mirror.refresh()
    recorded = mirror.request(erin, mirror.shares(erin))
    assert recorded == 10_000 * USDC
    mirror.walk_mark(BTC, BTC_PRICE * 86 // 100)  # alice: -1k
    tx, refusal = mirror.backstop(stranger, alice)
    assert refusal == "" and tx.one("Takeover").value == -1_000 * USDC
    assert tx.one("TakeoverRecorded").loss == 1_000 * USDC
    mirror.wait(mirror.vault_model.withdrawal_delay)
    mirror.refresh()
    paid = mirror.claim(erin)
    assert paid < recorded
    assert paid == 9_800 * USDC  # a fifth of the 1k deficit


def test_claim__that_would_breach_the_vaults_margin_waits_and_max_star_says_so(mirror, alice, bob, dave, erin, stranger):
    """The vault's account holds a taken-over long: the sole holder's claim of everything must wait.
    `claim_preview` and `maxWithdraw`/`maxRedeem` tell in advance what the vault can pay: exactly
    that much can be claimed now, one unit (one share) more cannot."""
    take_over_alice(mirror, alice, bob, dave, stranger)
    vault, v = mirror.vault_model, mirror.c.vault
    mirror.wait(vault.lockup_period)
    mirror.refresh()
    recorded = mirror.request(dave, mirror.shares(dave))
    assert recorded > 10_000 * USDC  # dave's 10k and the part of the 1.5k buffer unlocked in 7 days
    preview = vault.claim_preview(dave.address, mirror.now())
    assert preview.owed == recorded and preview.payable_now < recorded  # known before the request is claimable
    mirror.wait(vault.withdrawal_delay)
    mirror.refresh()
    shares = vault.requests[dave.address].shares
    mirror.reverts(CANNOT_PAY, dave, v.redeem.call(shares, dave.address, dave.address), lambda now: vault.redeem(dave.address, shares, now))
    _, _, max_withdraw, max_redeem = mirror.max_views(dave, dave)
    health = mirror.model.account_health(mirror.vault_address, mirror.now())
    assert max_withdraw == health.value - health.initial_margin == vault.claim_preview(dave.address, mirror.now()).payable_now
    assert 0 < max_redeem < shares
    mirror.reverts(CANNOT_PAY, dave, v.withdraw.call(max_withdraw + 1, dave.address, dave.address),
                   lambda now: vault.withdraw(dave.address, max_withdraw + 1, now))
    paid = mirror.claim(dave, max_redeem)
    assert paid <= max_withdraw
    # The rest waits until the vault's margin allows it: here a new deposit frees it.
    mirror.deposit(erin, 10_000 * USDC)
    assert paid + mirror.claim(dave) == recorded


def test_claim__stale_prices_make_max_star_zero_not_revert(mirror, alice, bob, dave, stranger):
    """The clearinghouse's `withdrawable` reverts while a market the vault holds is stale: the max*
    views and `claim_preview` say 0 (they never revert) and a claim of value is refused."""
    take_over_alice(mirror, alice, bob, dave, stranger)
    vault, v = mirror.vault_model, mirror.c.vault
    mirror.wait(vault.lockup_period)
    mirror.refresh()
    mirror.request(dave, mirror.shares(dave) // 10)
    mirror.wait(vault.withdrawal_delay)  # no refresh: BTC is stale now
    shares = vault.requests[dave.address].shares
    assert mirror.max_views(dave, dave)[2] == 0 and vault.claim_preview(dave.address, mirror.now()).payable_now == 0
    mirror.reverts(CANNOT_PAY, dave, v.redeem.call(shares, dave.address, dave.address), lambda now: vault.redeem(dave.address, shares, now))
    mirror.refresh()
    assert mirror.max_views(dave, dave)[3] == shares
    assert mirror.claim(dave) > 0


def test_claim__after_the_flagged_vault_recovers_is_paid(mirror, alice, bob, dave, erin, stranger):
    """The vault's value dips below zero for a moment and anyone flags it bankrupt; BTC recovers.
    While flagged the vault takes no deposit it could not pay out (maxDeposit = 0); once anyone
    clears the flag, a new depositor can come in and leave again."""
    take_over_alice(mirror, alice, bob, dave, stranger)
    mirror.walk_mark(BTC, BTC_PRICE * 65 // 100)
    assert mirror.vault_value() < 0
    mirror.flag_bankruptcy(mirror.protocol.vault, sender=stranger)
    mirror.walk_mark(BTC, BTC_PRICE)
    assert mirror.vault_value() > 10_000 * USDC
    assert mirror.max_views(erin, erin)[:2] == [0, 0]
    mirror.clear_bankruptcy(mirror.protocol.vault, sender=stranger)
    assert mirror.max_views(erin, erin)[0] > 0
    mirror.deposit(erin, 100_000 * USDC)
    recorded, paid = exit_all(mirror, erin)
    assert paid == recorded > 99_000 * USDC


# ---------------------------------------------------------------- bad input

def test_deposit__zero_reverts(mirror, dave):
    v = mirror.c.vault
    mirror.reverts("InsuranceVault: zero deposit", dave, v.deposit.call(0, dave.address), lambda now: mirror.vault_model.deposit(dave.address, 0, now))
    mirror.reverts("InsuranceVault: zero deposit", dave, v.mint.call(0, dave.address), lambda now: mirror.vault_model.mint(dave.address, 0, now))
    mirror.deposit(dave, 1_000 * USDC)
    mirror.wait(mirror.vault_model.lockup_period)
    mirror.reverts("InsuranceVault: zero shares", dave, v.requestRedeem.call(0, dave.address, dave.address),
                   lambda now: mirror.vault_model.request_redeem(dave.address, 0, now))


def test_deposit__for_someone_who_did_not_make_you_its_operator_reverts(mirror, dave, erin):
    mirror.deposit(erin, 1_000 * USDC)
    c, v = mirror.c, mirror.c.vault
    mirror.send(mirror.owner, c.token.mint.call(dave.address, 10**9))
    mirror.send(dave, c.token.approve.call(mirror.vault_address, 10**9))
    mirror.wait(mirror.vault_model.lockup_period)
    unlock = mirror.vault_model.unlock_time[erin.address]
    for call, model_call in (
        (v.deposit.call(10**9, erin.address), lambda now: mirror.vault_model.deposit(dave.address, 10**9, now, erin.address)),
        (v.mint.call(10**12, erin.address), lambda now: mirror.vault_model.mint(dave.address, 10**12, now, erin.address)),
    ):
        mirror.reverts(NOT_OPERATOR, dave, call, model_call)
    assert mirror.vault_model.unlock_time[erin.address] == unlock  # erin's shares were not re-locked
    mirror.request(erin, 1)


def test_deposit__above_the_caps_reverts(mirror, dave):
    v = mirror.c.vault
    for call, model_call in (
        (v.deposit.call(2**96 + 1, dave.address), lambda now: mirror.vault_model.deposit(dave.address, 2**96 + 1, now)),
        (v.mint.call(2**150 + 1, dave.address), lambda now: mirror.vault_model.mint(dave.address, 2**150 + 1, now)),
        (v.deposit.call(2**256 - 1, dave.address), lambda now: mirror.vault_model.deposit(dave.address, 2**256 - 1, now)),
    ):
        mirror.reverts("InsuranceVault: deposit above the vault's cap", dave, call, model_call)


def test_record_takeover__by_anyone_but_the_liquidation_engine_reverts(mirror, dave, stranger):
    mirror.deposit(dave, 1_000 * USDC)
    for caller in (stranger, mirror.owner, dave, mirror.c.clearinghouse.address):
        mirror.reverts(
            "InsuranceVault: caller is not the liquidation engine", caller, mirror.c.vault.record_takeover.call(stranger.address, 10**9)
        )


def test_setters__by_a_stranger_revert_and_by_the_owner_apply(mirror, stranger):
    v = mirror.c.vault
    for call in (
        v.set_risk_limits.call(10 * WAD, 1, 1), v.set_max_position.call(BTC, 0), v.set_lockup.call(0, 0),
        v.set_profit_unlock.call(86400), v.transfer_ownership.call(stranger.address),
    ):
        mirror.reverts("ownable: caller is not the owner", stranger, call)
    mirror.reverts("InsuranceVault: zero leverage", mirror.owner, v.set_risk_limits.call(0, 1, 1), lambda now: mirror.vault_model.set_risk_limits(0, 1, 1))
    for seconds in (86400 - 1, 365 * 86400 + 1, 0):
        mirror.reverts("InsuranceVault: profit unlock time out of bounds", mirror.owner, v.set_profit_unlock.call(seconds),
                       lambda now: mirror.vault_model.set_profit_unlock(seconds))
    mirror.set_risk_limits(3 * WAD, 10 * USDC, 20 * USDC)
    mirror.set_max_position(BTC, WAD)
    mirror.set_lockup(3600, 60)
    mirror.set_profit_unlock(86400)
    mirror.set_profit_unlock(365 * 86400)
