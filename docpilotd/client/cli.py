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

from .. import results
from ..errors import DocpilotError, UsageError
from ..paths import config_file, configured_root
from .lean import print_json, report
from .transport import Connection
from .verbs import LATEST, NOWHERE, STDOUT, VERBS, Places, Verb

BY_NAME: dict[str, Verb[Any]] = {name: verb for verb in VERBS for name in (verb.name, *verb.aliases)}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see 'docpilot --help')")


def build_parser(only: Verb[Any] | None = None) -> argparse.ArgumentParser:
    """The parser of every verb, or of `only` (which parses its own command lines the same way)."""
    parser = _Parser(prog="docpilot", description="Document what you do in the terminal; docpilotd keeps it safe.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb in VERBS if only is None else (only,):
        p = sub.add_parser(verb.name, aliases=list(verb.aliases), help=verb.help, description=verb.help)
        p.set_defaults(verb=verb.name)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        if verb.session is not None:
            p.add_argument("--session", "-s", help="session id (default: $DOCPILOT_SESSION or the latest live one)")
        if verb.arguments is not None:
            verb.arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        argv = sys.argv[1:] if argv is None else argv
        args = build_parser(BY_NAME.get(argv[0]) if argv else None).parse_args(argv)
        if args.verb is None:
            build_parser().print_help()
            return 2
        verb = BY_NAME[args.verb]
        if verb.local is not None:
            return verb.local(args)
        assert verb.request is not None
        op, fields, expect = verb.request(args)
        session = None
        if verb.session is not None:
            session = args.session or os.environ.get("DOCPILOT_SESSION") or None
            fields = {"session": session, **fields}
        with Connection() as conn:
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
        # One line on standard error (a refused write to standard output too, `| head` quietly):
        # the same report as the hot verbs' (lean.report).
        return report(exc)


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
