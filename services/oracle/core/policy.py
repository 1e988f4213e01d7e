"""The oracle's rules, as data: what makes a quote usable, and which TWAPs to publish."""

from __future__ import annotations

from dataclasses import dataclass

BPS = 10_000
US = 1_000_000
"""Microseconds per second."""


@dataclass(frozen=True, slots=True)
class OraclePolicy:
    """Thresholds of the verdict rules (docs/oracle.md, "Verdicts") and the TWAP windows."""

    max_age_s: int = 120
    """A quote published longer ago than this is STALE."""
    max_future_skew_s: int = 5
    """A quote published further than this in the future is INVALID (a clock that is wrong)."""
    max_deviation_bps: int = 200
    """A quote further than this from the median of the usable quotes is DEVIATING."""
    max_confidence_bps: int = 100
    """A quote whose confidence interval is wider than this share of its price is LOW_CONFIDENCE."""
    max_jump_bps: int = 1_000
    """A quote further than this from the last index price is DEVIATING (a jump)…"""
    jump_quorum: int = 2
    """…unless at least this many quotes passed every other rule (independent sources agreeing);
    0 turns the jump guard off."""
    min_sources: int = 1
    """Fewer accepted quotes than this: the round publishes no index price (null)."""
    twap_windows_s: tuple[int, ...] = (300, 3600)
    """Trailing TWAP windows published with every round, in seconds."""

    def __post_init__(self) -> None:
        thresholds = (self.max_age_s, self.max_future_skew_s, self.max_deviation_bps, self.max_confidence_bps)
        if min(*thresholds, self.max_jump_bps, self.jump_quorum) < 0:
            raise ValueError(f"negative threshold in {self}")
        if self.min_sources < 1:
            raise ValueError(f"min_sources must be at least 1, got {self.min_sources}")
        if not self.twap_windows_s or min(self.twap_windows_s) <= 0:
            raise ValueError(f"TWAP windows must be positive and at least one, got {self.twap_windows_s}")

    @property
    def longest_window_us(self) -> int:
        """The history the state must keep: the longest TWAP window, in microseconds."""
        return max(self.twap_windows_s) * US
