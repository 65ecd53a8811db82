"""`docpilot init SHELL`, `docpilot join [ID]`, `docpilot leave`: shell-side verbs of the client.

`init` writes the hook script of docpilotd/shell/, with this user's spool and marker directories
filled in (from DOCPILOT_HOME, else the config file's data_dir, else ~/.docpilot), to
$XDG_DATA_HOME/docpilot/docpilot.SHELL (default ~/.local/share/docpilot/), the completion script
(completions.py) to completions/ beside it, and prints the line that sources the hook: that line
in an rc file runs no Python when a shell starts, and `eval "$(docpilot init bash)"` (the older rc
line) still works. Not in the data root: only the daemon writes there (ARCHITECTURE.md, promise
4), and the hook is a derived, readable file like a completion script, which is what XDG_DATA_HOME
holds. The hook notices with `test -nt` that the package (an upgrade) or the configuration is newer
than itself, or that DOCPILOT_HOME changed, and runs `docpilot init SHELL --file ITSELF` once.
When the file cannot be written, `init` prints the whole script instead (the older behaviour).
The hook's `docpilot` function starts the client fast: this interpreter (`sys.executable`) with
-I -S on this package's client/entry.py, which puts the package on sys.path itself (no site, no
pip launcher: `docpilot note` at about 1.6x `python -I -S -c pass`); when either file is gone it
runs the `docpilot` on PATH, and a hook whose entry.py is gone writes itself again.

`join` asks the daemon which session is meant (so a typo is caught) and prints the shell code that
sets DOCPILOT_SESSION; `leave` prints the code that unsets it. The hooks' `docpilot` function
evaluates that code, so `docpilot join` works as a plain command in a hooked shell.

Invariants: the hook and completion files are replaced atomically (a shell starting meanwhile
reads the old file or the new one, never half of one), 0644 in a directory of the user's; the
completion library is imported only while writing them.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shlex
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from ..errors import UsageError
from ..paths import configured_root
from ..results import Status
from .lean import this_shell as this_shell  # what doctor reads about this shell (defined with status)
from .transport import Connection

SCRIPTS = {"bash": "docpilot.bash", "zsh": "docpilot.zsh", "fish": "docpilot.fish"}


def data_root() -> Path:
    return configured_root()


def _quote(shell: str, value: str) -> str:
    if shell == "fish":
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return shlex.quote(value)


def hooks_dir() -> Path:
    """$XDG_DATA_HOME/docpilot (an absolute XDG_DATA_HOME only, as the XDG spec says), else
    ~/.local/share/docpilot."""
    base = os.environ.get("XDG_DATA_HOME", "")
    if not base.startswith("/"):
        base = str(Path.home() / ".local" / "share")
    return Path(base) / "docpilot"


def _sources(shell: str) -> list[str]:
    """The files the hook file is made from: when one is newer (an upgrade, an edited
    configuration), the hook writes itself again."""
    from .. import where

    package = resources.files("docpilotd")
    return [
        str(package.joinpath("shell", SCRIPTS[shell])),
        str(package.joinpath("client", "verbs.py")),  # the verbs the completion offers
        where.config_file()[0],
    ]


def hook_script(shell: str, target: Path | None = None) -> str:
    """The hook for `shell`; `target` is where it is written (then it keeps itself current and
    loads the completions beside it), None when it is printed."""
    root = data_root()
    text = resources.files("docpilotd.shell").joinpath(SCRIPTS[shell]).read_text(encoding="utf-8")
    q = functools.partial(_quote, shell)
    completions = str(target.parent / "completions") if target is not None else ""
    fills = {
        "__DOCPILOT_SPOOL__": q(str(root / "spool")),
        "__DOCPILOT_ACTIVE__": q(str(root / "spool" / "active")),
        "__DOCPILOT_SELF__": q(str(target) if target is not None else ""),
        "__DOCPILOT_FROM__": " ".join(q(s) for s in _sources(shell)),
        "__DOCPILOT_HOME__": q(os.environ.get("DOCPILOT_HOME", "")),
        "__DOCPILOT_COMPLETIONS__": q(completions),
        "__DOCPILOT_COMPLETION__": q(os.path.join(completions, "docpilot.bash") if completions else ""),
        # The hooks' `docpilot` runs `PYTHON -I -S ENTRY` (entry.py: the fast start), this
        # interpreter and this package: the ones this `init` runs with.
        "__DOCPILOT_PYTHON__": q(sys.executable or ""),
        "__DOCPILOT_ENTRY__": q(os.path.join(os.path.dirname(os.path.abspath(__file__)), "entry.py")),
    }
    for key, value in fills.items():
        text = text.replace(key, value)
    return text


def _write(path: Path, text: str) -> None:
    """`text` into `path`, atomically, 0644."""
    import tempfile  # only init writes files (status reads this_shell)

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def install(shell: str, build_parser: Callable[[], argparse.ArgumentParser], target: Path | None = None) -> Path:
    """Write the hook for `shell` (to `target`, default hooks_dir()/docpilot.SHELL) and its
    completion script beside it; the hook's path. The completion first: a hook never names a
    completion script that is not there."""
    from . import completions

    target = (target or hooks_dir() / SCRIPTS[shell]).absolute()
    _write(target.parent / "completions" / completions.FILENAMES[shell], completions.script(shell, build_parser))
    _write(target, hook_script(shell, target))
    return target


def source_line(shell: str, path: Path) -> str:
    return f"source {_quote(shell, str(path))}"


def _init(args: argparse.Namespace) -> int:
    shell = args.shell
    try:
        path = install(shell, args.build_parser, Path(args.file).expanduser() if getattr(args, "file", None) else None)
    except OSError as exc:  # a read-only home: the whole script, as before (eval still works)
        print(f"docpilot: could not write the hook file ({exc.strerror or exc}); printing the hook itself",
              file=sys.stderr)
        print(hook_script(shell), end="")
        return 0
    print(source_line(shell, path))
    if sys.stdout.isatty():
        rc = {"bash": "~/.bashrc", "zsh": "~/.zshrc", "fish": "~/.config/fish/config.fish"}[shell]
        print(f"docpilot: add the line above to {rc} (it runs no Python when a shell starts; "
              f"`docpilot init {shell}` again after changing the data root)", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.verb == "init":
        return _init(args)
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
