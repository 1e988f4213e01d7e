"""The client's one exception family: the gateway refused (4xx/5xx), or could not be reached.

Every refusal the gateway sends is `{"code", "error", "message"}` with a stable code
(docs/error-codes.md): 1xxx the gateway, 2xxx risk, 3xxx the matcher. `CxptError` carries the
four, and `hint` says what usually fixes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.client.client import SignedRequest


class CxptError(Exception):
    """The gateway answered 4xx/5xx (or, for `Unreachable`, not at all)."""

    def __init__(
        self,
        code: int,
        error: str,
        message: str,
        status: int | None,
        *,
        body: dict[str, Any] | None = None,
        request: SignedRequest | None = None,
    ) -> None:
        super().__init__(
            f"{error} ({code}): {message}" if status is None else f"{status} {error} ({code}): {message}"
        )
        self.code = code
        self.error = error
        self.message = message
        self.status = status
        self.body = body or {}
        """The whole JSON answer (an order refusal also carries orderId, status, …)."""
        self.request = request
        """The signed write that was refused, if it was one: `CxptClient.resend` sends it again
        unchanged (same body, same Idempotency-Key), which is safe whatever happened to the first."""

    @property
    def hint(self) -> str:
        """What usually fixes this error, in a sentence."""
        return HINTS.get(self.error, _generic_hint(self.status))


class RateLimited(CxptError):
    """HTTP 429: come back after `retry_after_s` seconds."""

    def __init__(self, retry_after_s: float, *, code: int, error: str, message: str, **kw: Any) -> None:
        super().__init__(code, error, message, 429, **kw)
        self.retry_after_s = retry_after_s

    @property
    def hint(self) -> str:
        return f"slow down: retry in {self.retry_after_s:g} s (CxptClient(max_retries=…) waits by itself)"


class Unreachable(CxptError):
    """No answer (connection refused, timeout). For a write the outcome is unknown: `resend` the
    `request` (same Idempotency-Key) to learn it, or look at `GET /orders`."""

    def __init__(self, message: str, *, request: SignedRequest | None = None) -> None:
        super().__init__(0, "UNREACHABLE", message, None, request=request)

    @property
    def hint(self) -> str:
        if self.request is None:
            return "is the gateway running? check --gateway / CXPT_GATEWAY_URL"
        return (
            "the command may or may not have reached the exchange: resend it unchanged "
            "(client.resend(error.request)) or check `cxpt orders`"
        )


HINTS: dict[str, str] = {
    "INVALID_SIGNATURE": "the signature is malformed: is the client's signing code current?",
    "SIGNER_MISMATCH": "signed under another domain or key: is --gateway the deployment you meant?",
    "MALLEABLE_SIGNATURE": "high-s signature: sign with eth-account (it always gives low s)",
    "SIGNATURE_EXPIRED": "the deadline passed before the gateway saw it: check your clock (`cxpt info`)",
    "NONCE_REUSED": "sign again (a new nonce); do not copy signed bodies",
    "NONCE_TOO_OLD": "your clock is behind the gateway's: sync it (`cxpt info` shows the server's time)",
    "NONCE_TOO_FAR_AHEAD": "your clock is ahead of the gateway's: sync it (`cxpt info`)",
    "IDEMPOTENCY_KEY_REUSED": "one Idempotency-Key was used for two different requests: a client bug",
    "IDEMPOTENCY_IN_PROGRESS": "the first attempt is still running: retry the same request in a moment",
    "RATE_LIMITED": "slow down and retry after the Retry-After delay",
    "INVALID_REQUEST": "the request is malformed: see the message",
    "BODY_TOO_LARGE": "the request body is too large",
    "UNAUTHENTICATED": "the read session is missing or expired: the client opens a new one by itself",
    "FORBIDDEN": "this key may not do that",
    "UNKNOWN_MARKET": "no such market: `cxpt markets` lists them",
    "MARKET_NOT_ACTIVE": "the market is paused, settled or deleted: no new orders (cancels still work)",
    "INSUFFICIENT_COLLATERAL": "not enough free collateral: deposit, cancel orders, or trade smaller",
    "INSUFFICIENT_INVENTORY": "not enough of the asset to sell",
    "REDUCE_ONLY_WOULD_INCREASE": "a reduce-only order must shrink your position",
    "INVALID_ORDER": "the order's fields do not fit together: see the message",
    "DUPLICATE_ORDER_ID": "that order id was used already: each order needs a fresh UUIDv7",
    "DUPLICATE_CLIENT_ORDER_ID": "that client order id is already on an open order",
    "UNKNOWN_ORDER": "no such open order: it may have filled, expired or been cancelled (`cxpt orders`)",
    "BELOW_MIN_SIZE": "the size is below the market's minimum (`cxpt markets`)",
    "INVALID_SIZE": "the size is not valid for this market (`cxpt markets` shows the lot)",
    "INVALID_PRICE": "the price is not valid for this market (`cxpt markets` shows the tick)",
    "INVALID_EXPIRY": "an expiry (--expire-at) goes with time in force GTT only, and in the future",
    "INVALID_ORDER_FLAGS": "these flags do not combine: post-only needs GTC or GTT, market orders IOC or FOK",
    "POST_ONLY_WOULD_CROSS": "a post-only order would have taken liquidity: price it further away",
    "FOK_WOULD_NOT_FILL": "fill-or-kill could not fill entirely: nothing traded",
    "INVALID_WITHDRAWAL": "the withdrawal is not valid: see the message",
    "DUPLICATE_WITHDRAWAL_ID": "that withdrawal id was used already",
    "WITHDRAWAL_EXPIRED": "the withdrawal's deadline passed before risk saw it: sign it again",
    "UNAVAILABLE": "the exchange could not take the command: retry",
}


def _generic_hint(status: int | None) -> str:
    if status is not None and status >= 500:
        return "the gateway failed: retry later"
    return "see the message"
