"""The protocol's stable error codes: sent as `{"op": "error", "code": …}`, never renamed."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Why the server refused a client message. The connection stays open after every one."""

    BAD_MESSAGE = "BAD_MESSAGE"
    """Not a JSON object, an unknown `op`, or a field missing or of the wrong type."""
    UNKNOWN_CHANNEL = "UNKNOWN_CHANNEL"
    """Not a channel name, or a market the trade log never listed."""
    NOT_AUTHENTICATED = "NOT_AUTHENTICATED"
    """The channel needs a login (trader or admin) and the connection has none."""
    FORBIDDEN = "FORBIDDEN"
    """Logged in, but not as the channel's trader (or not as an admin)."""
    LOGIN_REFUSED = "LOGIN_REFUSED"
    """The token is neither a valid session token nor a valid admin JWT (expired, bad signature…)."""
    ALREADY_LOGGED_IN = "ALREADY_LOGGED_IN"
    """A connection logs in once; open another connection for another identity."""
    TOO_MANY_SUBSCRIPTIONS = "TOO_MANY_SUBSCRIPTIONS"
    """The connection already holds the maximum number of subscriptions."""
    NOT_SUBSCRIBED = "NOT_SUBSCRIBED"
    """Unsubscribe from a channel the connection is not subscribed to."""
