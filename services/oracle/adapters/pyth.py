"""Pyth through Hermes, the HTTP price service: `GET {base}/v2/updates/price/latest?ids[]=…`.

The answer (only the fields read here):

    {"parsed": [{"id": "e62df6c8…",                     # hex, no 0x
                 "price": {"price": "6512345678901",     # mantissa, a decimal string
                           "conf": "1234567",            # confidence interval, same exponent
                           "expo": -8,
                           "publish_time": 1700000000},  # seconds since the epoch
                 "ema_price": {…}}]}

price × 10^expo is the price (`to_e9` converts exactly). `ignore_invalid_price_ids=true` makes
Hermes answer for the ids it knows instead of refusing the whole request for one unknown id; an
id missing from the answer is a `SourceFailure` of that feed. Any transport or format error fails
every feed of the request, never raises.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import httpx

from services.oracle.ports import SourceFailure, SourceQuote, to_e9

SOURCE = "pyth"
PATH = "/v2/updates/price/latest"
_INTEGER = re.compile(r"-?[0-9]+")


class MalformedAnswer(ValueError):
    """A Hermes answer, or one of its entries, that is not in the documented format."""


def normalize_id(price_id: str) -> str:
    """A Pyth price id as Hermes answers it: lower-case hex, no 0x."""
    return price_id.lower().removeprefix("0x")


class PythSource:
    """The Hermes feeds of one service URL: price id → index symbol."""

    name = SOURCE

    def __init__(
        self,
        base_url: str,
        feeds: Mapping[str, str],
        *,
        timeout_s: float = 5.0,
        client: httpx.Client | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + PATH
        self.feeds = {normalize_id(price_id): index for price_id, index in feeds.items()}
        self._client = client or httpx.Client(timeout=httpx.Timeout(timeout_s))

    def fetch(self) -> list[SourceQuote | SourceFailure]:
        """The latest price of every configured id, in one request."""
        ids = tuple(("ids[]", f"0x{price_id}") for price_id in self.feeds)
        params = (*ids, ("parsed", "true"), ("ignore_invalid_price_ids", "true"))
        try:
            response = self._client.get(self.url, params=params)
            response.raise_for_status()
            entries = parsed_entries(response.json())
        except (httpx.HTTPError, ValueError) as exc:  # MalformedAnswer and bad JSON are ValueErrors
            reason = f"{type(exc).__name__}: {exc}"[:500]
            return [self._failure(price_id, reason) for price_id in self.feeds]
        return [self._item(price_id, entries.get(price_id)) for price_id in self.feeds]

    def close(self) -> None:
        self._client.close()

    def _item(self, price_id: str, entry: Mapping[str, Any] | None) -> SourceQuote | SourceFailure:
        if entry is None:
            return self._failure(price_id, "no price for this id in the answer")
        try:
            return quote(entry, f"0x{price_id}", self.feeds[price_id])
        except MalformedAnswer as exc:
            return self._failure(price_id, str(exc))

    def _failure(self, price_id: str, reason: str) -> SourceFailure:
        return SourceFailure(SOURCE, f"0x{price_id}", self.feeds[price_id], reason)


def parsed_entries(body: Any) -> dict[str, Mapping[str, Any]]:
    """The `parsed` entries of an answer by normalized id; raises MalformedAnswer."""
    parsed = body.get("parsed") if isinstance(body, dict) else None
    if not isinstance(parsed, list):
        raise MalformedAnswer("answer without a 'parsed' list")
    entries: dict[str, Mapping[str, Any]] = {}
    for entry in parsed:
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            entries[normalize_id(entry["id"])] = entry
    return entries


def quote(entry: Mapping[str, Any], feed: str, index_symbol: str) -> SourceQuote:
    """The quote in one `parsed` entry (its `price`, not its `ema_price`); raises MalformedAnswer."""
    price = entry.get("price")
    if not isinstance(price, dict):
        raise MalformedAnswer("entry without a 'price' object")
    expo = integer(price, "expo")
    return SourceQuote(
        source=SOURCE,
        feed=feed,
        index_symbol=index_symbol,
        price_e9=to_e9(integer(price, "price"), expo),
        confidence_e9=to_e9(integer(price, "conf"), expo),
        published_at_us=integer(price, "publish_time") * 1_000_000,
    )


def integer(fields: Mapping[str, Any], name: str) -> int:
    """An integer field, given as a JSON integer or a decimal string (never a float)."""
    value = fields.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        return int(value)
    raise MalformedAnswer(f"'{name}' is not an integer: {value!r}")
