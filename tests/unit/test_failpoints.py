"""Failpoints parse strictly: a typo in a crash test must not silently disarm it."""

import pytest

from services.common.failpoints import _parse


def test_spec_parses_into_actions_and_hit_counts() -> None:
    assert _parse("bus.before_commit=kill@3, x=exit") == {"bus.before_commit": ("kill", 3), "x": ("exit", 1)}


def test_unknown_action_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown action"):
        _parse("bus.before_commit=explode")
