"""Read-only work spread over forked child processes (start-up recovery of many sessions).

Why processes: checking a session (read, decode, checksum, validate) holds the GIL nearly all
the time, so threads would not run it in parallel; a forked child shares the parent's code and
state for free. Why only read-only work: a child must never change the data root, so that the
parent alone decides and carries out every repair, as if it had done all the work itself.

`start(shares, work)` forks one child per share; each runs `work(share)`, writes the bytes it
returns to a pipe and exits with os._exit (no finalizers, no atexit, no flushing of the parent's
buffers). `collect(children)` reads each child's bytes and reaps it; a child that failed in any
way yields None, and the caller does that share itself. A child closes every descriptor it
inherited but its pipe (the data lock, sockets): nothing of the parent's outlives the parent.

Used only where fork is safe and worth it: Linux, the real file system, many sessions. Forking
from the thread that runs recovery is sound because the child runs nothing but `work`, which
takes no lock another thread might hold (no logging, no imports, no thread pools).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

AVAILABLE = sys.platform.startswith("linux") and hasattr(os, "fork")


@dataclass
class Child:
    pid: int
    fd: int


def workers() -> int:
    """How many processes (parent included) share the work: the CPUs this process may use."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


def start(shares: Sequence[Sequence[T]], work: Callable[[Sequence[T]], bytes]) -> list[Child | None]:
    """Fork one child per share (None where fork failed: the caller does that share)."""
    children: list[Child | None] = []
    for share in shares:
        try:
            read_fd, write_fd = os.pipe()
        except OSError:
            children.append(None)
            continue
        try:
            pid = os.fork()
        except OSError:
            os.close(read_fd)
            os.close(write_fd)
            children.append(None)
            continue
        if pid == 0:  # pragma: no cover - runs in the child (coverage does not follow it)
            _child(share, work, write_fd)
        os.close(write_fd)
        children.append(Child(pid, read_fd))
    return children


def _child(share: Sequence[T], work: Callable[[Sequence[T]], bytes], fd: int) -> None:  # pragma: no cover
    code = 1
    try:
        os.closerange(3, fd)
        os.closerange(fd + 1, 1 << 16)
        data = work(share)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        code = 0
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def collect(children: list[Child | None]) -> list[bytes | None]:
    """Each child's bytes, or None for a child that did not finish its work."""
    results: list[bytes | None] = []
    for child in children:
        if child is None:
            results.append(None)
            continue
        chunks = []
        try:
            while chunk := os.read(child.fd, 1 << 20):
                chunks.append(chunk)
        except OSError:
            chunks = []
        finally:
            os.close(child.fd)
        try:
            _, status = os.waitpid(child.pid, 0)
        except ChildProcessError:  # pragma: no cover - reaped by someone else
            status = 1
        results.append(b"".join(chunks) if status == 0 else None)
    return results
