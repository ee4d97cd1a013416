"""The winners of the chain replay's ADL rounds from a book kept up to date by events, so a round
costs the accounts that changed since the last one, not a read of every account.

`ChainAdlExecutor.winner_states` (backstop/keeper/adl_executor.py) reads the bankrupt flag, the
health and every position of every watched account for every market of every round: at 10,000
traders and about a thousand rounds that is tens of millions of view calls and two checksums per
account per round. `BookedChainAdlExecutor` gives the same winner states from `ChainBook`:

- positions come from the clearinghouse's `PositionUpdate` logs (new size and entry price), which
  every change of a position emits;
- an account's value and bankrupt flag are read once and kept until a log names the account (a
  position update, a pool balance move, a flag change: every way the contracts change an account
  names it in an indexed topic), and all of them are dropped when a price moves, funding accrues,
  a loss is spread over a side (its loss index), a market's parameters change or the block time
  moves (funding accrues with time).

tests/test_chain_winner_book.py replays a crash with the book and checks every call against the
executor's own `winner_states`.
"""

from __future__ import annotations

from typing import Callable, Iterable

from backstop.chain.events import EventDecoder
from backstop.chain.fast_chain import FastChain
from backstop.keeper.adl_executor import ChainAdlExecutor
from backstop.keeper.adl_planner import WinnerState
from backstop.model.protocol import notional

# Blocks per eth_getLogs request (Anvil answers any range; public nodes refuse large ones).
LOG_BLOCKS = 2_000
# Views per multicall when values are read again.
READ_CHUNK = 2_000
# Logs that move every account's value at once (LossSocialised: a side's loss index rose, which
# moves the value of every position on that side; a volunteer auction's round spreads the market's
# move that way when it closes).
_EVERY_VALUE = {("oracle", "PriceUpdate"), ("clearinghouse", "FundingAccrued"), ("clearinghouse", "UpdateMarket"),
                ("clearinghouse", "LossSocialised")}


class ChainBook:
    """Positions, values and bankrupt flags of the watched accounts, as the contracts hold them now.

    `accounts()` gives the watched accounts (checksummed), in the order winner lists follow."""

    def __init__(self, chain: FastChain, deployment: dict, accounts: Callable[[], Iterable[str]]):
        contracts = deployment["contracts"]
        self.chain, self.accounts = chain, accounts
        self.clearinghouse = chain.contract(contracts["clearinghouse"]["address"], contracts["clearinghouse"]["abi"])
        self.oracle = chain.contract(contracts["oracle"]["address"], contracts["oracle"]["abi"])
        decoders = {name: EventDecoder(contracts[name]["address"], contracts[name]["abi"]) for name in ("clearinghouse", "pool", "oracle")}
        self._addresses = [contracts[name]["address"] for name in decoders]
        self._every_value = {decoders[name].topics[event] for name, event in _EVERY_VALUE}
        self._position_update = decoders["clearinghouse"].topics["PositionUpdate"]
        (self.market_count,) = chain.read([self.clearinghouse.market_count.call()])
        self.positions: dict[tuple[str, int], tuple[int, int]] = {}  # (account, market) -> (size, entry price)
        self.held: dict[str, set[int]] = {}  # account -> markets with a position
        self.values: dict[str, tuple[int, bool]] = {}  # account -> (value, bankrupt), while valid
        self.marks: list[int] | None = None
        self._synced_block = -1
        self._timestamp = None
        self._checksummed: dict[str, str] = {}  # lowercase address -> the watched (checksummed) form

    def sync(self) -> None:
        """Reads the logs since the last sync and forgets what they changed; the first time, every
        watched account's positions (a node need not keep old blocks' logs)."""
        block = self.chain.request("eth_getBlockByNumber", ["latest", False])
        number, timestamp = int(block["number"], 16), int(block["timestamp"], 16)
        if timestamp != self._timestamp:
            self._forget_values()
            self._timestamp = timestamp
        if self._watch_list_changed() or self._synced_block < 0:
            self.positions.clear()
            self.held.clear()
            self._read_positions(block["number"])
            self._synced_block = number
            return
        for start in range(self._synced_block + 1, number + 1, LOG_BLOCKS):
            logs = self.chain.request("eth_getLogs", [{"address": self._addresses, "fromBlock": hex(start),
                                                       "toBlock": hex(min(start + LOG_BLOCKS - 1, number))}])
            self._apply(logs)
        self._synced_block = number

    def _apply(self, logs: list[dict]) -> None:
        known = self._known()
        for log in logs:
            topics = log["topics"]
            if topics[0] in self._every_value:
                self._forget_values()
                continue
            for topic in topics[1:]:
                account = known.get("0x" + topic[-40:])
                if account is not None:
                    self.values.pop(account, None)
            if topics[0] == self._position_update:
                account = known.get("0x" + topics[1][-40:])
                if account is not None:
                    self._set_position(account, int(topics[2], 16), log["data"])

    def _read_positions(self, block: str) -> None:
        accounts, markets = list(self._known().values()), range(self.market_count)
        calls = [self.clearinghouse.positions.call(account, market) for account in accounts for market in markets]
        results = []
        for start in range(0, len(calls), READ_CHUNK):
            results += self.chain.read(calls[start:start + READ_CHUNK], block)
        for index, (account, market) in enumerate((account, market) for account in accounts for market in markets):
            size, entry, _ = results[index]
            self._store(account, market, size, entry)

    def _set_position(self, account: str, market: int, data: str) -> None:
        """From a PositionUpdate's data: size (int256), entry price (uint256), settled."""
        self._store(account, market, int.from_bytes(bytes.fromhex(data[2:66]), "big", signed=True), int(data[66:130], 16))

    def _store(self, account: str, market: int, size: int, entry: int) -> None:
        held = self.held.setdefault(account, set())
        if size:
            self.positions[(account, market)] = (size, entry)
            held.add(market)
        else:
            self.positions.pop((account, market), None)
            held.discard(market)

    def _watch_list_changed(self) -> bool:
        """Whether `accounts()` gives other accounts than the book holds (then it reads them all)."""
        accounts = list(self.accounts())
        if len(accounts) == len(self._checksummed) and all(account.lower() in self._checksummed for account in accounts):
            return False
        self._checksummed = {account.lower(): account for account in accounts}
        return True

    def _known(self) -> dict[str, str]:
        return self._checksummed

    def _forget_values(self) -> None:
        self.values.clear()
        self.marks = None

    def refresh(self, accounts: list[str]) -> None:
        """Reads the value and bankrupt flag of those of `accounts` not known, and the marks."""
        ch = self.clearinghouse
        missing = [account for account in accounts if account not in self.values]
        calls = [] if self.marks is not None else [self.oracle.latest_prices.call(m) for m in range(self.market_count)]
        for account in missing:
            calls += [ch.account_health.call(account), ch.bankrupt.call(account)]
        if not calls:
            return
        results = []
        for start in range(0, len(calls), READ_CHUNK):
            results += self.chain.read(calls[start:start + READ_CHUNK])
        if self.marks is None:
            self.marks = [mark for _, mark in results[: self.market_count]]
            results = results[self.market_count:]
        for index, account in enumerate(missing):
            self.values[account] = (results[2 * index][0], results[2 * index + 1])

    def winner_states(self, bankrupt: str, market: int, bankrupt_size: int) -> list[WinnerState]:
        """What `ChainAdlExecutor.winner_states(bankrupt, market, bankrupt_size)` reads, from the book."""
        self.sync()
        positions, held = self.positions, self.held
        winners_long = not bankrupt_size > 0
        candidates = []
        for account in self._known().values():
            position = positions.get((account, market))
            if position is not None and account != bankrupt and (position[0] > 0) == winners_long:
                candidates.append(account)
        self.refresh(candidates)
        marks, states = self.marks, []
        for account in candidates:
            value, flagged = self.values[account]
            if flagged:
                continue
            size, entry = positions[(account, market)]
            other = gross = 0
            for other_market in held[account]:
                if other_market != market:
                    other_size = positions[(account, other_market)][0]
                    amount = notional(other_size, marks[other_market])
                    other += amount if other_size > 0 else -amount
                    gross += amount
            states.append(WinnerState(account, size, entry, value, other, gross))
        return states


class BookedChainAdlExecutor(ChainAdlExecutor):
    """`ChainAdlExecutor` whose winner states come from a `ChainBook` (the same states, read once
    per change instead of once per round)."""

    def __init__(self, chain: FastChain, deployment: dict, keeper: str, accounts, **options):
        super().__init__(chain, deployment, keeper, accounts, **options)
        self.book = ChainBook(chain, deployment, accounts)

    def winner_states(self, bankrupt: str, market: int, bankrupt_size: int) -> list[WinnerState]:
        return self.book.winner_states(bankrupt, market, bankrupt_size)
