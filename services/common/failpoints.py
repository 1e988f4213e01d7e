"""Named fault-injection points, armed only through the environment (for crash tests).

    CXPT_FAILPOINTS="bus.before_commit=kill@3"

kills the process with SIGKILL the third time the `bus.before_commit` point is reached. Unarmed
points cost one dictionary lookup. Actions: `kill` (SIGKILL self), `exit` (os._exit(70)), and
`skip`, which makes `skipped(name)` true once: a deliberately broken variant (a projector that
drops one record), so a checker can be shown to catch it.
"""

from __future__ import annotations

import os
import signal

_ENV = "CXPT_FAILPOINTS"


def _parse(spec: str) -> dict[str, tuple[str, int]]:
    armed: dict[str, tuple[str, int]] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, action = item.partition("=")
        verb, _, nth = action.partition("@")
        if verb not in ("kill", "exit", "skip"):
            raise ValueError(f"{_ENV}: unknown action {verb!r} in {item!r}")
        armed[name] = (verb, int(nth or "1"))
    return armed


_armed = _parse(os.environ.get(_ENV, ""))
_hits: dict[str, int] = {}


def _armed_hit(name: str) -> str | None:
    """The armed action if this is the armed hit of `name`, else None."""
    if name not in _armed:
        return None
    verb, nth = _armed[name]
    _hits[name] = _hits.get(name, 0) + 1
    return verb if _hits[name] == nth else None


def skipped(name: str) -> bool:
    """True on the armed hit of `name` when it is armed with `skip`."""
    return name in _armed and _armed[name][0] == "skip" and _armed_hit(name) == "skip"


def failpoint(name: str) -> None:
    """Crash here if the environment armed `name` (to kill or exit) and this is the armed hit."""
    if name not in _armed or _armed[name][0] == "skip":
        return
    verb = _armed_hit(name)
    if verb is None:
        return
    if verb == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(70)
