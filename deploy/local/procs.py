"""Process plumbing: detached start, pid files, ownership, stop, ports, logs.

The servers must outlive the launcher (a CLI run or a pytest session): they are
started in their own session, write to a log file, and are found again through
pid files. Our own children that exit while we still run are reaped in
:func:`is_alive`.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path


class _DetachedPopen(subprocess.Popen[bytes]):
    """A Popen whose child is meant to outlive this object (and this process)."""

    def __del__(self) -> None:
        # Popen's own __del__ warns "subprocess N is still running" and queues
        # the child for reaping; a detached server is still running by design,
        # and is_alive() reaps it if it exits while we are around.
        pass


def spawn_detached(
    argv: Sequence[str],
    log_path: Path,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timer_slack_ns: int | None = None,
) -> int:
    """Start ``argv`` in a new session, stdout+stderr appended to ``log_path``.

    Returns the pid, which is also the process-group id (so :func:`terminate`
    can signal the whole group). The child inherits no descriptors but the
    log, so a pytest process holding Kafka or chdb handles leaks none of them.
    ``timer_slack_ns`` sets the child's timer slack (see :func:`timer_slack`).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log, timer_slack(timer_slack_ns):
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        log.write(f"\n{RUN_MARKER}{stamp} started by cxpt-infra: {argv[0]} =====\n".encode())
        log.flush()
        proc = _DetachedPopen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=None if env is None else dict(env),
            close_fds=True,
            # Own session: Ctrl-C in the launcher's terminal does not reach the
            # servers, and stop() can signal the server's whole process group.
            start_new_session=True,
        )
    return proc.pid


#: prctl(2) option: set the calling thread's timer slack.
_PR_SET_TIMERSLACK = 29
_PR_GET_TIMERSLACK = 30


@contextlib.contextmanager
def timer_slack(nanoseconds: int | None) -> Iterator[None]:
    """Within the block, this thread's timer slack is ``nanoseconds`` (None: unchanged).

    Timer slack is how late the kernel may fire a thread's timed sleep, so it
    can wake several at once. A child forked in the block inherits it, keeps it
    across exec, and passes it to every thread it starts; a per-thread setting
    is what makes this safe while other threads run (a ``preexec_fn`` is not).
    Off Linux this does nothing.
    """
    libc = _libc() if nanoseconds is not None else None
    if libc is None:
        yield
        return
    before = libc.prctl(_PR_GET_TIMERSLACK, 0, 0, 0, 0)
    libc.prctl(_PR_SET_TIMERSLACK, nanoseconds, 0, 0, 0)
    try:
        yield
    finally:
        libc.prctl(_PR_SET_TIMERSLACK, before, 0, 0, 0)


def _libc() -> ctypes.CDLL | None:
    """The C library with ``prctl``, or None where there is none (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    libc.prctl.restype = ctypes.c_long
    return libc


def is_alive(pid: int) -> bool:
    """True if ``pid`` is a live process (not a zombie)."""
    # Reap it first if it is our own child that has exited, else it would
    # linger as a zombie that os.kill(pid, 0) still reports as present.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _proc_state(pid) != "Z"


def _proc_state(pid: int) -> str | None:
    """The one-letter state from /proc/<pid>/stat, or None off Linux."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; the state follows its ')'.
    return stat.rsplit(")", 1)[-1].split()[0]


def command_line(pid: int) -> str:
    """The command line of ``pid`` joined with spaces ('' if unknown)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def read_pid(pid_file: Path) -> int | None:
    """The pid stored in ``pid_file``, or None if it is missing or garbled."""
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def write_pid(pid_file: Path, pid: int) -> None:
    """Store ``pid`` atomically (a reader never sees a half-written file)."""
    tmp = pid_file.with_suffix(".pid.tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(pid_file)


def owned_pid(pid_file: Path, marker: str) -> int | None:
    """The pid in ``pid_file`` if that process is alive and is ours.

    "Ours" means its command line contains ``marker`` (a path inside the run
    directory): after a reboot the pid may belong to an unrelated process.
    """
    pid = read_pid(pid_file)
    if pid is None or not is_alive(pid):
        return None
    cmdline = command_line(pid)
    # Without /proc we cannot check; trust the pid file rather than refuse.
    if cmdline and marker not in cmdline:
        return None
    return pid


def terminate(pid: int, grace_s: float) -> bool:
    """SIGTERM the process group of ``pid``; SIGKILL it after ``grace_s``.

    Returns True if the process needed SIGKILL.
    """
    _signal_group(pid, signal.SIGTERM)
    if wait_gone(pid, grace_s):
        return False
    _signal_group(pid, signal.SIGKILL)
    wait_gone(pid, 10.0)
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the whole group (the server and anything it forked)."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        # Not a group leader we may signal: fall back to the process itself.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def wait_gone(pid: int, timeout_s: float) -> bool:
    """Wait until ``pid`` has exited; False if it is still alive at the timeout."""
    deadline = time.monotonic() + timeout_s
    while is_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True


def port_open(port: int, host: str = "127.0.0.1", timeout_s: float = 0.5) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


#: Written at the top of each start's output in a log (see spawn_detached).
RUN_MARKER = "===== "


def tail(path: Path | None, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file, from its latest start only.

    Logs are appended to across restarts; lines from an earlier run would
    only confuse whoever reads why this one failed.
    """
    if path is None or not path.exists():
        return "(no log file yet)"
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        # 64 KiB covers 30 lines of even Cassandra's long lines.
        fh.seek(max(0, size - 65536))
        data = fh.read().decode(errors="replace")
    latest = data.splitlines()
    starts = [i for i, line in enumerate(latest) if line.startswith(RUN_MARKER)]
    if starts:
        latest = latest[starts[-1] :]
    return "\n".join(latest[-lines:])


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (works across processes and threads).

    Used so that two launchers (say, two pytest workers) do not start the same
    server twice or run Maven/npm into the same cache at the same time.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
