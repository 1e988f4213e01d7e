"""The Python client of the CXPT order gateway, and the `cxpt` command line (docs/client.md).

from services.client import CxptClient
with CxptClient("http://127.0.0.1:8080", private_key) as client:
    btc = client.market("BTC-PERP")
    client.place_limit("BTC-PERP", "buy", btc.lots("0.003"), btc.ticks("65000.5"))
"""

from services.client.client import CxptClient, SignedRequest
from services.client.errors import CxptError, RateLimited, Unreachable
from services.client.ids import uuid7
from services.client.models import (
    Balance,
    CommandResult,
    Holding,
    Info,
    Market,
    OrderPage,
    OrderResult,
    OrderRow,
    Position,
)
from services.client.units import (
    OffGrid,
    from_lots,
    from_ticks,
    micro_to_usdc,
    to_lots,
    to_ticks,
    usdc_to_micro,
)

__all__ = [
    "Balance",
    "CommandResult",
    "CxptClient",
    "CxptError",
    "Holding",
    "Info",
    "Market",
    "OffGrid",
    "OrderPage",
    "OrderResult",
    "OrderRow",
    "Position",
    "RateLimited",
    "SignedRequest",
    "Unreachable",
    "from_lots",
    "from_ticks",
    "micro_to_usdc",
    "to_lots",
    "to_ticks",
    "usdc_to_micro",
    "uuid7",
]
