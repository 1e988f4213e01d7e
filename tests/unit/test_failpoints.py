"""Failpoints parse strictly: a typo in a crash test must not silently disarm it."""

import pytest

from services.common.failpoints import _parse


def test_spec_parses_into_actions_and_hit_counts() -> None:
    assert _parse("bus.before_commit=kill@3, x=exit") == {"bus.before_commit": ("kill", 3), "x": ("exit", 1)}


def test_unknown_action_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown action"):
        _parse("bus.before_commit=explode")


def test_a_skip_point_is_skipped_on_its_armed_hit_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # State: `p.skip` armed to skip its second hit; Action: reach it three times.
    from services.common import failpoints

    monkeypatch.setattr(failpoints, "_armed", _parse("p.skip=skip@2"))
    monkeypatch.setattr(failpoints, "_hits", {})
    hits = [failpoints.skipped("p.skip") for _ in range(3)]
    # Expectation: only the second is skipped, and the crash point of the same name does nothing.
    failpoints.failpoint("p.skip")
    assert hits == [False, True, False]
