"""EIP-712 orders as the Clearinghouse defines them: digest, signing and the ABI tuples of a fill
(the `Order` struct itself is plain data, in backstop/model/protocol.py).

Signing is done here with the raw private key (eth_keys, coincurve backend), not through an ape
account, because scenarios sign thousands of orders.
"""

from __future__ import annotations

from eth_abi import encode
from eth_keys import keys
from eth_utils import keccak, to_canonical_address

from backstop.model.protocol import Order

ORDER_TYPE = (
    "Order(address account,uint256 market,int256 size,uint256 limit_price,"
    "uint256 nonce,uint256 expiry,bool reduce_only)"
)
ORDER_TYPEHASH = keccak(text=ORDER_TYPE)
DOMAIN_TYPEHASH = keccak(text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
DOMAIN_NAME = "Backstop"
DOMAIN_VERSION = "1"


def domain_separator(chain_id: int, verifying_contract: str, name: str = DOMAIN_NAME, version: str = DOMAIN_VERSION) -> bytes:
    """The EIP-712 domain separator of a Clearinghouse deployment."""
    return keccak(
        encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [DOMAIN_TYPEHASH, keccak(text=name), keccak(text=version), chain_id, verifying_contract],
        )
    )


def order_tuple(order: Order) -> tuple:
    """The Order struct as an ABI tuple, field order as in the contract."""
    return (order.account, order.market, order.size, order.limit_price, order.nonce, order.expiry, order.reduce_only)


def order_digest(order: Order, separator: bytes) -> bytes:
    """The digest the order's account signs (`Clearinghouse.order_hash`)."""
    struct_hash = keccak(
        encode(
            ["bytes32", "address", "uint256", "int256", "uint256", "uint256", "uint256", "bool"],
            [ORDER_TYPEHASH, *order_tuple(order)],
        )
    )
    return keccak(b"\x19\x01" + separator + struct_hash)


def sign_order(order: Order, private_key: str, separator: bytes) -> tuple:
    """The SignedOrder struct (order, v, r, s) as an ABI tuple. eth_keys signs with low s."""
    key = keys.PrivateKey(bytes.fromhex(private_key.removeprefix("0x")))
    if key.public_key.to_canonical_address() != to_canonical_address(order.account):
        raise ValueError(f"sign_order: the key does not own {order.account}")
    signature = key.sign_msg_hash(order_digest(order, separator))
    return (order_tuple(order), signature.v + 27, signature.r, signature.s)


def fill_tuple(buy_signed: tuple, sell_signed: tuple, size: int, price: int, buyer_is_taker: bool = True) -> tuple:
    """The Fill struct as an ABI tuple."""
    return (buy_signed, sell_signed, size, price, buyer_is_taker)
