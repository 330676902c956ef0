"""Helpers for the crash tests: run a command, SIGKILL it (and, if asked, its children) at a
random point, and find the processes a process started."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def kill_at_random(cmd: list[str], env: dict[str, str], *, within: float, rng: random.Random,
                   kill_children: bool, log: Path, after: Callable[[], bool] | None = None) -> tuple[float, int | None]:
    """Start ``cmd``, SIGKILL it after a random delay in [0, within) seconds (unless it finished
    first), and its children too when ``kill_children``. With ``after``, the delay counts from the
    moment ``after()`` is first true (e.g. the job's record exists), so the kill lands in the work
    rather than in the interpreter's start-up. Returns (delay, exit code if it finished)."""
    delay = rng.uniform(0.0, within)
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=out)
    if after is not None:
        while proc.poll() is None and not after():
            time.sleep(0.005)
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    if proc.poll() is not None:
        return delay, proc.returncode
    kids = children(proc.pid) if kill_children else []
    proc.send_signal(signal.SIGKILL)
    for kid in kids:
        try:
            os.kill(kid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    return delay, None


def timed_run(cmd: list[str], env: dict[str, str], after: Callable[[], bool]) -> tuple[float, float]:
    """Run ``cmd`` to its end; (seconds until ``after()`` first held, seconds in all)."""
    began = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ready = None
    while proc.poll() is None:
        if ready is None and after():
            ready = time.monotonic() - began
        time.sleep(0.005)
    total = time.monotonic() - began
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed: {proc.stderr.read().decode()[-2000:]}")
    return (ready if ready is not None else total), total
