"""`docpilot init SHELL`, `docpilot join [ID]`, `docpilot leave`: shell-side verbs of the client.

`init` prints the hook script of docpilotd/shell/ with this user's spool and marker directories
filled in (from DOCPILOT_HOME, else the config file's data_dir, else ~/.docpilot). `join` asks the
daemon which session is meant (so a typo is caught) and prints the shell code that sets
DOCPILOT_SESSION; `leave` prints the code that unsets it. The hooks' `docpilot` function evaluates
that code, so `docpilot join` works as a plain command in a hooked shell.
"""

from __future__ import annotations

import argparse
import os
import shlex
from importlib import resources
from pathlib import Path

from ..errors import UsageError
from ..paths import configured_root
from ..results import Status
from .transport import Connection

SCRIPTS = {"bash": "docpilot.bash", "zsh": "docpilot.zsh", "fish": "docpilot.fish"}


def this_shell() -> tuple[str | None, str | None]:
    """The shell whose hooks run where this client was started (DOCPILOT_SHELL, which the hooks
    export), and the session that shell is joined to (DOCPILOT_SESSION, which `join` exports):
    what `status` and `doctor` say about this shell."""
    return os.environ.get("DOCPILOT_SHELL") or None, os.environ.get("DOCPILOT_SESSION") or None


def data_root() -> Path:
    return configured_root()


def _quote(shell: str, value: str) -> str:
    if shell == "fish":
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return shlex.quote(value)


def hook_script(shell: str) -> str:
    root = data_root()
    text = resources.files("docpilotd.shell").joinpath(SCRIPTS[shell]).read_text(encoding="utf-8")
    return text.replace("__DOCPILOT_SPOOL__", _quote(shell, str(root / "spool"))).replace(
        "__DOCPILOT_ACTIVE__", _quote(shell, str(root / "spool" / "active"))
    )


def run(args: argparse.Namespace) -> int:
    if args.verb == "init":
        print(hook_script(args.shell), end="")
        return 0
    shell = args.shell
    if args.verb == "leave":
        print("set -e DOCPILOT_SESSION" if shell == "fish" else "unset DOCPILOT_SESSION")
        return 0
    with Connection() as conn:
        found = conn.request("status", Status, session=args.id or None)
    session = found["session"]
    if not session:
        raise UsageError("no live session to join; start one with 'docpilot start \"...\"'")
    session_id = _quote(shell, session["id"])
    print(f"set -gx DOCPILOT_SESSION {session_id}" if shell == "fish" else f"export DOCPILOT_SESSION={session_id}")
    return 0
