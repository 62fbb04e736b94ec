"""Temporary Prefect servers must not outlive a killed command: a watchdog stops them at once, the next command
reaps what is left.

Without PREFECT_API_URL, Prefect runs a flow against a temporary server (``uvicorn ...
prefect.server.api.server:create_app``), a child process it stops at exit. A ``kill -9`` of the command skips
that, and the server keeps listening with PPID 1. Every command that can start one marks its environment with
its own identity (pid and start time, so that a reused pid is not mistaken for it), which the server inherits,
and starts a watchdog: a small child in its own session that blocks reading a pipe whose only writer is the
command. The kernel closes that pipe when the command ends, however it ends, so the watchdog wakes at once and
terminates every marked server whose owner is gone. Prefect offers no hook to give the server a parent-death
signal, and a parent-death signal would fire when the thread that started the server ends, not the command;
so the watchdog does it from outside. If the watchdog itself is killed too, the next such command reaps.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

OWNER_VARIABLE = "WIKIREF_TEMPORARY_SERVER_OWNER"
_SERVER_APP = b"prefect.server.api.server:create_app"
_PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name, from the state (field 3) on; None if no such pid."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name, in parentheses, may itself hold spaces and parentheses.
    return stat.rsplit(")", 1)[1].split()


def _identity(pid: int) -> str | None:
    """``pid:start time`` of a live process, None if there is no such process or it has exited."""
    fields = _stat_fields(pid)
    # An exited server stays a zombie until its new parent (init, or whatever runs as pid 1 in a container)
    # collects it; it holds no port and no memory, so it counts as gone.
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return f"{pid}:{fields[19]}"  # field 22, the start time


def mark_as_owner() -> None:
    """Have the servers this process starts from now on carry its identity."""
    identity = _identity(os.getpid())
    if identity:
        os.environ[OWNER_VARIABLE] = identity


# The write end of the watchdog's pipe: held open, never written, for as long as this process lives.
_WATCHDOG: subprocess.Popen | None = None


def start_watchdog() -> None:
    """Start the child that stops this process's temporary servers as soon as this process ends (once)."""
    global _WATCHDOG
    if _WATCHDOG is not None:
        return
    # Its own session: Ctrl-C or a closed terminal reaches the command, not the watchdog that cleans up after it.
    # The write end is not inheritable (PEP 446), so the server and other children do not keep the pipe open.
    _WATCHDOG = subprocess.Popen(
        [sys.executable, "-m", __name__],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _watch() -> None:
    """The watchdog's body: wait for the end of the pipe, then for the command's end, then reap."""
    owner = os.environ.get(OWNER_VARIABLE, "")
    sys.stdin.buffer.read()
    # The kernel closes the pipe while the command is still exiting; until it is gone, its servers are no orphans.
    deadline = time.monotonic() + 10
    while owner and _identity(int(owner.split(":", 1)[0])) == owner and time.monotonic() < deadline:
        time.sleep(0.05)
    reap_orphaned_servers()


def _owner_of(pid_dir: Path) -> str | None:
    try:
        if _SERVER_APP not in (pid_dir / "cmdline").read_bytes():
            return None
        environ = (pid_dir / "environ").read_bytes().split(b"\0")
    except OSError:  # gone meanwhile, or another user's process
        return None
    prefix = f"{OWNER_VARIABLE}=".encode()
    return next((item[len(prefix) :].decode() for item in environ if item.startswith(prefix)), None)


def orphaned_servers() -> list[int]:
    """Temporary Prefect servers started by a wikiref command that is no longer running."""
    if not _PROC.is_dir():
        return []
    orphans = []
    for pid_dir in _PROC.iterdir():
        if not pid_dir.name.isdigit() or int(pid_dir.name) == os.getpid():
            continue
        owner = _owner_of(pid_dir)
        if owner and _identity(int(owner.split(":", 1)[0])) != owner:
            orphans.append(int(pid_dir.name))
    return orphans


def reap_orphaned_servers(grace_seconds: float = 5.0) -> list[int]:
    """Terminate (then kill, after ``grace_seconds``) the orphaned temporary servers; returns their pids."""
    orphans = orphaned_servers()
    for pid in orphans:
        _signal(pid, signal.SIGTERM)
    _wait_until_gone(orphans, grace_seconds)
    for pid in orphans:
        if _identity(pid):
            _signal(pid, signal.SIGKILL)
    # SIGKILL is delivered asynchronously: on a busy machine the process takes a moment to exit.
    _wait_until_gone(orphans, grace_seconds)
    if orphans:
        log.info(
            "stopped %d temporary Prefect server(s) left by a killed command: pids %s", len(orphans), orphans
        )
    return orphans


def _wait_until_gone(pids: list[int], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(_identity(pid) for pid in pids):
        time.sleep(0.1)


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


if __name__ == "__main__":
    _watch()
