"""The insurance vault as an ERC-4626 vault, against the reference model (backstop/model/vault.py).

`VaultMirror` extends the clearinghouse `Mirror` with the vault: it drives contracts and model with
the same actions (deposits, mints, redemption requests and claims, donations, takeovers, the owner's
limits) and, after every action, compares everything the base mirror compares plus the vault's
shares, supply, totalAssets, previews, unlock times, requests, loss counters and limits. It talks to
Anvil through backstop/chain/fast_chain.py (one HTTP round trip per transaction, every comparison in
one JSON-RPC batch) and decodes events from the receipts, so the hypothesis properties below can
afford a whole round trip (deposit, lock-up, request, delay, claim) per example. Each example of a
`@given` test starts from the same chain state: the mirror rolls chain and model back to a
checkpoint (`evm_snapshot`/`evm_revert`) after every example.

"Yield" here is anything that moves the vault's own account value: a liquidation penalty or a
takeover buffer (positive), a deficit it covers or a loss on a taken-over position (negative).
"""

from fractions import Fraction
from types import SimpleNamespace

import pytest
from eth_abi import decode as abi_decode
from eth_utils import keccak, to_checksum_address
from hypothesis import given
from hypothesis import strategies as st

from backstop.chain.fast_chain import FastChain, RevertError, _type_string
from backstop.model.protocol import ModelRevert, ZERO_ADDRESS
from backstop.model.vault import VIRTUAL_ASSETS, VIRTUAL_SHARES, VaultModel
from conftest import BTC, USDC, WAD
from test_clearinghouse_vs_model import Mirror

MAX_UINT = 2**256 - 1
BTC_PRICE = 100_000 * WAD
LOCKED = "InsuranceVault: shares locked"
EXIT_CLOSED = "InsuranceVault: exit with request_redeem, then claim"


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
    """A mined transaction: its block timestamp and decoded events."""

    def __init__(self, receipt, decoder):
        stamp = receipt["blockTimestamp"]
        self.timestamp = int(stamp, 16) if isinstance(stamp, str) else stamp
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
        super().__init__(chain, protocol, config, keeper, signer, fund, expiry, people)
        self.vault_model = VaultModel(
            self.model, self.vault_address, config.vault_lockup, config.vault_withdrawal_delay,
            config.vault_max_leverage, config.vault_loss_cap_per_event, config.vault_loss_cap_per_day,
        )
        for market_id, market in enumerate(config.markets):
            self.vault_model.set_max_position(market_id, market.vault_max_position)
        self.compare()

    # ------------------------------------------------------------ transport

    def send(self, sender, call):
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
        self.model.set_prices(market, index_price, mark_price, tx.timestamp)
        self.compare()
        return tx

    def refresh(self):
        """The keeper re-pushes every market's prices unchanged: fresh again after a wait."""
        updates = [(m, *self.model.latest_prices(m)) for m in self.markets]
        tx = self.send(self.keeper, self.c.oracle.push_prices.call(updates))
        self.model.push_prices(updates, tx.timestamp)
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

    def deposit(self, person, assets):
        """Mints `assets` tokens to `person`, approves exactly that and deposits; returns the shares."""
        c = self.c
        self.send(self.owner, c.token.mint.call(person.address, assets))
        self.send(person, c.token.approve.call(self.vault_address, assets))
        tx = self.send(person, c.vault.deposit.call(assets, person.address))
        shares = self.vault_model.deposit(person.address, assets, tx.timestamp)
        event = tx.one("Deposit", self.vault_address)
        assert (event.sender, event.owner, event.assets, event.shares) == (person.address, person.address, assets, shares)
        self.compare()
        return shares

    def mint(self, person, shares):
        """Mints `shares`, having given `person` exactly the assets the model says they cost; returns them."""
        c = self.c
        cost = self.vault_model.convert_to_assets(shares, self.vault_model.total_assets(self.now()), round_up=True)
        before = self.token_balance(person)
        self.send(self.owner, c.token.mint.call(person.address, cost))
        self.send(person, c.token.approve.call(self.vault_address, cost))
        tx = self.send(person, c.vault.mint.call(shares, person.address))
        assets = self.vault_model.mint(person.address, shares, tx.timestamp)
        event = tx.one("Deposit", self.vault_address)
        assert (event.owner, event.assets, event.shares) == (person.address, assets, shares)
        assert assets == cost and self.token_balance(person) == before  # pulled exactly what it cost
        self.compare()
        return assets

    def request(self, person, shares):
        """Returns the request id and the assets it recorded."""
        tx = self.send(person, self.c.vault.request_redeem.call(shares))
        request_id = self.vault_model.request_redeem(person.address, shares, tx.timestamp)
        recorded = self.vault_model.requests[request_id]
        event = tx.one("WithdrawalRequested")
        assert (event.request_id, event.owner, event.shares, event.assets, event.claimable_at) == (
            request_id, person.address, shares, recorded.assets, recorded.claimable_at
        )
        self.compare()
        return request_id, recorded.assets

    def claim(self, person, request_id):
        """Returns the assets paid (checked against the event and the person's token balance)."""
        shares = self.vault_model.requests[request_id].shares
        before = self.token_balance(person)
        tx = self.send(person, self.c.vault.claim.call(request_id))
        assets = self.vault_model.claim(person.address, request_id, tx.timestamp)
        event = tx.one("Withdraw")
        assert (event.sender, event.receiver, event.owner, event.assets, event.shares) == (
            person.address, person.address, person.address, assets, shares
        )
        assert self.token_balance(person) - before == assets
        self.compare()
        return assets

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

    # ------------------------------------------------------------ reads

    def read(self, *calls):
        values = self.fast.read(list(calls))
        return values[0] if len(calls) == 1 else values

    def read_as(self, caller, call):
        """A view called from `caller` (previews must not depend on it)."""
        result = self.fast.request("eth_call", [{"from": _address(caller), "to": call.function.address, "data": call.data}, "latest"])
        return call.function.decode(bytes.fromhex(result[2:]))

    def token_balance(self, who):
        return self.read(self.c.token.balanceOf.call(_address(who)))

    def shares(self, who):
        return self.vault_model.balance_of.get(_address(who), 0)

    def vault_value(self):
        return self.model.account_value(self.vault_address, self.now())

    def price(self):
        """(totalAssets + 1, totalSupply + 1e6): the vault's share price as the pair that defines it."""
        return self.vault_model.total_assets(self.now()) + VIRTUAL_ASSETS, self.vault_model.total_supply + VIRTUAL_SHARES

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
        for account in people:
            calls += [call(pool.balance_of, account), call(ch.bankrupt, account), call(ch.account_health, account)]
            calls += [call(ch.positions, account, market) for market in self.markets]
        for market in self.markets:
            calls += [call(ch.funding_index, market), call(ch.funding_updated_at, market)]
            calls += [call(ch.long_open_interest, market), call(ch.short_open_interest, market)]
        calls += [call(pool.total_held), call(pool.total_deposited), call(pool.total_withdrawn)]
        if vault is not None:
            v = c.vault
            calls += [call(v.totalSupply), call(v.totalAssets), call(v.next_request_id)]
            calls += [call(v.balanceOf, holder) for holder in holders]
            calls += [call(v.unlock_time, holder) for holder in holders]
            calls += [call(v.requests, i) for i in range(vault.next_request_id)]
            calls += [call(v.loss_day), call(v.lost_today), call(v.loss_allowance), call(v.max_leverage)]
            calls += [call(v.loss_cap_per_event), call(v.loss_cap_per_day), call(v.lockup_period), call(v.withdrawal_delay)]
            calls += [call(v.max_position, market) for market in self.markets]
            calls += [call(v.maxDeposit, people[0]), call(v.maxMint, people[0]), call(v.maxWithdraw, people[0]), call(v.maxRedeem, people[0])]
            calls += [call(v.convertToShares, 10**6), call(v.convertToAssets, 10**12), call(c.token.balanceOf, self.vault_address)]
        return calls

    def compare(self):
        model, vault = self.model, self.vault_model
        people = [person.address for person in self.people]
        holders = [account for account in people if account != self.vault_address] + [self.vault_address]
        calls = self._compare_calls(people, holders)
        now, values = self.fast.read_at(calls)
        got = iter(values)

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
        assert next(got) == vault.next_request_id
        balances = [next(got) for _ in holders]
        assert balances == [vault.balance_of.get(holder, 0) for holder in holders], "share balances"
        assert sum(balances) == vault.total_supply  # every holder is one of the people
        assert [next(got) for _ in holders] == [vault.unlock_time.get(holder, 0) for holder in holders], "unlock times"
        for request_id in range(vault.next_request_id):
            request = vault.requests.get(request_id)
            expected = (request.owner, request.shares, request.assets, request.claimable_at) if request else (ZERO_ADDRESS, 0, 0, 0)
            assert next(got) == expected, f"request {request_id}"
        # Escrowed shares are exactly the shares of the open requests.
        assert balances[-1] == sum(request.shares for request in vault.requests.values())
        assert next(got) == vault.loss_day and next(got) == vault.lost_today, "daily loss counter"
        assert next(got) == vault.loss_allowance(now)
        assert (next(got), next(got), next(got)) == (vault.max_leverage, vault.loss_cap_per_event, vault.loss_cap_per_day)
        assert (next(got), next(got)) == (vault.lockup_period, vault.withdrawal_delay)
        assert [next(got) for _ in self.markets] == [vault.max_position.get(market, 0) for market in self.markets]
        open_for_deposits = MAX_UINT if vault.accepts_deposits(now) else 0
        assert (next(got), next(got), next(got), next(got)) == (open_for_deposits, open_for_deposits, 0, 0), "max*"
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
    mirror.walk_mark(BTC, BTC_PRICE * (86 if kind == "deficit" else 91) // 100, 1)
    if kind == "penalty":
        mirror.liquidate(liquidator, alice, BTC, WAD)
    else:
        assert mirror.backstop(stranger, alice)[1] == ""


def move_btc(mirror, percent):
    """Moves BTC's index and mark together by `percent` (the vault's long, if any, gains or loses)."""
    price = mirror.model.latest_prices(BTC)[1]
    mirror.set_prices(BTC, price * (100 + percent) // 100, price * (100 + percent) // 100)


def exit_all(mirror, *people):
    """Waits out the lock-ups, requests all the shares of each of `people`, waits out the delay and
    claims; returns (recorded, paid) for one person, a list of them for several."""
    unlock = max(mirror.vault_model.unlock_time.get(person.address, 0) for person in people)
    if unlock > mirror.now():
        mirror.wait(unlock - mirror.now())
    mirror.refresh()
    requests = [mirror.request(person, mirror.shares(person)) for person in people]
    mirror.wait(mirror.vault_model.withdrawal_delay)
    mirror.refresh()
    results = [(recorded, mirror.claim(person, request_id)) for person, (request_id, recorded) in zip(people, requests)]
    return results[0] if len(people) == 1 else results


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
def test_deposit__preview_exact_and_round_trip_never_profits(yield_base, alice, bob, erin, liquidator, stranger, kind, move, assets):
    mirror = yield_base
    checkpoint = mirror.checkpoint()
    try:
        apply_yield(mirror, kind, alice, bob, liquidator, stranger)
        move_btc(mirror, move)
        preview = mirror.read(mirror.c.vault.previewDeposit.call(assets))
        price_before = mirror.price()
        assert mirror.deposit(erin, assets) == preview
        price_after = mirror.price()
        # The deposit never lowers the share price, and raises it by at most its rounding.
        assert Fraction(*price_after) >= Fraction(*price_before)
        assert Fraction(*price_after) - Fraction(*price_before) <= Fraction(*price_before) / price_after[1]  # one share's worth
        preview_redeem = mirror.read(mirror.c.vault.previewRedeem.call(preview))
        assert preview_redeem <= assets
        recorded, paid = exit_all(mirror, erin)
        assert recorded == preview_redeem  # nothing moved the price in between
        assert paid <= recorded <= assets
    finally:
        mirror.rollback(checkpoint)


@given(kind=YIELDS, move=MOVES, shares=st.integers(min_value=1, max_value=10**19))
def test_mint__preview_exact_and_round_trip_never_profits(yield_base, alice, bob, erin, liquidator, stranger, kind, move, shares):
    mirror = yield_base
    checkpoint = mirror.checkpoint()
    try:
        apply_yield(mirror, kind, alice, bob, liquidator, stranger)
        move_btc(mirror, move)
        preview = mirror.read(mirror.c.vault.previewMint.call(shares))
        price_before = mirror.price()
        assert mirror.mint(erin, shares) == preview
        assert Fraction(*mirror.price()) >= Fraction(*price_before)
        preview_redeem = mirror.read(mirror.c.vault.previewRedeem.call(shares))
        recorded, paid = exit_all(mirror, erin)
        assert recorded == preview_redeem
        assert paid <= recorded <= preview
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
        views = [
            v.previewDeposit.call(assets), v.convertToShares.call(assets), v.previewWithdraw.call(assets),
            v.previewMint.call(shares), v.previewRedeem.call(shares), v.convertToAssets.call(shares),
        ]
        results = mirror.read(*views)
        deposit, to_shares, withdraw, mint, redeem, to_assets = results
        # deposit and redeem round down, mint and withdraw round up (EIP-4626)
        assert deposit == to_shares <= exact_shares < deposit + 1
        assert withdraw - 1 < exact_shares <= withdraw
        assert redeem == to_assets <= exact_assets < redeem + 1
        assert mint - 1 < exact_assets <= mint
        vault, now = mirror.vault_model, mirror.now()
        model_total = vault.total_assets(now)
        assert results == [
            vault.convert_to_shares(assets, model_total), vault.convert_to_shares(assets, model_total),
            vault.convert_to_shares(assets, model_total, round_up=True), vault.convert_to_assets(shares, model_total, round_up=True),
            vault.convert_to_assets(shares, model_total), vault.convert_to_assets(shares, model_total),
        ]
        for caller in (carol, erin, stranger, mirror.owner, mirror.vault_address, ZERO_ADDRESS):
            assert [mirror.read_as(caller, view) for view in views] == results
            assert [mirror.read_as(caller, v.maxWithdraw.call(_address(caller))), mirror.read_as(caller, v.maxRedeem.call(_address(caller)))] == [0, 0]
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
    the penalty is the attacker's own money and the virtual shares keep almost all of it."""
    attacker = alice
    mirror.deposit(attacker, 1)
    open_long(mirror, attacker, bob, 6_000 * USDC)
    mirror.fund(liquidator, 100_000 * USDC)
    mirror.walk_mark(BTC, BTC_PRICE * 91 // 100, 1)
    tx, _ = mirror.liquidate(liquidator, attacker, BTC, WAD)
    penalty = tx.one("Liquidation").penalty
    assert penalty == 455 * USDC and mirror.vault_model.total_assets(mirror.now()) == 1 + penalty
    price = mirror.price()
    victim = 10_000 * USDC
    shares = mirror.deposit(erin, victim)
    assert shares == victim * price[1] // price[0]
    assert Fraction(*mirror.price()) >= Fraction(*price)
    (_, attacker_paid), (_, victim_paid) = exit_all(mirror, attacker, erin)
    # The attacker holds 1e6 of the 2e6 shares (virtual ones included) that owned the penalty: half
    # of their own penalty comes back, the rest stays with the virtual shares and the victim.
    assert attacker_paid <= (1 + penalty) // 2 + price[0] // price[1] + 1  # (+ its part of the victim's rounding)
    left_in_pool = mirror.model.balance(attacker.address)
    assert attacker_paid + left_in_pool < 1 + 6_000 * USDC  # far less than the attacker put in
    assert victim - victim_paid <= price[0] // price[1] + 1  # at most one share's worth of rounding


# ---------------------------------------------------------------- empty, drained, deficit

def test_deposit__empty_vault_with_income_mints_fair_shares(mirror, alice, bob, erin, liquidator):
    """No shares yet, but a penalty already credited: the first depositor neither pays for nor takes it."""
    open_long(mirror, alice, bob, 6_000 * USDC)
    mirror.fund(liquidator, 100_000 * USDC)
    mirror.walk_mark(BTC, BTC_PRICE * 91 // 100, 1)
    mirror.liquidate(liquidator, alice, BTC, WAD)
    assert mirror.vault_model.total_supply == 0 and mirror.vault_model.total_assets(mirror.now()) == 455 * USDC
    assets = 1_000 * USDC
    shares = mirror.deposit(erin, assets)
    assert shares == assets * VIRTUAL_SHARES // (455 * USDC + 1)
    value = mirror.read(mirror.c.vault.previewRedeem.call(shares))
    share_worth = 455 * USDC // VIRTUAL_SHARES + 1  # coarse shares: 1e6 virtual shares own the penalty
    assert assets - share_worth <= value <= assets
    _, paid = exit_all(mirror, erin)
    assert paid == value


def test_deposit__drained_vault_mints_fair_shares(mirror, alice, bob, dave, erin, stranger):
    """dave's 10k vault takes over alice's long at 91k and BTC falls until the vault is worth ~0:
    supply > 0, assets ≈ 0. A new deposit is neither diluted by nor dilutes the old shares."""
    mirror.deposit(dave, 10_000 * USDC)
    open_long(mirror, alice, bob, 6_000 * USDC)
    mirror.walk_mark(BTC, BTC_PRICE * 91 // 100, 1)
    assert mirror.backstop(stranger, alice)[1] == ""
    vault = mirror.vault_model
    position = mirror.model.position(mirror.vault_address, BTC)
    balance = mirror.model.balance(mirror.vault_address)
    # The price at which the vault's value is exactly 2 units: balance + size * (p - entry) / 1e30 = 2.
    drained = position.entry_price - (balance - 2) * 10**30 // position.size
    mirror.walk_mark(BTC, drained, 2)
    assert mirror.vault_value() == 2 and vault.total_supply == 10_000 * USDC * VIRTUAL_SHARES
    dave_before = mirror.read(mirror.c.vault.previewRedeem.call(mirror.shares(dave)))
    assert dave_before <= 2
    assets = 5_000 * USDC
    preview = mirror.read(mirror.c.vault.previewDeposit.call(assets))
    shares = mirror.deposit(erin, assets)
    assert shares == preview > 0
    assert assets - 1 <= mirror.read(mirror.c.vault.previewRedeem.call(shares)) <= assets
    assert mirror.read(mirror.c.vault.previewRedeem.call(mirror.shares(dave))) <= 2
    # A mint in the drained state costs what the shares are worth, rounded up.
    cost = mirror.mint(dave, shares)
    assert assets <= cost <= assets + 1


def test_deposit__vault_in_deficit_reverts_and_max_deposit_is_zero(mirror, alice, bob, dave, erin, stranger):
    mirror.deposit(dave, 10_000 * USDC)
    open_long(mirror, alice, bob, 6_000 * USDC)
    mirror.walk_mark(BTC, BTC_PRICE * 91 // 100, 1)
    assert mirror.backstop(stranger, alice)[1] == ""
    mirror.walk_mark(BTC, BTC_PRICE * 65 // 100, 2)  # the vault's long loses 13k on 11.5k
    assert mirror.vault_value() < 0
    v = mirror.c.vault
    assert mirror.read(v.totalAssets.call(), v.maxDeposit.call(erin.address), v.maxMint.call(erin.address)) == [0, 0, 0]
    mirror.send(mirror.owner, mirror.c.token.mint.call(erin.address, 10**9))
    mirror.send(erin, mirror.c.token.approve.call(mirror.vault_address, 10**9))
    for call, model_call in (
        (v.deposit.call(10**9, erin.address), lambda now: mirror.vault_model.deposit(erin.address, 10**9, now)),
        (v.mint.call(10**12, erin.address), lambda now: mirror.vault_model.mint(erin.address, 10**12, now)),
    ):
        mirror.reverts("InsuranceVault: vault in deficit", erin, call, model_call)
    # Recovery above zero opens deposits again.
    mirror.walk_mark(BTC, BTC_PRICE * 80 // 100, 2)
    assert mirror.vault_value() > 0
    assert mirror.deposit(erin, 10**9) > 0


@given(kind=YIELDS, move=MOVES)
def test_max_functions__never_revert_and_zero_when_not_allowed(yield_base, alice, bob, dave, erin, liquidator, stranger, kind, move):
    mirror = yield_base
    checkpoint = mirror.checkpoint()
    try:
        apply_yield(mirror, kind, alice, bob, liquidator, stranger)
        move_btc(mirror, move)
        v = mirror.c.vault
        open_for_deposits = MAX_UINT if mirror.vault_value() >= 0 else 0
        for owner in (dave, erin, stranger, mirror.vault_address, ZERO_ADDRESS):
            owner = _address(owner)
            assert mirror.read(v.maxDeposit.call(owner), v.maxMint.call(owner), v.maxWithdraw.call(owner), v.maxRedeem.call(owner)) == [
                open_for_deposits, open_for_deposits, 0, 0
            ]
    finally:
        mirror.rollback(checkpoint)


# ---------------------------------------------------------------- lock-up and exits

def test_request_redeem__before_lockup_reverts(mirror, dave):
    shares = mirror.deposit(dave, 1_000 * USDC)
    v = mirror.c.vault
    mirror.reverts(LOCKED, dave, v.request_redeem.call(shares), lambda now: mirror.vault_model.request_redeem(dave.address, shares, now))
    mirror.wait(mirror.vault_model.lockup_period - 10 * 60)
    mirror.reverts(LOCKED, dave, v.request_redeem.call(1), lambda now: mirror.vault_model.request_redeem(dave.address, 1, now))
    mirror.wait(10 * 60)
    request_id, recorded = mirror.request(dave, shares)
    assert recorded == 1_000 * USDC


def test_deposit__relocks_all_of_the_holders_shares(mirror, dave):
    mirror.deposit(dave, 1_000 * USDC)
    mirror.wait(mirror.vault_model.lockup_period)
    tx_time = mirror.now()
    mirror.deposit(dave, 1)  # a top-up locks the old shares again
    assert mirror.vault_model.unlock_time[dave.address] > tx_time + mirror.vault_model.lockup_period - 5
    mirror.reverts(LOCKED, dave, mirror.c.vault.request_redeem.call(1), lambda now: mirror.vault_model.request_redeem(dave.address, 1, now))


def test_transfer__locked_shares_revert(mirror, dave, erin, stranger):
    shares = mirror.deposit(dave, 1_000 * USDC)
    v = mirror.c.vault
    mirror.reverts(LOCKED, dave, v.transfer.call(erin.address, shares), lambda now: mirror.vault_model.transfer(dave.address, erin.address, shares, now))
    mirror.send(dave, v.approve.call(stranger.address, shares))
    mirror.reverts(LOCKED, stranger, v.transferFrom.call(dave.address, erin.address, shares))
    mirror.wait(mirror.vault_model.lockup_period)
    tx = mirror.transfer_shares(dave, erin, shares // 2)
    event = tx.one("Transfer")
    assert (event.sender, event.receiver, event.value) == (dave.address, erin.address, shares // 2)
    mirror.reverts(
        "erc20: transfer amount exceeds balance", dave, v.transfer.call(erin.address, shares),
        lambda now: mirror.vault_model.transfer(dave.address, erin.address, shares, now),
    )


def test_request_redeem__more_than_the_holders_shares_reverts(mirror, dave, erin):
    shares = mirror.deposit(dave, 1_000 * USDC)
    mirror.deposit(erin, 1_000 * USDC)
    mirror.wait(mirror.vault_model.lockup_period)
    mirror.reverts(
        "erc20: transfer amount exceeds balance", dave, mirror.c.vault.request_redeem.call(shares + 1),
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
    mirror.wait(mirror.vault_model.lockup_period)
    request_id, _ = mirror.request(dave, shares)
    claim = mirror.c.vault.claim.call(request_id)
    mirror.reverts("InsuranceVault: request not yet claimable", dave, claim, lambda now: mirror.vault_model.claim(dave.address, request_id, now))
    mirror.wait(mirror.vault_model.withdrawal_delay - 10 * 60)
    mirror.reverts("InsuranceVault: request not yet claimable", dave, claim, lambda now: mirror.vault_model.claim(dave.address, request_id, now))
    mirror.wait(10 * 60)
    assert mirror.claim(dave, request_id) == 1_000 * USDC
    assert mirror.vault_model.total_supply == 0


def test_claim__someone_elses_request_reverts(mirror, dave, stranger):
    shares = mirror.deposit(dave, 1_000 * USDC)
    mirror.wait(mirror.vault_model.lockup_period)
    request_id, _ = mirror.request(dave, shares)
    mirror.wait(mirror.vault_model.withdrawal_delay)
    mirror.reverts(
        "InsuranceVault: not your request", stranger, mirror.c.vault.claim.call(request_id),
        lambda now: mirror.vault_model.claim(stranger.address, request_id, now),
    )
    assert mirror.token_balance(stranger) == 0
    assert mirror.claim(dave, request_id) == 1_000 * USDC


def test_claim__unknown_or_already_claimed_request_reverts(mirror, dave):
    v = mirror.c.vault
    mirror.reverts("InsuranceVault: unknown request", dave, v.claim.call(0), lambda now: mirror.vault_model.claim(dave.address, 0, now))
    shares = mirror.deposit(dave, 1_000 * USDC)
    mirror.wait(mirror.vault_model.lockup_period)
    request_id, _ = mirror.request(dave, shares)
    mirror.wait(mirror.vault_model.withdrawal_delay)
    mirror.claim(dave, request_id)
    for unknown in (request_id, request_id + 1, MAX_UINT):
        mirror.reverts("InsuranceVault: unknown request", dave, v.claim.call(unknown), lambda now: mirror.vault_model.claim(dave.address, unknown, now))


def test_claim__pays_the_value_at_request_after_a_gain(yield_base, alice, bob, dave, stranger):
    """The vault gains while the request waits: the claim pays what the shares were worth at request;
    the gain stays with the holders who remain."""
    mirror = yield_base
    apply_yield(mirror, "buffer", alice, bob, None, stranger)
    mirror.wait(mirror.vault_model.lockup_period)
    mirror.refresh()
    request_id, recorded = mirror.request(dave, mirror.shares(dave) // 2)
    move_btc(mirror, 10)  # the vault's long gains 4.55k
    mirror.wait(mirror.vault_model.withdrawal_delay)
    mirror.refresh()
    shares = mirror.vault_model.requests[request_id].shares
    worth_now = mirror.read(mirror.c.vault.previewRedeem.call(shares))
    assert worth_now > recorded
    price = mirror.price()
    assert mirror.claim(dave, request_id) == recorded
    assert Fraction(*mirror.price()) > Fraction(*price)  # the forgone gain goes to the remaining shares


def test_claim__request_before_a_takeover_loss_still_bears_the_loss(mirror, alice, bob, dave, erin, stranger):
    """erin sees alice going bankrupt and asks to leave first: the deficit the vault covers in the
    meantime is still hers in proportion, because the claim pays min(value at request, value now)."""
    mirror.deposit(dave, 40_000 * USDC)
    mirror.deposit(erin, 10_000 * USDC)
    open_long(mirror, alice, bob, 6_000 * USDC)
    mirror.wait(mirror.vault_model.lockup_period)
    mirror.refresh()
    request_id, recorded = mirror.request(erin, mirror.shares(erin))
    assert recorded == 10_000 * USDC
    mirror.walk_mark(BTC, BTC_PRICE * 86 // 100, 1)  # alice: -1k
    tx, refusal = mirror.backstop(stranger, alice)
    assert refusal == "" and tx.one("Takeover").value == -1_000 * USDC
    assert tx.one("TakeoverRecorded").loss == 1_000 * USDC
    mirror.wait(mirror.vault_model.withdrawal_delay)
    mirror.refresh()
    paid = mirror.claim(erin, request_id)
    assert paid < recorded
    assert paid == 9_800 * USDC  # a fifth of the 1k deficit


def test_claim__that_would_breach_the_vaults_margin_waits(mirror, alice, bob, dave, erin, stranger):
    """The vault's account holds a taken-over long: the sole holder's claim of everything must wait."""
    mirror.deposit(dave, 10_000 * USDC)
    open_long(mirror, alice, bob, 6_000 * USDC)
    mirror.walk_mark(BTC, BTC_PRICE * 91 // 100, 1)
    assert mirror.backstop(stranger, alice)[1] == ""
    mirror.wait(mirror.vault_model.lockup_period)
    mirror.refresh()
    request_id, _ = mirror.request(dave, mirror.shares(dave))
    mirror.wait(mirror.vault_model.withdrawal_delay)
    mirror.refresh()
    mirror.reverts(
        "InsuranceVault: claim would breach the vault's margin, retry later", dave, mirror.c.vault.claim.call(request_id),
        lambda now: mirror.vault_model.claim(dave.address, request_id, now),
    )
    # The claim waits until the vault's margin allows it: here a new deposit frees it.
    mirror.deposit(erin, 10_000 * USDC)
    assert mirror.claim(dave, request_id) > 10_000 * USDC  # dave's 10k plus the 1.5k buffer, less dust


def test_claim__after_the_flagged_vault_recovers_is_paid(mirror, alice, bob, dave, erin, stranger):
    """The vault's value dips below zero for a moment and anyone flags it bankrupt; BTC recovers.
    While flagged the vault takes no deposit it could not pay out (maxDeposit = 0); once anyone
    clears the flag, a new depositor can come in and leave again."""
    mirror.deposit(dave, 10_000 * USDC)
    open_long(mirror, alice, bob, 6_000 * USDC)
    mirror.walk_mark(BTC, BTC_PRICE * 91 // 100, 1)
    assert mirror.backstop(stranger, alice)[1] == ""
    mirror.walk_mark(BTC, BTC_PRICE * 65 // 100, 2)
    assert mirror.vault_value() < 0
    mirror.flag_bankruptcy(mirror.protocol.vault, sender=stranger)
    mirror.walk_mark(BTC, BTC_PRICE, 3)
    assert mirror.vault_value() > 10_000 * USDC
    assert mirror.read(mirror.c.vault.maxDeposit.call(erin.address)) == 0
    mirror.clear_bankruptcy(mirror.protocol.vault, sender=stranger)
    assert mirror.read(mirror.c.vault.maxDeposit.call(erin.address)) == MAX_UINT
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
    mirror.reverts("InsuranceVault: zero shares", dave, v.request_redeem.call(0), lambda now: mirror.vault_model.request_redeem(dave.address, 0, now))


def test_deposit__for_someone_else_reverts(mirror, dave, erin):
    mirror.deposit(erin, 1_000 * USDC)
    c, v = mirror.c, mirror.c.vault
    mirror.send(mirror.owner, c.token.mint.call(dave.address, 10**9))
    mirror.send(dave, c.token.approve.call(mirror.vault_address, 10**9))
    mirror.wait(mirror.vault_model.lockup_period)
    unlock = mirror.vault_model.unlock_time[erin.address]
    for call in (v.deposit.call(10**9, erin.address), v.mint.call(10**12, erin.address)):
        mirror.reverts("InsuranceVault: deposit for yourself only", dave, call)
    assert mirror.vault_model.unlock_time[erin.address] == unlock  # erin's shares were not re-locked
    mirror.request(erin, 1)


def test_withdraw__and_redeem_are_closed(mirror, dave):
    mirror.deposit(dave, 1_000 * USDC)
    mirror.wait(mirror.vault_model.lockup_period)
    v = mirror.c.vault
    for call in (v.withdraw.call(1, dave.address, dave.address), v.redeem.call(1, dave.address, dave.address)):
        mirror.reverts(EXIT_CLOSED, dave, call)


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
        v.transfer_ownership.call(stranger.address),
    ):
        mirror.reverts("ownable: caller is not the owner", stranger, call)
    mirror.reverts("InsuranceVault: zero leverage", mirror.owner, v.set_risk_limits.call(0, 1, 1), lambda now: mirror.vault_model.set_risk_limits(0, 1, 1))
    mirror.set_risk_limits(3 * WAD, 10 * USDC, 20 * USDC)
    mirror.set_max_position(BTC, WAD)
    mirror.set_lockup(3600, 60)
