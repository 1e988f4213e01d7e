"""Stable business codes. The thousands digit names the stage (exchange-core style):

* 1xxx — order gateway: signature (100x), replay protection (100x), idempotency (101x), rate
  limiting (102x), request validation (103x), authentication (104x), market lookup (105x);
* 2xxx — risk (pre-trade collateral checks, and the authoritative replay check of signed nonces);
* 3xxx — matcher rejections; 31xx — why an order left the book without filling completely.

Codes are part of the public API (events, REST errors): never renumber, only add.
`docs/error-codes.md` lists them.
"""

from __future__ import annotations

from enum import IntEnum


class GatewayReject(IntEnum):
    """Why a trader's request was refused at the gateway stage: signature, replay, request checks
    (rules in docs/signing.md)."""

    INVALID_SIGNATURE = 1001
    """Not a 65-byte r‖s‖v signature with v in {27, 28}, or no address can be recovered from it."""
    SIGNER_MISMATCH = 1002
    """The recovered signer is not the struct's trader (also what a wrong chain id or contract gives)."""
    SIGNATURE_EXPIRED = 1003
    """The struct's deadline is before the command time."""
    NONCE_REUSED = 1004
    """The signer already used this nonce."""
    NONCE_TOO_OLD = 1005
    """Older than 2 days, or not above the smallest of the signer's 100 most recent nonces."""
    NONCE_TOO_FAR_AHEAD = 1006
    """More than 1 day after the command time."""
    MALLEABLE_SIGNATURE = 1007
    """High-s signature (EIP-2): the low-s twin of the same signature is the only one accepted."""
    IDEMPOTENCY_KEY_REUSED = 1010
    """The Idempotency-Key was already used by this trader for a different request (HTTP 422)."""
    IDEMPOTENCY_IN_PROGRESS = 1011
    """The first request with this Idempotency-Key has not been answered yet (HTTP 409)."""
    RATE_LIMITED = 1020
    """Too many requests for this IP or API key; Retry-After says when to come back (HTTP 429)."""
    INVALID_REQUEST = 1030
    """The request does not parse or a field is out of range (HTTP 400)."""
    BODY_TOO_LARGE = 1031
    """The request body exceeds the gateway's limit (HTTP 413)."""
    UNAUTHENTICATED = 1040
    """No valid credentials (HTTP 401)."""
    FORBIDDEN = 1041
    """Valid credentials, but not allowed to do this (HTTP 403)."""
    UNKNOWN_MARKET = 1050
    """No market with this symbol."""
    MARKET_NOT_ACTIVE = 1051
    """The market exists but does not take this command now (paused, settled, deleted)."""
    UNKNOWN_ORDER = 1060
    """No order with this id among the trader's (or not projected yet)."""


class RiskReject(IntEnum):
    """Why risk refused a command before it reached the matcher (rules in docs/risk.md)."""

    INSUFFICIENT_COLLATERAL = 2001
    UNKNOWN_MARKET = 2002
    MARKET_NOT_ACTIVE = 2003
    INSUFFICIENT_INVENTORY = 2004
    REDUCE_ONLY_WOULD_INCREASE = 2005
    INVALID_ORDER = 2006
    DUPLICATE_ORDER_ID = 2007
    UNKNOWN_ORDER = 2008
    AMEND_PENDING = 2009
    INVALID_WITHDRAWAL = 2010
    DUPLICATE_WITHDRAWAL_ID = 2011
    WITHDRAWAL_EXPIRED = 2012
    NONCE_REUSED = 2013
    """The trader already used this nonce (risk is the authority: docs/risk.md, Replay)."""
    NONCE_TOO_OLD = 2014
    """Older than 2 days before the command time, or not above the smallest of the trader's 100
    most recent nonces (or below a floor risk keeps where it forgot older ones)."""
    NONCE_TOO_FAR_AHEAD = 2015
    """More than 1 day after the command time."""
    UNSUPPORTED_COMMAND = 2099


class MatcherReject(IntEnum):
    """Why the matcher refused a command."""

    UNKNOWN_MARKET = 3001
    MARKET_NOT_ACTIVE = 3002
    INVALID_SIZE = 3003
    BELOW_MIN_SIZE = 3004
    INVALID_PRICE = 3005
    DUPLICATE_CLIENT_ORDER_ID = 3006
    DUPLICATE_ORDER_ID = 3007
    INVALID_EXPIRY = 3008
    INVALID_ORDER_FLAGS = 3009
    POST_ONLY_WOULD_CROSS = 3010
    FOK_WOULD_NOT_FILL = 3011
    MARKET_MISMATCH = 3012
    MISSING_TRADER = 3013
    MARKET_EXPIRED = 3014
    UNKNOWN_ORDER = 3020
    AMEND_WOULD_CROSS = 3031
    INVALID_AMEND = 3032
    MARKET_EXISTS = 3040
    ILLEGAL_STATUS_TRANSITION = 3041
    INVALID_MARKET_DEFINITION = 3042
    NOT_A_PERPETUAL = 3043
    FUNDING_ALREADY_APPLIED = 3044
    FUNDING_NOT_DUE = 3045
    NOT_SETTLEABLE = 3046
    NOT_EXPIRED = 3047
    UNSUPPORTED_COMMAND = 3099


class CancelReason(IntEnum):
    """Why (the rest of) an order left the book."""

    USER_CANCELLED = 3100
    IOC_REMAINDER = 3101
    SELF_TRADE_PREVENTED = 3102
    EXPIRED = 3103
    MARKET_CLOSED = 3104


def markdown_table() -> str:
    """Every code as a Markdown table, for docs/error-codes.md."""
    rows = ["| code | name | stage |", "|---|---|---|"]
    for enum, stage in (
        (GatewayReject, "gateway: request refused"),
        (RiskReject, "risk: command refused"),
        (MatcherReject, "matcher: command refused"),
        (CancelReason, "matcher: order left the book"),
    ):
        rows += [f"| {code.value} | `{code.name}` | {stage} |" for code in enum]
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
