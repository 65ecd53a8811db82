"""`docpilot`: the client people and hooks use. DocPilot's verbs and aliases, plus the daemon's.

Every verb accepts `--json` (machine-readable output) and session verbs accept `--session ID`
(default: $DOCPILOT_SESSION, else the daemon's most recently started live session). Errors are one
line on stderr and a stable exit code (see docpilotd.errors); no traceback reaches the user.
Documents and exports are written here, as the user and relative to the user's directory, by
docpilotd.destination (the daemon only sends the text); the transport talks only to a daemon of
the user's own uid.

This module is only the loop: build the parser from the verb table (client/verbs.py: one entry
per verb), parse, build the verb's request, send it, decode the reply into the verb's result type
(docpilotd/results.py; a reply that does not fit is a ProtocolError, exit 8), show it.

Start-up: `docpilot VERB ...` builds the parser of that verb alone (all of them take longer to
build than the client takes to import); help, no verb or an unknown one get the whole parser.

Invariants: every verb's knowledge is in its Verb entry; a reply is read only once decoded; a
DocpilotError or an output error ends in one line on stderr and its exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from .. import __version__, results
from ..errors import DocpilotError, UsageError
from ..paths import config_file, configured_root
from .lean import print_json, report, wants_json
from .transport import Connection
from .verbs import LATEST, NOWHERE, STDOUT, VERBS, Places, Verb

BY_NAME: dict[str, Verb[Any]] = {name: verb for verb in VERBS for name in (verb.name, *verb.aliases)}


# The verbs by topic, as `docpilot --help` lists them (tests/client/test_cli_conventions.py: every
# verb is in one group).
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Sessions", ("start", "stop", "pause", "resume", "status", "sessions", "show")),
    ("Notes", ("note", "explain", "warn", "milestone", "annotate", "annotations")),
    ("Commands", ("run", "record", "init", "join", "leave")),
    ("Documents", ("generate", "templates", "export", "import", "search")),
    ("Keeping it safe", ("save", "backups", "restore", "policy", "recovery", "redact", "purge", "cleanup", "stats",
                         "doctor")),
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see 'docpilot --help')")

    def format_help(self) -> str:
        """The top-level help: the verbs grouped by topic, each with its aliases (a verb's own
        help is argparse's)."""
        if self.prog != "docpilot":
            return super().format_help()
        lines = [self.format_usage().rstrip(), "", self.description or "", ""]
        listed: set[str] = set()
        groups = [(title, [n for n in names if n in BY_NAME]) for title, names in GROUPS]
        rest = [v.name for v in VERBS if not any(v.name in names for _, names in GROUPS)]
        for title, names in [*groups, ("Other", rest)]:
            if not names:
                continue
            lines.append(f"{title}:")
            for name in names:
                verb = BY_NAME[name]
                listed.add(name)
                also = f" ({', '.join(verb.aliases)})" if verb.aliases else ""
                lines.append(f"  {name + also:<28} {verb.help}")
            lines.append("")
        lines.append("Every verb takes --json (machine-readable output, errors too) and --help.")
        lines.append("docpilot VERB --help shows a verb's options.")
        return "\n".join(lines) + "\n"


def _unknown_verb(word: str) -> UsageError:
    """`docpilot strat`: the verbs meant, when some verb or alias is a typo away (the closest ones,
    named by their verb; two swapped letters count as half a typo: the commonest slip)."""
    scored = sorted((_typos(word.lower(), name), name != BY_NAME[name].name, name) for name in BY_NAME)
    best = scored[0][0] if scored else 99.0
    meant: list[str] = []
    for distance, _, name in scored:
        if distance > min(best, 2.0) or len(meant) == 3:
            break
        if BY_NAME[name].name not in meant:
            meant.append(BY_NAME[name].name)
    if meant and best <= max(1.0, len(word) / 3):
        return UsageError(f"unknown verb '{word}'; did you mean {' or '.join(repr(m) for m in meant)}? "
                          "(see 'docpilot --help')")
    return UsageError(f"unknown verb '{word}' (see 'docpilot --help' for the verbs)")


def _typos(a: str, b: str) -> float:
    """Edits from `a` to `b` (insert, delete, replace: 1; swap two neighbours: 0.5)."""
    previous2: list[float] = []
    previous = [float(j) for j in range(len(b) + 1)]
    for i in range(1, len(a) + 1):
        row = [float(i)] + [0.0] * len(b)
        for j in range(1, len(b) + 1):
            row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], previous2[j - 2] + 0.5)
        previous2, previous = previous, row
    return previous[-1]


def build_parser(only: Verb[Any] | None = None) -> argparse.ArgumentParser:
    """The parser of every verb, or of `only` (which parses its own command lines the same way)."""
    parser = _Parser(prog="docpilot", description="Document what you do in the terminal; docpilotd keeps it safe.")
    parser.add_argument("--version", action="version", version=f"docpilot {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb in VERBS if only is None else (only,):
        p = sub.add_parser(verb.name, aliases=list(verb.aliases), help=verb.help, description=verb.help)
        p.set_defaults(verb=verb.name)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.add_argument("--color", "--colour", choices=["never", "auto", "always"], default="auto",
                       help="colour on a terminal (auto: unless NO_COLOR is set)")
        if verb.session is not None:
            p.add_argument("--session", "-s", help="session id (default: $DOCPILOT_SESSION or the latest live one)")
        if verb.arguments is not None:
            verb.arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    as_json = wants_json(argv)
    try:
        argv = _json_after_verb(argv)
        if argv and not argv[0].startswith("-") and argv[0] not in BY_NAME:
            raise _unknown_verb(argv[0])
        args = build_parser(BY_NAME.get(argv[0]) if argv else None).parse_args(argv)
        if args.verb is None:
            build_parser().print_help()
            return 2
        verb = BY_NAME[args.verb]
        from . import style

        style.configure(getattr(args, "color", "auto"))
        if verb.local is not None and (verb.local_when is None or verb.local_when(args)):
            args.build_parser = build_parser  # `init` generates the completions from it (no import cycle)
            return verb.local(args)
        assert verb.request is not None
        op, fields, expect = verb.request(args)
        session = None
        if verb.session is not None:
            session = args.session or os.environ.get("DOCPILOT_SESSION") or None
            fields = {"session": session, **fields}
        if verb.confirm is not None and not (args.dry_run or args.yes or args.json) and _can_ask():
            # A destructive verb at a terminal: what it would do first, then the question.
            with Connection() as conn:
                preview = conn.request(op, expect, **{**fields, "dry_run": True})
            if verb.show is not None:
                verb.show(preview)
            if not _confirmed(verb.confirm):
                print("docpilot: nothing was changed", file=sys.stderr)
                return 0
        with Connection() as conn:
            # A whole session (show, export) is shown or written as it arrives, never held whole.
            streamed = verb.stream(args, conn, op, fields, lambda: _private_places(conn)) if verb.stream else None
            if streamed is not None:
                if verb.session == LATEST and session is None:
                    print(f"docpilot: that was session {streamed[1]} (the most recent; --session ID for another)",
                          file=sys.stderr)
                return streamed[0]
            result = conn.request(op, expect, **fields)
            target = verb.target(args, result) if verb.target is not None else None
            places = _private_places(conn) if target not in (None, STDOUT) else NOWHERE
        if verb.deliver is not None:
            code = verb.deliver(args, result, places)
        else:
            if args.json:
                print_json(result)
            elif verb.show is not None:
                verb.show(result)
            code = 0
        if verb.session == LATEST and session is None:
            used = result["session"] if isinstance(result.get("session"), str) else result.get("id")
            print(f"docpilot: that was session {used} (the most recent; --session ID for another)", file=sys.stderr)
        return code
    except (DocpilotError, KeyboardInterrupt, OSError) as exc:
        # One line on standard error (a refused write to standard output too, `| head` quietly),
        # or a JSON object under --json: the same report as the hot verbs' (lean.report).
        return report(exc, as_json)


def _can_ask() -> bool:
    """A person at a terminal who can answer (not a script, not a pipe)."""
    try:
        return sys.stdin.isatty() and sys.stderr.isatty()
    except (OSError, ValueError):
        return False


def _confirmed(question: str) -> bool:
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    try:
        answer = sys.stdin.readline()
    except (OSError, KeyboardInterrupt):
        return False
    return answer.strip().lower() in ("y", "yes")


def _json_after_verb(argv: list[str]) -> list[str]:
    """`docpilot --json status` reads as `docpilot status --json` (--json anywhere on the line)."""
    if argv and argv[0] == "--json" and len(argv) > 1:
        return [argv[1], "--json", *argv[2:]]
    return argv


def _private_places(conn: Connection) -> Places:
    """docpilotd's own directories and configuration files, which nothing is ever written into:
    the data root the daemon says it uses, the one this client would use, the socket's directory."""
    root = str(configured_root())
    places = [root, os.path.dirname(conn.path)]
    try:
        daemon_root = conn.request("status", results.Status)["daemon"]["root"]
        if daemon_root:
            places.append(daemon_root)
    except DocpilotError:
        pass
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    configs = [os.path.join(base, "docpilot", "docpilotd.toml"), os.path.join(root, "docpilotd.toml"), str(config_file()[0])]
    return places, configs


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
