"""A thin trading client over a deployed Clearinghouse: signs orders with raw keys and builds fills.

Shared by the tests and the scripts so both trade through exactly the same code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import count

from backstop.chain.orders import domain_separator, fill_tuple, sign_order
from backstop.model.protocol import Order

ONE_YEAR = 365 * 24 * 3600


@dataclass
class Fill:
    """A matched pair of orders and the ABI tuple that `settle_fills` takes."""

    buy: Order
    sell: Order
    size: int
    price: int
    abi: tuple
    buyer_is_taker: bool = True


@dataclass
class OrderSigner:
    """Signs orders for accounts whose private keys it knows, with fresh nonces."""

    chain_id: int
    clearinghouse: str
    keys: dict[str, str]
    nonces: count = field(default_factory=lambda: count(1))

    def __post_init__(self):
        self.separator = domain_separator(self.chain_id, self.clearinghouse)

    def order(self, account: str, market: int, size: int, limit_price: int, expiry: int, reduce_only: bool = False) -> Order:
        return Order(str(account), market, size, limit_price, next(self.nonces), expiry, reduce_only)

    def sign(self, order: Order) -> tuple:
        return sign_order(order, self.keys[order.account], self.separator)

    def fill(self, buyer: str, seller: str, market: int, size: int, price: int, expiry: int, *, buy_reduce_only: bool = False,
             sell_reduce_only: bool = False, buyer_is_taker: bool = True) -> Fill:
        """A fill of two fresh orders, each for exactly `size` at limit `price`; the buyer takes
        liquidity (pays the taker fee) unless `buyer_is_taker` is False."""
        buy = self.order(buyer, market, size, price, expiry, buy_reduce_only)
        sell = self.order(seller, market, -size, price, expiry, sell_reduce_only)
        abi = fill_tuple(self.sign(buy), self.sign(sell), size, price, buyer_is_taker)
        return Fill(buy, sell, size, price, abi, buyer_is_taker)
