"""The client's verbs, one `Verb` entry each: its name and aliases, its arguments, the request it
sends (with the results type its reply decodes to) and how the result is shown.

Why one table: a verb's knowledge used to be spread over five places in cli.py (aliases and help,
the set of verbs taking --session, the argument builder, the request builder, the renderer), and a
result was a dict read back by string key. Now a verb is one entry here, its request names the
type the reply must fit (docpilotd/results.py, the types the daemon's handlers build), and its
rendering reads that decoded, typed result. cli.py is only the loop: parse, send, decode, show.

Invariants: names and aliases are unique (tests/client/test_results.py checks the table); a
daemon verb's request names its result type, and its show or deliver function reads nothing
else; `--json` prints the result as the daemon sent it (decoding does not change it); what a verb
writes to a file goes through docpilotd.destination; nothing here imports msgspec, asyncio or the
daemon's modules (the client's start-up stays near the interpreter's).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from .. import results
from ..errors import UsageError
from .lean import print_json, show_annotated, show_status, visible

if TYPE_CHECKING:  # annotations here are never evaluated (the client's start-up)
    from typing_extensions import TypeIs  # in typing from Python 3.13

    from .streamed import Event
    from .transport import Connection

    # Which session a verb acts on without --session (the option then exists; None: no such option).
    # "live": $DOCPILOT_SESSION, else the daemon's most recently started live session.
    # "latest" (verbs that read a session): $DOCPILOT_SESSION, else the most recent session, live
    # or stopped; the client then says which one it was.
    SessionDefault = Literal["live", "latest"]

R = TypeVar("R")
Fields = dict[str, Any]
# A request: its op, its arguments (None values are not sent) and the type its reply decodes to.
Request = tuple[str, Fields, type[R]]
# Where nothing is ever written: directories (the data root, the socket's) and configuration files.
Places = tuple[list[str], list[str]]
# A verb that reads a whole session as it arrives: given the connection, the request and how to ask
# for Places, it sends, shows or writes, and returns its exit code and the session's id; None when
# this invocation is not one it streams (the usual path then sends the request).
Stream = Callable[[argparse.Namespace, "Connection", str, "Fields", Callable[[], Places]], "tuple[int, str] | None"]
NOWHERE: Places = ([], [])
STDOUT = "-"  # destination.STDOUT, spelled here so that `note` does not import destination

LIVE: SessionDefault = "live"
LATEST: SessionDefault = "latest"
SHELLS = ["bash", "zsh", "fish"]


class Verb(Generic[R]):
    """One verb of `docpilot` (see the module docstring).

    `request` builds what is sent from the parsed arguments; `show` prints the decoded result for
    a person (`--json` prints it as sent). A verb that may write a file instead (export, generate)
    has `target`, where its output goes (None: printed as usual), and `deliver`, which does all of
    its output. A verb whose reply is a whole session (show, export) has `stream`, which reads it
    as it arrives (client/streamed.py) and shows or writes it meanwhile. A verb the client answers
    alone (init, join, leave; run, which records through client/run.py) has `local` instead."""

    __slots__ = ("aliases", "arguments", "confirm", "deliver", "help", "local", "local_when", "name", "request",
                 "session", "show", "stream", "target")

    def __init__(
        self,
        name: str,
        help: str,
        *,
        aliases: tuple[str, ...] = (),
        session: SessionDefault | None = None,
        arguments: Callable[[argparse.ArgumentParser], None] | None = None,
        request: Callable[[argparse.Namespace], Request[R]] | None = None,
        show: Callable[[R], None] | None = None,
        target: Callable[[argparse.Namespace, R], str | None] | None = None,
        deliver: Callable[[argparse.Namespace, R, Places], int] | None = None,
        local: Callable[[argparse.Namespace], int] | None = None,
        local_when: Callable[[argparse.Namespace], bool] | None = None,
        confirm: str | None = None,
        stream: Stream | None = None,
    ) -> None:
        self.name = name
        self.help = help
        self.aliases = aliases
        self.session = session
        self.arguments = arguments
        self.request = request
        self.show = show
        self.target = target
        self.deliver = deliver
        self.local = local
        # When set, `local` answers only the invocations it accepts (`redact --check`); the
        # others are requests as usual.
        self.local_when = local_when
        self.stream = stream
        # A destructive verb (it takes --dry-run and --yes): the question asked on a terminal after
        # showing what a dry run found; None for the others.
        self.confirm = confirm


def ask(op: str, expect: type[R], build: Callable[[argparse.Namespace], Fields] | None = None
        ) -> Callable[[argparse.Namespace], Request[R]]:
    """The request of a verb that always sends `op` and expects `expect`; `build` its arguments."""
    return lambda args: (op, build(args) if build is not None else {}, expect)


# -- the verbs' arguments and requests -----------------------------------------------------------


def _start_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("description", nargs="+")
    p.add_argument("--output-file", "-o", help="where generated documentation goes (stored as an absolute path)")
    p.add_argument("--tag", action="append", default=[], help="a tag (repeatable)")
    p.add_argument("--policy", help="the backup policy (a [policies.NAME] of the config, or default); "
                   "else the first policy naming one of its tags")


def _policy_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("policy", nargs="?", help="the policy to use from now on (omit it to see the session's)")
    p.add_argument("--clear", action="store_true", help="forget the chosen policy: its tags and the default decide")


def _policy_fields(args: argparse.Namespace) -> Fields:
    if args.clear and args.policy:
        raise UsageError("give a policy or --clear, not both")
    return {"policy": args.policy, "clear": args.clear}


def _show_policy(result: results.PolicyShown) -> None:
    rules = result["rules"]
    how = "chosen" if result["chosen"] else "by its tags or the default"
    every = rules["schedule_seconds"]
    schedule = f"a generation at least every {_duration(every)} while it changes" if every else "generations at checkpoints only"
    print(f"session {result['session']}: policy {result['policy']} ({how})")
    print(f"  keeps the last {rules['keep_last']}, and one per hour for {rules['keep_hourly']} hours, per day for "
          f"{rules['keep_daily']} days, per week for {rules['keep_weekly']} weeks, per month for "
          f"{rules['keep_monthly']} months; {schedule}")
    print(f"  policies in the config: {', '.join(result['available'])}")


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def _start_fields(args: argparse.Namespace) -> Fields:
    return {
        "description": " ".join(args.description), "output_file": _output_file(args.output_file), "tags": args.tag,
        "policy": args.policy,
        "cwd": os.getcwd(), "shell": os.path.basename(os.environ.get("SHELL", "")) or None,
    }


def _output_file(given: str | None) -> str | None:
    """`start --output-file`: stored as an absolute path (relative to where `start` ran)."""
    if given is None:
        return None
    if given == STDOUT:
        raise UsageError("--output-file - is standard output, where generate writes anyway without an output file")
    if not given.strip():
        raise UsageError("--output-file needs a path")
    return os.path.abspath(os.path.expanduser(given))


def _text_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("text", nargs="+")


# An annotation's kind as DocPilot's flags take it: the name or its first letter, in any case.
_KINDS = {"note": "note", "explanation": "explanation", "warning": "warning", "milestone": "milestone",
          "n": "note", "e": "explanation", "w": "warning", "m": "milestone"}
_KIND_HELP = "note|explanation|warning|milestone, or n|e|w|m"


def _kind(given: str) -> str:
    """argparse type of an annotation kind (a bad one is a usage error naming the choices)."""
    kind = _KINDS.get(given.strip().lower())
    if kind is None:
        raise argparse.ArgumentTypeError(f"invalid annotation type {given!r} ({_KIND_HELP})")
    return kind


def _count(given: str) -> int:
    try:
        count = int(given)
    except ValueError:
        count = 0
    if count < 1 or count > 2**31 - 1:
        raise argparse.ArgumentTypeError(f"a positive whole number expected, got {given!r}")
    return count


def _kind_option(p: argparse.ArgumentParser, default: str | None) -> None:
    # --type/-t as before; -a/--annotation-type as DocPilot spells it.
    p.add_argument("--type", "-t", "--annotation-type", "-a", dest="type", default=default, type=_kind,
                   metavar="TYPE", help=_KIND_HELP)


def _annotate_arguments(p: argparse.ArgumentParser) -> None:
    _text_argument(p)
    _kind_option(p, "note")


def _annotations_arguments(p: argparse.ArgumentParser) -> None:
    """`annotations [-r N] [-f TYPE]` lists; `annotations edit ID TEXT...` and `annotations delete ID`
    change one annotation of a live session."""
    p.add_argument("--recent", "-r", type=_count, metavar="N", help="only the N most recent")
    p.add_argument("--filter-type", "-f", type=_kind, metavar="TYPE", help=f"only this type: {_KIND_HELP}")
    actions = p.add_subparsers(dest="action", metavar="edit|delete")
    edit = actions.add_parser("edit", help="new text for an annotation (same id and time)",
                              description="Give an annotation of a live session new text (and with --type a new type).")
    edit.add_argument("id", help="the annotation's id or its first characters (see 'docpilot annotations')")
    edit.add_argument("text", nargs="+")
    _kind_option(edit, None)
    delete = actions.add_parser("delete", help="remove an annotation (older backups keep it)",
                                description="Remove an annotation from a live session (older backups keep it).")
    delete.add_argument("id", help="the annotation's id or its first characters (see 'docpilot annotations')")
    for sub in (edit, delete):  # the verb's options after the action too; not given there: the verb's value stays
        sub.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
        sub.add_argument("--session", "-s", default=argparse.SUPPRESS,
                         help="session id (default: $DOCPILOT_SESSION or the most recent session)")


def _annotations_request(
    args: argparse.Namespace,
) -> Request[results.Annotations | results.AnnotationEdited | results.AnnotationDeleted]:
    if args.action == "edit":
        fields: Fields = {"annotation": args.id, "text": " ".join(args.text), "type": args.type}
        return "edit_annotation", fields, results.AnnotationEdited
    if args.action == "delete":
        return "delete_annotation", {"annotation": args.id}, results.AnnotationDeleted
    return "annotations", {"recent": args.recent, "type": args.filter_type}, results.Annotations


def _annotation(kind: str | None) -> Callable[[argparse.Namespace], Fields]:
    """An annotation's fields: of the kind given (the shortcuts), else of --type."""
    return lambda args: {"text": " ".join(args.text), "type": kind or args.type}


def _record_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--exit-code", type=int)
    p.add_argument("--cwd", default=None)
    p.add_argument("--shell", default="")
    p.add_argument("--duration-ms", type=int)
    p.add_argument("--started-at", help="RFC 3339 time the command started")
    p.add_argument("--output-file", metavar="FILE", help="the command's output, from a regular file or - (standard "
                   "input); its head and tail are kept (output_max_bytes, as for run)")
    p.add_argument("command", nargs=argparse.REMAINDER)


def _record_fields(args: argparse.Namespace) -> Fields:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise UsageError("record needs the command text: docpilot record [options] -- COMMAND")
    output = None
    if args.output_file is not None:
        from .run import output_of_file  # only when asked: it reads the output's cap from the config

        output = output_of_file(args.output_file)
    return {
        "command": " ".join(command), "exit_code": args.exit_code, "cwd": args.cwd or os.getcwd(),
        "shell": args.shell, "duration_ms": args.duration_ms, "started_at": args.started_at, "output": output,
    }


def _run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command and its arguments, after --")


def _run(args: argparse.Namespace) -> int:
    from . import run  # only this verb runs commands (pty, signals): the others start without it

    return run.main(args)


def _restore_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("backup", nargs="?", help="backup name (see 'docpilot backups'); it names its session")
    p.add_argument("--at", metavar="TIME", help="the session as it was then: 30m, 2h, 1d (ago), yesterday, "
                   "or a date and time like '2026-11-30 14:05' (local time)")
    p.add_argument("--list-points", action="store_true", help="the moments --at can restore")
    _destructive(p)


def _restore_fields(args: argparse.Namespace) -> Fields:
    if args.backup is not None and args.at is not None:
        raise UsageError("give a backup's name or --at TIME, not both")
    if args.backup is None and args.at is None:
        raise UsageError("restore needs a backup's name (see 'docpilot backups') or --at TIME "
                         "(see 'docpilot restore --list-points')")
    if args.at is None:
        # The session: --session, else the one the backup's name names ($DOCPILOT_SESSION is not used).
        return {"backup": args.backup, "session": args.session, "dry_run": args.dry_run}
    from .search import since  # the same times --since reads

    try:
        at = since(args.at)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"--at: {exc}") from None
    return {"at": at, "session": args.session or os.environ.get("DOCPILOT_SESSION") or None, "dry_run": args.dry_run}


def _list_points(args: argparse.Namespace) -> int:
    """restore --list-points: what --at can reach, for the session."""
    from .human import ago
    from .transport import Connection

    session = args.session or os.environ.get("DOCPILOT_SESSION") or None
    with Connection() as conn:
        result = conn.request("points", results.PointsAvailable, session=session)
    if args.json:
        print_json(result)
        return 0
    print(f"session {result['session']}: any moment from {result['earliest']} ({ago(result['earliest'])}) "
          f"to {result['latest']} ({ago(result['latest'])}) can be restored")
    print(f"  {result['changes']} changes in between, from {result['earliest_copy']} and the journal after it")
    print(f"  restore one with: docpilot restore --at TIME -s {result['session'][:8]}   (add --dry-run to look first)")
    return 0


def _destructive(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", "-n", action="store_true", help="show what would change, change nothing")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask (on a terminal the verb asks first)")


def _cleanup_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-age-days", type=_days, required=True, metavar="DAYS",
                   help="remove stopped sessions (and their backups) older than this many days")
    _destructive(p)


def _export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", "-o", help="file, directory, FIFO or device to write; - or none: standard output")
    p.add_argument("--format", "-f", choices=["json", "markdown"], default="json")


def _export_request(args: argparse.Namespace) -> Request[results.SessionDocument | results.MarkdownExport]:
    expect: type[results.SessionDocument | results.MarkdownExport]
    expect = results.MarkdownExport if args.format == "markdown" else results.SessionDocument
    return "export", {"format": args.format}, expect


def _import_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file")


def _init_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("shell", choices=SHELLS)
    p.add_argument("--file", metavar="PATH",
                   help="write the hook here (default: $XDG_DATA_HOME/docpilot/docpilot.SHELL); completions go beside it")


def _join_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", nargs="?", help="session id (default: the latest live session)")
    _shell_option(p)


def _shell_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shell", choices=SHELLS, default="bash", help="print code for this shell")


def _doctor(args: argparse.Namespace) -> int:
    from . import doctor  # only this verb checks the setup (subprocesses, file systems)

    return doctor.main(args)


def _hooks(args: argparse.Namespace) -> int:
    from . import hooks  # only these verbs read the hook scripts

    return hooks.run(args)


def _generate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", "-o", help="file, directory ({id}.md), FIFO or device to write, - for standard output; "
                   "default: the output file the session was started with")
    p.add_argument("--template", "-t", metavar="NAME",
                   help="layout: standard, minimal, comprehensive, github, DocPilot's other names, or your own "
                        "(see --list-templates; default: default_template in the configuration, else standard)")
    p.add_argument("--list-templates", action="store_const", dest="verb", const="templates",
                   help="list the templates and where your own go")
    p.add_argument("--relative-to", metavar="DIR",
                   help="show directories relative to DIR, or 'none' for absolute paths (default: where the session "
                        "started, when every command ran under it)")
    p.add_argument("--slow", type=_seconds, metavar="SECONDS",
                   help="show how long commands took from this many seconds (default: slow_command_seconds, 5)")


def _days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1_000_000:
        raise argparse.ArgumentTypeError(f"expected a number of days (0 or more), not {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 86_400 * 365:
        raise argparse.ArgumentTypeError(f"expected a number of seconds (0 or more), not {text!r}")
    return value


def _generate_fields(args: argparse.Namespace) -> Fields:
    relative = args.relative_to
    if relative is not None:
        relative = "" if relative.lower() == "none" else os.path.abspath(os.path.expanduser(relative))
    return {"template": args.template, "relative_to": relative, "slow_seconds": args.slow}


def _show_templates(result: results.Templates) -> None:
    for t in result["templates"]:
        where = f"same as {t['alias_of']}" if t["alias_of"] else t["source"]
        mark = "  (default)" if t["name"] == result["default"] else ""
        print(f"{t['name']:<16} {where}{mark}")
    print(f"your own: NAME.md.j2 in {result['directory']} (docs/templates.md explains the view they read)")


def _redact_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", help="the secret; omit it (or give -) to type it or pipe it in; "
                   "with --check, the text to check")
    p.add_argument("--regex", action="store_true", help="PATTERN is a regular expression")
    p.add_argument("--check", action="store_true",
                   help="show what the rules in force would replace in the text (or standard input); store nothing")
    p.add_argument("--pattern", dest="try_patterns", action="append", default=[], metavar="REGEX",
                   help="with --check: try this pattern too (repeatable), as it would be in redact_patterns")


def _redact_fields(args: argparse.Namespace) -> Fields:
    if args.try_patterns:
        raise UsageError("--pattern tries a pattern with --check; to remove a secret by pattern, give it with --regex")
    return {"pattern": _secret(args.pattern), "regex": args.regex}


def _redact_check(args: argparse.Namespace) -> int:
    """`redact --check`: the daemon's rules in force (and --pattern's) on the text; nothing stored."""
    from .transport import Connection

    if args.regex:
        raise UsageError("--check takes the text to check; try a pattern with --pattern REGEX")
    text = _check_text(args.pattern)
    with Connection() as conn:
        result = conn.request("redact_check", results.RedactChecked, text=text, patterns=args.try_patterns)
    if args.json:
        print_json(result)
        return 0
    print(result["text"])
    replaced, allowed = result["replaced"], result["allowed"]
    width = max((len(found["rule"]) for found in (*replaced, *allowed)), default=0)
    summary = f"{len(replaced)} would be replaced" + (f", {len(allowed)} kept by redact_allow" if allowed else "")
    print(summary, file=sys.stderr)
    for found in replaced:
        print(f"  replaced  {found['rule']:<{width}}  {visible(found['secret'])}", file=sys.stderr)
    for found in allowed:
        print(f"  allowed   {found['rule']:<{width}}  {visible(found['secret'])}", file=sys.stderr)
    return 0


def _check_text(given: str | None) -> str:
    """The text `redact --check` looks at: the argument, else all of standard input."""
    if given is not None and given != "-":
        return given
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError("redact --check needs the text: as an argument, or piped in (docpilot redact --check - < FILE)")
    return sys.stdin.read()


def _secret(given: str | None) -> str:
    """The text to redact: the argument, else typed without echo, else the first line piped in.
    (Given as an argument, it also lands in the shell's history: prefer typing it.)"""
    if given is not None and given != "-":
        return given
    if sys.stdin is not None and sys.stdin.isatty():
        import getpass

        secret = getpass.getpass("secret to redact: ")
    else:
        secret = (sys.stdin.readline() if sys.stdin is not None else "").rstrip("\r\n")
    if not secret:
        raise UsageError("no secret given (as an argument, typed, or on standard input)")
    return secret


def _purge_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--session", "-s", required=True, help="the session to delete (no default)")
    p.add_argument("--force", action="store_true", help="also a live (active or paused) session")
    _destructive(p)


# -- showing results -----------------------------------------------------------------------------


def _show_started(result: results.Started) -> None:
    print(result["id"])
    others = result.get("also_live") or []
    if others:  # DocPilot's users asked: starting a session does not stop the others
        listed = ", ".join(f"{o['id'][:8]} \"{visible(o['description'])}\" ({o['state']})" for o in others)
        print(f"docpilot: also live: {listed}; new commands go to the new session "
              "(shells joined to another stay with it)", file=sys.stderr)


def _summary_line(result: results.SessionSummary, extra: str = "") -> str:
    return f"{result['id']}  {result['state']}  {result['commands']} commands, {result['annotations']} annotations{extra}"


def _show_summary(result: results.SessionSummary) -> None:
    print(_summary_line(result))


def _show_stopped(result: results.SessionSummary) -> None:
    print(_summary_line(result) + f"  \"{visible(result['description'])}\"")


def _show_restored(result: results.Restored) -> None:
    source = result["restored_from"]
    if "as_of" in result:
        source = f"{source} and {result.get('journal_records', 0)} changes of the journal, as of {result['as_of']}"
    if result.get("dry_run"):
        print(_summary_line(result, f" (what restoring {source} would give; nothing changed)"))
    else:
        print(_summary_line(result, f" (restored from {source})"))
    if result.get("reopened"):  # DocPilot's users were surprised by this: say it
        verb = "would make" if result.get("dry_run") else "made"
        print(f"docpilot: the session was stopped; this backup is of it while {result['state']}, which restoring "
              f"{verb} it again (stop it with 'docpilot stop -s {result['id'][:8]}')", file=sys.stderr)


def _show_annotated(result: results.Annotated) -> None:
    show_annotated(result)  # one definition, shared with the hot path (lean.py)


def _show_recorded(result: results.Recorded) -> None:
    if result.get("skipped"):
        print(f"not recorded: {result.get('skipped')}")
    else:
        print(f"recorded in {result['session']} ({result['commands']} commands)")


def _show_status(result: results.Status) -> None:
    show_status(result)  # one definition, shared with the hot path (lean.py)


def _show_sessions(result: list[results.ListedSession]) -> None:
    if not result:
        print("no sessions")
    from . import style

    for s in result:
        print(f"{s['id']}  {style.state(s['state'], 8)} {s['commands']:>6} cmd {s['annotations']:>4} ann  "
              f"{style.when(s['started_at'] or s['created_at']):<16}  {visible(s['description'])}")
        if "offline" in s:
            print(f"    offline: {visible(s['offline'])}")


def _show_session(s: results.SessionDocument) -> None:
    from .pager import paged  # a 20,000-line session is read in a pager on a terminal

    with paged():
        _print_session(s)


def _print_session(s: results.SessionDocument) -> None:
    lines = _SessionLines()
    for command in s["commands"]:
        lines.item("commands", command)
    for note in s["annotations"]:
        lines.item("annotations", note)
    lines.print(s)


class _SessionLines:
    """What `show` prints of a session, one line per command and annotation in time order (a
    command before an annotation of the same instant), gathered as the items arrive: the lines
    are kept, not the items (streamed.Consumer)."""

    def __init__(self) -> None:
        from . import style

        self.style = style
        self.lines: list[tuple[str, str]] = []

    def value(self, key: str, value: Any) -> None:
        pass

    def start(self, key: str) -> None:
        pass

    def end(self, key: str) -> None:
        pass

    def item(self, key: str, item: Any) -> None:
        if key == "commands":
            code = item["exit_code"]
            mark = "" if code in (0, None) else self.style.failed(f"  [exit {code}]")
            self.lines.append((item["timestamp"], f"  {visible(item['working_directory'])}$ {visible(item['command'])}{mark}"))
        elif key == "annotations":
            self.lines.append((item["timestamp"], f"  # {item['annotation_type']}: {visible(item['text'])}"))

    def print(self, s: results.SessionDocument) -> None:
        style = self.style
        state = s["state"] if isinstance(s["state"], str) else f"Error: {s['state'].get('Error')}"
        print(f"{s['id']}  {style.state(state)}  \"{visible(s['description'])}\"")
        print(f"created {style.when(s['created_at'])}  updated {style.when(s['updated_at'])}")
        self.lines.sort(key=lambda t: t[0])  # stable: commands stay before annotations of the same time
        for _, line in self.lines:
            print(line)


def _stream_show(args: argparse.Namespace, conn: Connection, op: str, fields: Fields,
                 places: Callable[[], Places]) -> tuple[int, str]:
    """show: the session read as it arrives; --json writes it as it comes, else its lines are
    gathered and printed (in a pager on a terminal) once it has all arrived."""
    from . import streamed

    if args.json:
        return 0, _json_out(streamed.events(conn, op, **fields), None, STDOUT, "", NOWHERE)[1]
    from .pager import paged

    lines = _SessionLines()
    session = streamed.read(conn, op, lines, **fields)
    with paged():
        lines.print(session)
    return 0, session["id"]


def _json_out(events: Iterator[Event], indent: int | None, target: str, suffix: str, places: Places
              ) -> tuple[str, str]:
    """Write the session `events` walk as JSON (json.dumps with `indent`, and a newline) to
    `target` ("-": standard output), while it arrives. Returns (where it was written, the session's
    id); the id is read before the target is opened (a directory's file is named after it)."""
    from .. import destination
    from . import streamed

    head: list[Event] = []
    for event in events:  # the keys before the long lists (an error reply raises here)
        head.append(event)
        if event[0] != "value" or event[1] == "id":
            break
    found = [str(value) for kind, key, value in head if kind == "value" and key == "id"]
    session_id = found[0] if found else "session"

    def produce(write: Callable[[bytes], object]) -> None:
        blocks = streamed.Blocks(write)
        writer = streamed.JsonWriter(blocks.write, indent)
        streamed.feed(chain(head, events), writer)
        writer.finish()
        blocks.flush()

    if target == STDOUT:
        destination.write_stdout(produce)
        return STDOUT, session_id
    written, _ = destination.write(target, produce, name=f"{session_id}.{suffix}", forbidden=places[0],
                                   config_files=places[1])
    return written, session_id


def _stream_export(args: argparse.Namespace, conn: Connection, op: str, fields: Fields,
                   places: Callable[[], Places]) -> tuple[int, str] | None:
    """export of the JSON: written (-o) or printed as it arrives. Markdown takes the usual path."""
    from . import streamed

    if args.format == "markdown":
        return None
    target = args.output or STDOUT
    where = places() if target != STDOUT else NOWHERE
    written, session = _json_out(streamed.events(conn, op, **fields), None if args.json and target == STDOUT else 2,
                                 target, "json", where)
    if target != STDOUT:
        print(json.dumps({"exported": written, "session": session}) if args.json else f"exported {session} to {args.output}")
    return 0, session


def _show_annotations(result: results.Annotations | results.AnnotationEdited | results.AnnotationDeleted) -> None:
    from . import style

    if _is_deleted(result):
        print(f"{result['annotation_type']} {result['deleted'][:8]} deleted from {result['session']} "
              f"({result['remaining']} annotations left)")
        return
    if _is_edited(result):
        note = result["annotation"]
        print(f"{note['annotation_type']} {note['id'][:8]} edited in {result['session']}: {visible(note['text'])}")
        return
    notes = result["annotations"]
    if not notes:
        print("no annotations" if "total" not in result else f"no matching annotations ({result['total']} in all)")
    for note in notes:  # the id's first characters: what `annotations edit` and `delete` take
        print(f"{note['id'][:8]}  {style.when(note['timestamp']):<16}  {note['annotation_type']:<11} {visible(note['text'])}")


def _is_deleted(result: results.Annotations | results.AnnotationEdited | results.AnnotationDeleted,
                ) -> TypeIs[results.AnnotationDeleted]:
    return "deleted" in result


def _is_edited(result: results.Annotations | results.AnnotationEdited | results.AnnotationDeleted,
               ) -> TypeIs[results.AnnotationEdited]:
    return "annotation" in result


def _show_backups(result: results.Backups) -> None:
    if not result["backups"]:
        print(f"no backups of {result['session']}")
    from .human import ago, size

    for b in result["backups"]:
        if b.get("state") is not None:
            held = f"{b.get('state'):<8} {b.get('commands'):>6} commands {b.get('annotations'):>4} annotations"
        elif b.get("problem"):
            held = f"unreadable: {b.get('problem')}"
        else:  # an older daemon: it does not say
            held = b["time"]
        why = b.get("kept_for")
        kept = "" if why is None else f"  kept: {', '.join(why)}" if why else "  (goes at the next rotation)"
        print(f"{b['name']}  {ago(b['time']):>12}  {held}  {size(b['size'])}{kept}")


def _show_saved(result: results.Saved) -> None:
    print(f"saved {result['saved']} session(s)")


def _show_stats(result: results.StorageStats) -> None:
    for key, value in result.items():
        print(f"{key}: {value}")


def _show_cleanup(result: results.Cleanup) -> None:
    verb = "would remove" if result.get("dry_run") else "removed"
    print(f"{verb} {len(result['removed_sessions'])} session(s) and {len(result['removed_backups'])} backup(s)")
    for session in result["removed_sessions"]:
        print(f"  session {session} (its snapshot, backups and journal)")
    for name in result["removed_backups"]:
        print(f"  backups/{name}")


def _show_written(result: results.Written) -> None:
    print(f"wrote {result['path']} ({result['commands']} commands, {result['annotations']} annotations)")


def _show_redacted(result: results.Redacted) -> None:
    print(f"redacted {result['replaced']} occurrence(s) in session {result['session']}")
    for name in result["rewritten"]:
        print(f"  rewrote {name}")
    for name in result["spool_removed"]:
        print(f"  removed spool/{name}")
    if not result["rewritten"] and not result["spool_removed"] and not result["replaced"]:
        print(f"  not found in any of the {result['files_examined']} file(s) of the session")
    for name in result["remaining"]:
        print(f"  STILL PRESENT in {name}")


def _show_purged(result: results.Purged) -> None:
    if result.get("dry_run"):
        print(f"purging session {result['session']} would remove {len(result['removed'])} file(s) "
              "(and its lines still in the spool)")
    else:
        print(f"purged session {result['session']}: {len(result['removed'])} file(s) removed")
    verb = "would remove" if result.get("dry_run") else "removed"
    for name in [*result["removed"], *(f"spool/{n}" for n in result["spool_removed"])]:
        print(f"  {verb} {name}")


def _show_recovery(result: results.Recovery) -> None:
    print(f"recovery of {result['root']} took {result['duration_ms']:.0f} ms")
    print(f"  preferences: recovery_prefer = {result['prefer']}, recovery_damage = {result['damage']}")
    for s in result["sessions"]:
        print(f"  {s['session_id']}  {s['status']}  from {s['source']}, {s['replayed']} journal records replayed")
        for line in s["problems"]:
            print(f"      problem: {line}")
        for line in s["actions"]:
            print(f"      {line}")
    for line in result["other"]:
        print(f"  {line}")
    for o in result["offline"]:
        print(f"  OFFLINE {o['session_id']}: {o['why']}")




# -- documents and exports -----------------------------------------------------------------------
# Where a document or an export goes is decided here, on the user's side of the socket: the daemon
# sends the text (and, for generate, the session's output file and whether it can be trusted), and
# destination.write puts it where the user asked without replacing anything but a regular file.


def _write(target: str, text: str, name: str, places: Places) -> tuple[str, str]:
    from .. import destination

    return destination.write(target, text.encode("utf-8", "replace"), name=name, forbidden=places[0],
                             config_files=places[1])


def _write_stdout(text: str) -> None:
    from .. import destination

    destination.write_stdout(text.encode("utf-8", "replace"))


def _is_markdown(result: results.SessionDocument | results.MarkdownExport) -> TypeIs[results.MarkdownExport]:
    return "format" in result  # a session has no such key


def _export_target(args: argparse.Namespace, result: object) -> str | None:
    return args.output or None


def _deliver_export(args: argparse.Namespace, result: results.SessionDocument | results.MarkdownExport,
                    places: Places) -> int:
    """export: to a file (-o), or to standard output (Markdown as it is, JSON pretty or --json)."""
    target = _export_target(args, result)
    if target not in (None, STDOUT):
        assert target is not None
        if _is_markdown(result):
            session, text, suffix = result["session"], result["markdown"], "md"
        else:
            session, text, suffix = result["id"], json.dumps(result, indent=2, ensure_ascii=False) + "\n", "json"
        written, _ = _write(target, text, f"{session}.{suffix}", places)
        print(json.dumps({"exported": written, "session": session}) if args.json else f"exported {session} to {args.output}")
    elif args.json:
        print_json(result)
    elif _is_markdown(result):
        _write_stdout(result["markdown"])
    else:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


def _generate_target(args: argparse.Namespace, result: results.Generated) -> str | None:
    """-o, else the session's output file if `start` chose it here, else None (standard output)."""
    if args.output:
        return str(args.output)
    if result["output_file"] and result["output_file_trusted"] is True:
        return result["output_file"]
    return None


def _deliver_generated(args: argparse.Namespace, result: results.Generated, places: Places) -> int:
    """generate: the Markdown to standard output, or written to -o, or to a trusted output file."""
    output_file = result["output_file"]
    if not args.output and output_file and result["output_file_trusted"] is not True:
        print(f"docpilot: not written to {output_file}: that output file was not set by 'docpilot start' here "
              f"(an imported session, or a file from elsewhere); use -o {output_file} to write it there",
              file=sys.stderr)
    target = _generate_target(args, result)
    if target in (None, STDOUT):
        if args.json:
            print_json(result)
        else:
            _write_stdout(result["markdown"])
        return 0
    assert target is not None
    data = result["markdown"]
    written, went = _write(target, data, f"{result['session']}.md", places)
    if went == STDOUT:  # -o named this process's standard output: the document is there
        return 0
    summary: results.Written = {
        "session": result["session"], "commands": result["commands"], "annotations": result["annotations"],
        "path": written, "bytes": len(data.encode("utf-8", "replace")),
    }
    if args.json:
        print_json(summary)
    else:
        _show_written(summary)
    return 0


# -- search (client/search.py, imported only by this verb) ------------------------------------------


def _search_arguments(p: argparse.ArgumentParser) -> None:
    from . import search

    search.arguments(p)


def _search_request(args: argparse.Namespace) -> Request[results.Search]:
    from . import search

    return search.request(args)


def _show_search(result: results.Search) -> None:
    from . import search

    search.show(result)


# -- the table -----------------------------------------------------------------------------------

VERBS: tuple[Verb[Any], ...] = (
    Verb("start", "start a session: docpilot start \"what you are doing\"", aliases=("begin", "new"),
         arguments=_start_arguments, request=ask("start", results.Started, _start_fields), show=_show_started),
    Verb("stop", "stop the session", aliases=("end", "finish"), session=LIVE,
         request=ask("stop", results.SessionSummary), show=_show_stopped),
    Verb("pause", "pause the session (commands are not recorded)", aliases=("hold",), session=LIVE,
         request=ask("pause", results.SessionSummary), show=_show_summary),
    Verb("resume", "resume a paused session", aliases=("continue", "unpause"), session=LIVE,
         request=ask("resume", results.SessionSummary), show=_show_summary),
    Verb("annotate", "add an annotation (--type/-a note|explanation|warning|milestone, or n|e|w|m)", aliases=("add", "comment"),
         session=LIVE, arguments=_annotate_arguments, request=ask("annotate", results.Annotated, _annotation(None)),
         show=_show_annotated),
    Verb("annotations", "list the session's annotations (-r N, -f TYPE); edit ID TEXT..., delete ID", aliases=("list",),
         session=LATEST, arguments=_annotations_arguments, request=_annotations_request, show=_show_annotations),
    Verb("note", "add a note", aliases=("n",), session=LIVE, arguments=_text_argument,
         request=ask("annotate", results.Annotated, _annotation("note")), show=_show_annotated),
    Verb("explain", "add an explanation", aliases=("exp",), session=LIVE, arguments=_text_argument,
         request=ask("annotate", results.Annotated, _annotation("explanation")), show=_show_annotated),
    Verb("warn", "add a warning", aliases=("warning", "alert"), session=LIVE, arguments=_text_argument,
         request=ask("annotate", results.Annotated, _annotation("warning")), show=_show_annotated),
    Verb("milestone", "add a milestone", aliases=("mile", "checkpoint"), session=LIVE, arguments=_text_argument,
         request=ask("annotate", results.Annotated, _annotation("milestone")), show=_show_annotated),
    Verb("status", "the daemon and its log, every live session, and this shell (hooked? joined?)",
         aliases=("info", "stat"), session=LIVE,
         request=ask("status", results.Status), show=_show_status),
    Verb("sessions", "all sessions with their state and counts",
         request=ask("sessions", list[results.ListedSession]), show=_show_sessions),
    Verb("show", "one session in full, annotations included", session=LATEST,
         request=ask("show", results.SessionDocument), show=_show_session, stream=_stream_show),
    Verb("save", "save every changed session now", request=ask("save", results.Saved), show=_show_saved),
    Verb("record", "record one captured command (what shell hooks send)", session=LIVE, arguments=_record_arguments,
         request=ask("record", results.Recorded, _record_fields), show=_show_recorded),
    Verb("run", "run a command (output passed through, its exit status returned) and record it with its output: "
         "docpilot run -- CMD ARGS", session=LIVE, arguments=_run_arguments, local=_run),
    Verb("backups", "backup generations of a session", session=LATEST,
         request=ask("backups", results.Backups), show=_show_backups),
    Verb("restore", "restore a session from a backup, or as it was at a moment (--at; reversible; --dry-run)", session=LIVE, arguments=_restore_arguments,
         request=ask("restore", results.Restored, _restore_fields), show=_show_restored, confirm="Restore it?",
         local=_list_points, local_when=lambda args: bool(args.list_points)),
    Verb("recovery", "the report of the daemon's last start-up recovery",
         request=ask("recovery", results.Recovery), show=_show_recovery),
    Verb("cleanup", "remove stopped sessions and backups older than N days", arguments=_cleanup_arguments,
         request=ask("cleanup", results.Cleanup,
                     lambda args: {"max_age_days": args.max_age_days, "dry_run": args.dry_run}),
         show=_show_cleanup, confirm="Remove them?"),
    Verb("stats", "storage statistics", request=ask("stats", results.StorageStats), show=_show_stats),
    Verb("doctor", "check the setup (daemon, versions, permissions, hooks, service, spool, disk, config): one "
         "line per check with what to do; exit 0 unless one failed", local=_doctor),
    Verb("export", "a session as DocPilot JSON (re-importable), or --format markdown", session=LATEST,
         arguments=_export_arguments, request=_export_request, target=_export_target, deliver=_deliver_export,
         stream=_stream_export),
    Verb("import", "import a session from an exported or DocPilot JSON file", arguments=_import_arguments,
         request=ask("import", results.SessionSummary,
                     lambda args: {"path": str(Path(args.file).expanduser().absolute())}),
         show=_show_summary),
    Verb("init", "write the shell hook and completions, print the line for ~/.bashrc (zsh, fish too)",
         arguments=_init_arguments, local=_hooks),
    Verb("join", "join this shell to a session (hooked shells; else eval \"$(docpilot join ID --shell bash)\")",
         arguments=_join_arguments, local=_hooks),
    Verb("leave", "stop sending this shell's commands to a joined session", arguments=_shell_option, local=_hooks),
    # The daemon renders; this client writes (where the user asked, relative to the user's cwd).
    Verb("generate", "Markdown documentation of the session (-o FILE, else its output file, else stdout)",
         aliases=("gen", "doc"), session=LATEST, arguments=_generate_arguments,
         request=ask("generate", results.Generated, _generate_fields), target=_generate_target,
         deliver=_deliver_generated),
    Verb("templates", "the document templates generate accepts (generate -t NAME), and where your own go",
         request=ask("templates", results.Templates), show=_show_templates),
    Verb("redact", "remove a secret from everything stored of a session (the secret from stdin if not given)",
         session=LIVE, arguments=_redact_arguments,
         request=ask("redact", results.Redacted, _redact_fields),
         show=_show_redacted, local=_redact_check, local_when=lambda args: bool(args.check)),
    Verb("policy", "show or choose the session's backup policy (which generations are kept)", session=LIVE,
         arguments=_policy_arguments, request=ask("policy", results.PolicyShown, _policy_fields), show=_show_policy),
    Verb("purge", "delete a session everywhere: snapshot, backups, journal, quarantine, spool",
         arguments=_purge_arguments,
         request=ask("purge", results.Purged,
                     lambda args: {"session": args.session, "force": args.force, "dry_run": args.dry_run}),
         show=_show_purged, confirm="Delete them for good?"),
    # Every session unless --session is given (its own option: $DOCPILOT_SESSION does not narrow it).
    Verb("search", "find commands, their output and annotations in every session: docpilot search certbot renew "
         "(--failed, --since 2d, --dir DIR, --session ID, --limit N)", aliases=("find",),
         arguments=_search_arguments, request=_search_request, show=_show_search),
)
