"""What the secrets tests look at on disk: every file under a data root, and spool lines as the
shell hooks write them."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

from docpilotd.storage import compression
from tests.daemon_harness import Daemon


def forms(secret: str) -> set[bytes]:
    """The ways a text can be stored: as is (UTF-8), and as JSON escapes it (stdlib and msgspec)."""
    return {secret.encode(), json.dumps(secret)[1:-1].encode(), json.dumps(secret, ensure_ascii=False)[1:-1].encode()}


def every_file(root: Path) -> dict[str, bytes]:
    """Every regular file under `root` (journal, snapshots, backups, quarantine, spool...); a
    compressed backup generation as its content too (what it holds is on the disk)."""
    found: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        # The daemon may remove a file between the listing and the read (a spool file it has
        # finished with): a file that is gone holds nothing any more.
        try:
            if stat.S_ISREG(path.lstat().st_mode):
                data = path.read_bytes()
                if ".json.zst" in path.name:
                    data += compression.readable_part(data)
                found[str(path.relative_to(root))] = data
        except FileNotFoundError:
            continue
    return found


def files_holding(root: Path, *secrets: str) -> dict[str, list[str]]:
    """For each secret found anywhere under `root`: the files that hold it."""
    files = every_file(root)
    found: dict[str, list[str]] = {}
    for secret in secrets:
        where = [name for name, data in files.items() if any(form in data for form in forms(secret))]
        if where:
            found[secret] = where
    return found


def directories_of(names: list[str]) -> set[str]:
    return {name.split("/", 1)[0] for name in names}


class Hook:
    """Appends `record` lines to a spool file the way the shell hooks do."""

    def __init__(self, daemon: Daemon, instance: str = "1732800000000000-4242") -> None:
        self.spool = daemon.home / "spool"
        self.instance = instance
        self.counter = 0

    @property
    def path(self) -> Path:
        return self.spool / f"{self.instance}.jsonl"

    def send(self, command: str, session: str | None = None, exit_code: int = 0, cwd: str = "/srv") -> str:
        self.counter += 1
        line: dict[str, Any] = {"op": "record", "shell": "bash"}
        if session:
            line["session"] = session
        line.update(command=command, cwd=cwd, exit_code=exit_code, started_us=time.time_ns() // 1000,
                    duration_ms=3, capture_id=f"{self.instance}:{self.counter}")
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, json.dumps(line).encode() + b"\n")
        finally:
            os.close(fd)
        return str(line["capture_id"])

    def spool_files(self) -> list[str]:
        return sorted(p.name for p in self.spool.iterdir() if p.name.endswith((".jsonl", ".claimed")))
