"""The deployed contracts as the keeper's venue: backstop/keeper/waterfall.py decides, a venue
reads and acts.

`ChainVenue` is the deployed contracts through `FastChain` (raw JSON-RPC): reads go in one
multicall, and each wave of actions (the accruals, a round of liquidations, the takeovers) goes
into one block, because on Anvil every block costs milliseconds more than the transactions in it.
Transactions are sent with `eth_sendTransaction` from accounts the node holds unlocked (Anvil's
dev accounts, or impersonated ones): nothing here signs, so the chain venue is for Anvil.
"""

from __future__ import annotations

from typing import Sequence

from eth_utils import to_checksum_address

from backstop.chain.events import EventDecoder
from backstop.chain.fast_chain import Call, FastChain, RevertError
from backstop.keeper.waterfall import Health
from backstop.model.protocol import ZERO_ADDRESS, notional

# eth_getLogs block range per request: public RPC providers refuse much larger ranges.
LOG_BLOCK_RANGE = 10_000
# Transactions per block: Anvil builds a block's receipts in time quadratic in its size.
BLOCK_TXS = 100


class ChainVenue:
    """The deployed contracts (the dict of deployments/<network>.json) on an Anvil node."""

    GAS = 3_000_000  # per keeper action: a takeover in every market fits

    def __init__(self, chain: FastChain, deployment: dict):
        self.chain = chain
        contracts = deployment["contracts"]
        self.clearinghouse = chain.contract(contracts["clearinghouse"]["address"], contracts["clearinghouse"]["abi"])
        self.liquidation = chain.contract(contracts["liquidation"]["address"], contracts["liquidation"]["abi"])
        self.oracle = chain.contract(contracts["oracle"]["address"], contracts["oracle"]["abi"])
        self.vault_contract = chain.contract(contracts["vault"]["address"], contracts["vault"]["abi"])
        self.vault = self.vault_contract.address
        self.events = EventDecoder(self.clearinghouse.address, contracts["clearinghouse"]["abi"])
        self.liquidation_events = EventDecoder(self.liquidation.address, contracts["liquidation"]["abi"])
        chain.enable_multicall()
        (self.market_count,) = chain.read([self.clearinghouse.market_count.call()])

    # ------------------------------------------------------------ reads

    def read(self, accounts: list[str]) -> tuple[list[Health], list[int], int, int]:
        """Every account's health and bankrupt flag, the marks, the backstop ratio and the vault's
        loss allowance, in one multicall."""
        ch = self.clearinghouse
        calls = [self.liquidation.backstop_ratio.call(), self.vault_contract.loss_allowance.call()]
        calls += [self.oracle.latest_prices.call(m) for m in range(self.market_count)]
        for account in accounts:
            calls += [ch.account_health.call(account), ch.bankrupt.call(account)]
        values = self.chain.read(calls)
        ratio, allowance = values[0], values[1]
        marks = [mark for _, mark in values[2:2 + self.market_count]]
        rest = values[2 + self.market_count:]
        healths = [Health(account, *rest[2 * i], rest[2 * i + 1]) for i, account in enumerate(accounts)]
        return healths, marks, ratio, allowance

    def health(self, account: str) -> Health:
        return self.read([account])[0][0]

    def healths(self, accounts: list[str]) -> list[Health]:
        return self.read(accounts)[0]

    def positions(self, accounts: list[str]) -> dict[str, dict[int, int]]:
        markets = range(self.market_count)
        sizes = self.chain.read([self.clearinghouse.positions.call(a, m) for a in accounts for m in markets])
        return {a: {m: sizes[i * self.market_count + m][0] for m in markets if sizes[i * self.market_count + m][0]}
                for i, a in enumerate(accounts)}

    def initial_margin_fractions(self) -> dict[int, int]:
        params = self.chain.read([self.clearinghouse.markets.call(m) for m in range(self.market_count)])
        return {m: p[0] for m, p in enumerate(params)}

    def vault_equity(self) -> int:
        """The vault's account value (collateral units; negative while under water)."""
        (value,) = self.chain.read([self.clearinghouse.account_value.call(self.vault)])
        return value

    def now(self) -> int:
        return self.chain.block()[1]

    # ------------------------------------------------------------ auctions (backstop/keeper/auctions.py)

    def auction_params(self) -> tuple[int, int, int]:
        """(premium cap, ramp, minimum notional) of the LiquidationEngine's auctions."""
        liquidation = self.liquidation
        premium, ramp, min_notional = self.chain.read(
            [liquidation.auction_premium.call(), liquidation.auction_ramp.call(), liquidation.auction_min_notional.call()]
        )
        return premium, ramp, min_notional

    def auctions(self, accounts: list[str]):
        """The auctions running now of `accounts`, in every market, in one multicall."""
        from backstop.keeper.auctions import RunningAuction

        markets = range(self.market_count)
        pairs = [(to_checksum_address(a), m) for a in accounts for m in markets]
        if not pairs:
            return []
        now = self.now()
        found = self.chain.read([self.liquidation.auctions.call(a, m) for a, m in pairs])
        return [RunningAuction(a, m, lot, start, end, volunteer)
                for (a, m), (lot, start, end, volunteer) in zip(pairs, found) if lot != 0 and now < end]

    def entries(self, account: str) -> dict[int, tuple[int, int]]:
        """market -> (signed size, entry price) of the account's open positions."""
        markets = range(self.market_count)
        found = self.chain.read([self.clearinghouse.positions.call(account, m) for m in markets])
        return {m: (found[m][0], found[m][1]) for m in markets if found[m][0]}

    def unwind_need(self, market: int) -> int:
        """What anyone may offer of the vault's position in `market` (above its targets): what
        `start_unwind` from an account without the keeper role would offer, 0 if it refuses (also
        while an unwind runs there: ask only when none does)."""
        call = self.liquidation.start_unwind.call(market, 2**255, ZERO_ADDRESS)
        try:
            result = self.chain.request("eth_call", [{"from": "0x" + "00" * 19 + "01", "to": call.function.address, "data": call.data}, "latest"])
        except RevertError:
            return 0
        return int(result, 16)

    def vault_open_notional(self) -> int:
        """Σ |size| x mark of the vault's positions (collateral units)."""
        markets = range(self.market_count)
        reads = self.chain.read([self.clearinghouse.positions.call(self.vault, m) for m in markets]
                                + [self.oracle.latest_prices.call(m) for m in markets])
        return sum(notional(reads[m][0], reads[self.market_count + m][1]) for m in markets)

    def discover_accounts(self, from_block: int, to_block: int | None = None) -> list[str]:
        """Every account with a PositionUpdate (a trade, liquidation or takeover) in the block range
        (`to_block` None: up to the latest block), in order of first appearance."""
        if to_block is None:
            to_block, _ = self.chain.block()
        topic = self.events.topics["PositionUpdate"]
        accounts: dict[str, None] = {}
        for start in range(from_block, to_block + 1, LOG_BLOCK_RANGE):
            end = min(start + LOG_BLOCK_RANGE - 1, to_block)
            logs = self.chain.request("eth_getLogs", [{"address": self.clearinghouse.address, "topics": [topic],
                                                       "fromBlock": hex(start), "toBlock": hex(end)}])
            for log in logs:
                accounts[to_checksum_address("0x" + log["topics"][1][-40:])] = None
        return list(accounts)

    # ------------------------------------------------------------ actions

    def act(self, sender: str, action: str, *args):
        return self.act_all([(sender, action, args)])[0]

    def act_all(self, actions: list[tuple[str, str, tuple]]) -> list:
        """Calls of the clearinghouse (`accrue_funding`) and of the liquidation engine (the rest),
        mined together; per action the engine's and the clearinghouse's decoded events, or a
        RevertError."""
        txs = [(sender, getattr(self.clearinghouse if action == "accrue_funding" else self.liquidation, action).call(*args))
               for sender, action, args in actions]
        return [outcome if isinstance(outcome, RevertError) else self.liquidation_events.decode(outcome["logs"]) + self.events.decode(outcome["logs"])
                for outcome in send_in_blocks(self.chain, txs, self.GAS)]


def send_in_blocks(chain: FastChain, txs: Sequence[tuple[str, Call]], gas: int) -> list[dict | RevertError]:
    """Sends `txs` from unlocked accounts with automine off, up to BLOCK_TXS per block, and mines
    them; returns each one's receipt, or a RevertError if it reverted. Order is kept per sender
    (explicit nonces); transactions of different senders must not depend on each other within a
    block. The reason of a revert comes from replaying the call on the state after its block.
    A block holds what fits the node's block gas limit; the rest goes into the next."""
    outcomes = []
    for start in range(0, len(txs), BLOCK_TXS):
        outcomes += _mine_together(chain, txs[start:start + BLOCK_TXS], gas)
    chain.sent += len(txs)
    return outcomes


def _mine_together(chain: FastChain, txs: Sequence[tuple[str, Call]], gas: int) -> list[dict | RevertError]:
    senders = list(dict.fromkeys(sender for sender, _ in txs))
    nonces = dict(zip(senders, (int(n, 16) for n in chain.batch([("eth_getTransactionCount", [s, "pending"]) for s in senders]))))
    requests = []
    for sender, call in txs:
        requests.append({"from": sender, "to": call.function.address, "data": call.data, "gas": hex(gas), "nonce": hex(nonces[sender])})
        nonces[sender] += 1
    chain.request("evm_setAutomine", [False])
    try:
        hashes = chain.batch([("eth_sendTransaction", [tx]) for tx in requests])
        refused = next((h for h in hashes if isinstance(h, Exception)), None)
        sent = [h for h in hashes if not isinstance(h, Exception)]
        receipts: dict[str, dict] = {}
        while any(h not in receipts for h in sent):
            chain.request("evm_mine")
            mined = chain.request("eth_getBlockReceipts", ["latest"])
            if not mined:
                raise RuntimeError("transactions left in the pool: the node mines nothing more")
            receipts.update((receipt["transactionHash"], receipt) for receipt in mined)
    finally:
        chain.request("evm_setAutomine", [True])
    if refused is not None:
        raise refused
    outcomes = []
    for tx, tx_hash in zip(requests, hashes):
        receipt = receipts[tx_hash]
        if int(receipt["status"], 16) == 1:
            outcomes.append(receipt)
            continue
        try:
            chain.request("eth_call", [{key: tx[key] for key in ("from", "to", "data", "gas")}, "latest"])
            outcomes.append(RevertError("<reverted in its block; the replay after it did not>"))
        except RevertError as revert:
            outcomes.append(revert)
    return outcomes
