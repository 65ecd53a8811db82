"""`docpilot`: the client people and hooks use. DocPilot's verbs and aliases, plus the daemon's.

Every verb accepts `--json` (machine-readable output) and session verbs accept `--session ID`
(default: $DOCPILOT_SESSION, else the daemon's most recently started live session). Errors are one
line on stderr and a stable exit code (see docpilotd.errors); no traceback reaches the user.
Documents and exports are written here, as the user and relative to the user's directory, by
docpilotd.client.destination (the daemon only sends the text); the transport talks only to a
daemon of the user's own uid.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import DocpilotError, UsageError
from .. import destination
from ..paths import config_file, configured_root
from .transport import Connection

# verb: (aliases, help)
VERBS: dict[str, tuple[tuple[str, ...], str]] = {
    "start": (("begin", "new"), "start a session: docpilot start \"what you are doing\""),
    "stop": (("end", "finish"), "stop the session"),
    "pause": (("hold",), "pause the session (commands are not recorded)"),
    "resume": (("continue", "unpause"), "resume a paused session"),
    "annotate": (("add", "comment"), "add an annotation (--type note|explanation|warning|milestone)"),
    "annotations": (("list",), "list the session's annotations"),
    "note": (("n",), "add a note"),
    "explain": (("exp",), "add an explanation"),
    "warn": (("warning", "alert"), "add a warning"),
    "milestone": (("mile", "checkpoint"), "add a milestone"),
    "status": (("info", "stat"), "the daemon and the current session"),
    "sessions": ((), "all sessions with their state and counts"),
    "show": ((), "one session in full, annotations included"),
    "save": ((), "save every changed session now"),
    "record": ((), "record one captured command (what shell hooks send)"),
    "backups": ((), "backup generations of a session"),
    "restore": ((), "restore a session from a backup (reversible)"),
    "recovery": ((), "the report of the daemon's last start-up recovery"),
    "cleanup": ((), "remove stopped sessions and backups older than N days"),
    "stats": ((), "storage statistics"),
    "export": ((), "a session as DocPilot JSON (re-importable), or --format markdown"),
    "import": ((), "import a session from an exported or DocPilot JSON file"),
    "init": ((), "print the shell hook: eval \"$(docpilot init bash)\" in ~/.bashrc (zsh, fish too)"),
    "join": ((), "join this shell to a session (hooked shells; else eval \"$(docpilot join ID --shell bash)\")"),
    "leave": ((), "stop sending this shell's commands to a joined session"),
    "generate": (("gen", "doc"), "Markdown documentation of the session (-o FILE, else its output file, else stdout)"),
    "redact": ((), "remove a secret from everything stored of a session (the secret from stdin if not given)"),
    "purge": ((), "delete a session everywhere: snapshot, backups, journal, quarantine, spool"),
}
SESSION_VERBS = {
    "stop", "pause", "resume", "annotate", "annotations", "note", "explain", "warn", "milestone",
    "status", "show", "record", "backups", "restore", "export", "generate", "redact",
}
ANNOTATION_SHORTCUTS = {"note": "note", "explain": "explanation", "warn": "warning", "milestone": "milestone"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see 'docpilot --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="docpilot", description="Document what you do in the terminal; docpilotd keeps it safe.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb, (aliases, help_text) in VERBS.items():
        p = sub.add_parser(verb, aliases=list(aliases), help=help_text, description=help_text)
        p.set_defaults(verb=verb)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        if verb in SESSION_VERBS:
            p.add_argument("--session", "-s", help="session id (default: $DOCPILOT_SESSION or the latest live one)")
        _add_arguments(verb, p)
    return parser


def _add_arguments(verb: str, p: argparse.ArgumentParser) -> None:
    if verb == "start":
        p.add_argument("description", nargs="+")
        p.add_argument("--output-file", "-o", help="where generated documentation goes (stored as an absolute path)")
        p.add_argument("--tag", action="append", default=[], help="a tag (repeatable)")
    elif verb == "annotate":
        p.add_argument("text", nargs="+")
        p.add_argument("--type", "-t", default="note", choices=["note", "explanation", "warning", "milestone"])
    elif verb in ANNOTATION_SHORTCUTS:
        p.add_argument("text", nargs="+")
    elif verb == "record":
        p.add_argument("--exit-code", type=int)
        p.add_argument("--cwd", default=None)
        p.add_argument("--shell", default="")
        p.add_argument("--duration-ms", type=int)
        p.add_argument("--started-at", help="RFC 3339 time the command started")
        p.add_argument("command", nargs=argparse.REMAINDER)
    elif verb == "restore":
        p.add_argument("backup", help="backup name (see 'docpilot backups')")
    elif verb == "cleanup":
        p.add_argument("--max-age-days", type=float, required=True)
    elif verb == "export":
        p.add_argument("--output", "-o", help="file, directory, FIFO or device to write; - or none: standard output")
        p.add_argument("--format", "-f", choices=["json", "markdown"], default="json")
    elif verb == "generate":
        p.add_argument("--output", "-o", help="file, directory ({id}.md), FIFO or device to write, - for standard output; "
                       "default: the output file the session was started with")
    elif verb == "redact":
        p.add_argument("pattern", nargs="?", help="the secret; omit it (or give -) to type it or pipe it in")
        p.add_argument("--regex", action="store_true", help="PATTERN is a regular expression")
    elif verb == "purge":
        p.add_argument("--session", "-s", required=True, help="the session to delete (no default)")
        p.add_argument("--force", action="store_true", help="also a live (active or paused) session")
    elif verb == "import":
        p.add_argument("file")
    elif verb == "init":
        p.add_argument("shell", choices=["bash", "zsh", "fish"])
    elif verb in ("join", "leave"):
        if verb == "join":
            p.add_argument("id", nargs="?", help="session id (default: the latest live session)")
        p.add_argument("--shell", choices=["bash", "zsh", "fish"], default="bash", help="print code for this shell")


def request_for(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The protocol op and arguments of a parsed command line."""
    verb: str = args.verb
    fields: dict[str, Any] = {}
    if verb in SESSION_VERBS:
        fields["session"] = args.session or os.environ.get("DOCPILOT_SESSION") or None
    if verb == "start":
        return "start", {
            "description": " ".join(args.description), "output_file": _output_file(args.output_file), "tags": args.tag,
            "cwd": os.getcwd(), "shell": os.path.basename(os.environ.get("SHELL", "")) or None,
        }
    if verb == "annotate":
        return "annotate", {**fields, "text": " ".join(args.text), "type": args.type}
    if verb in ANNOTATION_SHORTCUTS:
        return "annotate", {**fields, "text": " ".join(args.text), "type": ANNOTATION_SHORTCUTS[verb]}
    if verb == "record":
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            raise UsageError("record needs the command text: docpilot record [options] -- COMMAND")
        return "record", {
            **fields, "command": " ".join(command), "exit_code": args.exit_code, "cwd": args.cwd or os.getcwd(),
            "shell": args.shell, "duration_ms": args.duration_ms, "started_at": args.started_at,
        }
    if verb == "restore":
        return "restore", {**fields, "backup": args.backup}
    if verb == "cleanup":
        return "cleanup", {"max_age_days": args.max_age_days}
    if verb == "import":
        return "import", {"path": str(Path(args.file).expanduser().absolute())}
    if verb == "export":
        return "export", {**fields, "format": args.format}
    if verb == "generate":
        # The daemon renders; this client writes (where the user asked, relative to the user's cwd).
        return "generate", fields
    if verb == "redact":
        return "redact", {**fields, "pattern": _secret(args.pattern), "regex": args.regex}
    if verb == "purge":
        return "purge", {"session": args.session, "force": args.force}
    return verb, fields


def _output_file(given: str | None) -> str | None:
    """`start --output-file`: stored as an absolute path (relative to where `start` ran)."""
    if given is None:
        return None
    if given == destination.STDOUT:
        raise UsageError("--output-file - is standard output, where generate writes anyway without an output file")
    if not given.strip():
        raise UsageError("--output-file needs a path")
    return os.path.abspath(os.path.expanduser(given))


def _secret(given: str | None) -> str:
    """The text to redact: the argument, else typed without echo, else the first line piped in.
    (Given as an argument, it also lands in the shell's history: prefer typing it.)"""
    if given not in (None, "-"):
        return given  # type: ignore[return-value]
    if sys.stdin is not None and sys.stdin.isatty():
        import getpass

        secret = getpass.getpass("secret to redact: ")
    else:
        secret = (sys.stdin.readline() if sys.stdin is not None else "").rstrip("\r\n")
    if not secret:
        raise UsageError("no secret given (as an argument, typed, or on standard input)")
    return secret


# Verbs that read a session: without --session they use the most recent one, live or stopped.
_READING_VERBS = frozenset({"generate", "gen", "doc", "show", "export", "annotations", "list", "backups"})


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.verb is None:
            build_parser().print_help()
            return 2
        if args.verb in ("init", "join", "leave"):
            from . import hooks

            return hooks.run(args)
        op, fields = request_for(args)
        with Connection() as conn:
            result = conn.request(op, **fields)
            places = _private_places(conn) if _writes_a_file(args, result) else ([], [])
        code = _deliver(args, result, places)
        if args.verb in _READING_VERBS and fields.get("session") is None and isinstance(result, dict):
            used = result.get("session") if isinstance(result.get("session"), str) else result.get("id")
            print(f"docpilot: that was session {used} (the most recent; --session ID for another)", file=sys.stderr)
        return code
    except DocpilotError as exc:
        print(f"docpilot: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head`
        destination.discard_stdout()
        return 0
    except OSError as exc:  # standard output or error refused a write: one line, no traceback
        destination.discard_stdout()
        error = destination.error_for(exc, "standard output")
        print(f"docpilot: {error.message}", file=sys.stderr)
        return error.exit_code


# Where a document or an export goes is decided here, on the user's side of the socket: the daemon
# sends the text (and, for generate, the session's output file and whether it can be trusted), and
# destination.write puts it where the user asked without replacing anything but a regular file.

def _target(args: argparse.Namespace, result: Any) -> str | None:
    """The path (or "-") a document or export goes to, None for the verb's usual printing."""
    if args.verb == "export":
        return args.output or None
    if args.verb == "generate" and isinstance(result, dict) and "markdown" in result:
        if args.output:
            return str(args.output)
        if result.get("output_file") and result.get("output_file_trusted") is True:
            return str(result["output_file"])
    return None


def _writes_a_file(args: argparse.Namespace, result: Any) -> bool:
    return _target(args, result) not in (None, destination.STDOUT)


def _private_places(conn: Connection) -> tuple[list[str], list[str]]:
    """docpilotd's own directories and configuration files, which nothing is ever written into:
    the data root the daemon says it uses, the one this client would use, the socket's directory."""
    root = str(configured_root())
    places = [root, str(conn.path.parent)]
    try:
        status = conn.request("status")
        daemon_root = status["daemon"]["root"]
        if isinstance(daemon_root, str) and daemon_root:
            places.append(daemon_root)
    except (DocpilotError, KeyError, TypeError):
        pass
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    configs = [os.path.join(base, "docpilot", "docpilotd.toml"), os.path.join(root, "docpilotd.toml"), str(config_file()[0])]
    return places, configs


def _write(target: str, text: str, name: str, places: tuple[list[str], list[str]]) -> tuple[str, str]:
    return destination.write(target, text.encode("utf-8", "replace"), name=name, forbidden=places[0], config_files=places[1])


def _deliver(args: argparse.Namespace, result: Any, places: tuple[list[str], list[str]] = ([], [])) -> int:
    """Print or write what the daemon answered, as the verb asks."""
    target = _target(args, result)
    if args.verb == "generate" and isinstance(result, dict) and "markdown" in result:
        return _deliver_document(args, result, target, places)
    if args.verb == "export" and target not in (None, destination.STDOUT):
        assert target is not None
        if args.format == "markdown":
            session, text, suffix = result["session"], result["markdown"], "md"
        else:
            session, text, suffix = result.get("id"), json.dumps(result, indent=2, ensure_ascii=False) + "\n", "json"
        written, _ = _write(target, text, f"{session}.{suffix}", places)
        print(json.dumps({"exported": written, "session": session}) if args.json else f"exported {session} to {args.output}")
        return 0
    if args.verb == "export" and args.format == "markdown" and not args.json:
        destination.write_stdout(result["markdown"].encode("utf-8", "replace"))
        return 0
    if args.json:
        sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
    else:
        render(args.verb, result)
    return 0


def _deliver_document(args: argparse.Namespace, result: dict[str, Any], target: str | None,
                      places: tuple[list[str], list[str]]) -> int:
    """generate: the Markdown to standard output, or written to -o, or to a trusted output file."""
    output_file = result.get("output_file")
    if not args.output and output_file and result.get("output_file_trusted") is not True:
        print(f"docpilot: not written to {output_file}: that output file was not set by 'docpilot start' here "
              f"(an imported session, or a file from elsewhere); use -o {output_file} to write it there",
              file=sys.stderr)
    if target in (None, destination.STDOUT):
        if args.json:
            sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
        else:
            destination.write_stdout(result["markdown"].encode("utf-8", "replace"))
        return 0
    assert target is not None
    data = result["markdown"]
    written, went = _write(target, data, f"{result['session']}.md", places)
    if went == destination.STDOUT:  # -o named this process's standard output: the document is there
        return 0
    summary = {
        "session": result["session"], "commands": result["commands"], "annotations": result["annotations"],
        "path": written, "bytes": len(data.encode("utf-8", "replace")),
    }
    if args.json:
        sys.stdout.write(json.dumps(summary, ensure_ascii=False) + "\n")
    else:
        render("generate", summary)
    return 0


def render(verb: str, result: Any) -> None:
    """Human output: short, one fact per line."""
    if verb == "start":
        print(result["id"])
        others = result.get("also_live") or []
        if others:  # DocPilot's users asked: starting a session does not stop the others
            listed = ", ".join(f"{o['id'][:8]} \"{o['description']}\" ({o['state']})" for o in others)
            print(f"docpilot: also live: {listed}; new commands go to the new session "
                  "(shells joined to another stay with it)", file=sys.stderr)
    elif verb in ("stop", "pause", "resume", "restore", "import"):
        extra = f" (restored from {result['restored_from']})" if "restored_from" in result else ""
        print(f"{result['id']}  {result['state']}  {result['commands']} commands, {result['annotations']} annotations{extra}"
              + (f"  \"{result['description']}\"" if verb == "stop" else ""))
    elif verb in ("annotate", *ANNOTATION_SHORTCUTS):
        note = result["annotation"]
        print(f"{note['annotation_type']} added to {result['session']}: {note['text']}")
    elif verb == "record":
        if result.get("skipped"):
            print(f"not recorded: {result['skipped']}")
        else:
            print(f"recorded in {result['session']} ({result['commands']} commands)")
    elif verb == "status":
        d = result["daemon"]
        print(f"docpilotd {d['version']} pid {d['pid']}, up {d['uptime_s']:.0f} s, {d['sessions']} sessions "
              f"({d['live_sessions']} live), durability {d['durability']}")
        for sid, why in d["degraded"].items():
            print(f"DEGRADED {sid}: {why}")
        s = result.get("session")
        if s:
            print(f"session {s['id']}  {s['state']}  \"{s['description']}\"")
            print(f"  {s['commands']} commands ({s['successful_commands']} ok, {s['failed_commands']} failed), "
                  f"{s['annotations']} annotations, started {s['started_at']}")
        else:
            print("no live session")
    elif verb == "sessions":
        if not result:
            print("no sessions")
        for s in result:
            print(f"{s['id']}  {s['state']:<8} {s['commands']:>6} cmd {s['annotations']:>4} ann  {s['description']}")
    elif verb in ("show", "export"):
        if verb == "export":
            print(json.dumps(result, indent=2, ensure_ascii=False))
        else:
            _render_session(result)
    elif verb == "annotations":
        notes = result["annotations"]
        if not notes:
            print("no annotations")
        for note in notes:
            print(f"{note['timestamp']}  {note['annotation_type']:<11} {note['text']}")
    elif verb == "backups":
        if not result["backups"]:
            print(f"no backups of {result['session']}")
        for b in result["backups"]:
            print(f"{b['name']}  {b['time']}  {b['size']} bytes")
    elif verb == "save":
        print(f"saved {result['saved']} session(s)")
    elif verb == "stats":
        for key, value in result.items():
            print(f"{key}: {value}")
    elif verb == "cleanup":
        print(f"removed {len(result['removed_sessions'])} session(s) and {len(result['removed_backups'])} backup(s)")
    elif verb == "generate":
        print(f"wrote {result['path']} ({result['commands']} commands, {result['annotations']} annotations)")
    elif verb == "redact":
        print(f"redacted {result['replaced']} occurrence(s) in session {result['session']}")
        for name in result["rewritten"]:
            print(f"  rewrote {name}")
        for name in result["spool_removed"]:
            print(f"  removed spool/{name}")
        if not result["rewritten"] and not result["spool_removed"] and not result["replaced"]:
            print(f"  not found in any of the {result['files_examined']} file(s) of the session")
        for name in result["remaining"]:
            print(f"  STILL PRESENT in {name}")
    elif verb == "purge":
        print(f"purged session {result['session']}: {len(result['removed'])} file(s) removed")
        for name in [*result["removed"], *(f"spool/{n}" for n in result["spool_removed"])]:
            print(f"  removed {name}")
    elif verb == "recovery":
        print(f"recovery of {result['root']} took {result['duration_ms']:.0f} ms")
        for s in result["sessions"]:
            print(f"  {s['session_id']}  {s['status']}  from {s['source']}, {s['replayed']} journal records replayed")
            for line in s["problems"]:
                print(f"      problem: {line}")
            for line in s["actions"]:
                print(f"      {line}")
        for line in result["other"]:
            print(f"  {line}")
    else:  # pragma: no cover - every verb has a rendering
        print(json.dumps(result, indent=2))


def _render_session(s: dict[str, Any]) -> None:
    state = s["state"] if isinstance(s["state"], str) else f"Error: {s['state'].get('Error')}"
    print(f"{s['id']}  {state}  \"{s['description']}\"")
    print(f"created {s['created_at']}  updated {s['updated_at']}")
    items = [(c["timestamp"], "$", c) for c in s["commands"]] + [(a["timestamp"], "#", a) for a in s["annotations"]]
    for _, kind, item in sorted(items, key=lambda t: t[0]):
        if kind == "$":
            code = item["exit_code"]
            mark = "" if code in (0, None) else f"  [exit {code}]"
            print(f"  {item['working_directory']}$ {item['command']}{mark}")
        else:
            print(f"  # {item['annotation_type']}: {item['text']}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
