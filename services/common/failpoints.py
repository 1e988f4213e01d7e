"""Named fault-injection points, armed only through the environment (for crash tests).

    CXPT_FAILPOINTS="bus.before_commit=kill@3"

kills the process with SIGKILL the third time the `bus.before_commit` point is reached. Unarmed
points cost one dictionary lookup. Actions: `kill` (SIGKILL self), `exit` (os._exit(70)).
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
        if verb not in ("kill", "exit"):
            raise ValueError(f"{_ENV}: unknown action {verb!r} in {item!r}")
        armed[name] = (verb, int(nth or "1"))
    return armed


_armed = _parse(os.environ.get(_ENV, ""))
_hits: dict[str, int] = {}


def failpoint(name: str) -> None:
    """Crash here if the environment armed `name` and this is the armed hit."""
    if name not in _armed:
        return
    verb, nth = _armed[name]
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] != nth:
        return
    if verb == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(70)
