"""The risk core's exceptions. Business refusals are never exceptions: they are `OrderRejected` values.

* `LedgerInvariantError` — the ledger is inconsistent, or an input contradicts what risk knows
  (a fill for an order it never forwarded, a leaves quantity that disagrees): a bug, never business.
* `InvalidRiskInput` — an input no code path can accept (a deposit of -5); the service adapter
  dead-letters it.
"""

from __future__ import annotations


class RiskError(Exception):
    """Root of the risk core's exceptions."""


class LedgerInvariantError(RiskError, AssertionError):
    """The ledger's state is inconsistent, or an input contradicts it: a bug."""


class InvalidRiskInput(RiskError, ValueError):
    """An input that can never be processed (the adapter dead-letters it)."""
