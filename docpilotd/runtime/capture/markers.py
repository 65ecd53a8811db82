"""Capture markers: what a hook reads, without a fork, to know whether and where to record.

In `spool/active/` (under the data root, so they survive a reboot while the daemon is down):

- `{id}`         exists while session `id` is Active (a joined shell records into it);
- `{id}.paused`  exists while it is Paused (a joined shell keeps its join and records nothing);
- `current`      holds the id of the most recently started live session while it is Active, and
                 nothing otherwise (it always exists, so a shell never meets a missing file).

A hook that is not joined reads `current` (a shell builtin `read`) and writes that id into the
record, so a command is filed under the session that was current when it ran, however late the
daemon reads it. A joined shell whose session has neither marker knows it has ended.

Invariants: `current` is replaced atomically (write a temporary file, rename), so a reader sees
an old or a new id, never a torn one; the markers are brought in step after every state change,
before the change's reply is sent.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from ...paths import Layout
from ...storage.fsops import read_regular

log = logging.getLogger("docpilotd.capture")

CURRENT = "current"
PAUSED_SUFFIX = ".paused"
_TEMPORARY = ".current.tmp"


class Markers:
    """Keeps `spool/active/` in step with the sessions' states."""

    def __init__(self, layout: Layout) -> None:
        self.directory = layout.active_markers
        self._current_written: str | None = None

    def sync(self, states: Iterable[tuple[str, str]], current: tuple[str, str] | None) -> None:
        """`states`: (session id, state name) of the live sessions; `current`: the id and state of
        the most recently started live session, if any."""
        wanted: set[str] = set()
        for session_id, state in states:
            if state == "Active":
                wanted.add(session_id)
            elif state == "Paused":
                wanted.add(session_id + PAUSED_SUFFIX)
        current_id = current[0] if current is not None and current[1] == "Active" else None
        try:
            present = set(os.listdir(self.directory))
        except FileNotFoundError:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            present = set()
        for name in present - wanted - {CURRENT}:
            try:
                os.unlink(self.directory / name)
            except OSError:
                pass
        for name in wanted - present:
            try:
                os.close(os.open(self.directory / name, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600))
            except OSError as exc:
                log.warning("cannot write capture marker %s: %s", name, exc.strerror)
        self._sync_current(current_id, CURRENT in present)

    def _sync_current(self, current_id: str | None, present: bool) -> None:
        path = self.directory / CURRENT
        current_id = current_id or ""
        if present and self._current_written is None:
            try:  # left by an earlier run: keep it when it already names the right session
                # Never waits: a FIFO (or anything but a file) there is not read, and is replaced below.
                self._current_written = read_regular(path, 200).decode("ascii", "replace").strip()
            except OSError:
                pass
        if present and self._current_written == current_id:
            return
        temporary = self.directory / _TEMPORARY
        try:
            try:  # whatever is at our temporary name is never opened (a FIFO would block the loop)
                os.unlink(temporary)
            except FileNotFoundError:
                pass
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, current_id.encode("ascii") + b"\n" if current_id else b"")
            finally:
                os.close(fd)
            os.replace(temporary, path)
            self._current_written = current_id
        except OSError as exc:
            log.warning("cannot write capture marker %s: %s", CURRENT, exc.strerror)
