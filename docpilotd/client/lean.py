"""The hot verbs on a lean path: `docpilot note|explain|warn|milestone TEXT...`, `annotate TEXT...
[--type KIND]`, `record [options] -- COMMAND`, `status` and `run -- CMD`, what people, scripts,
hooks and aliases run many times a day, started near the interpreter's own start-up.

Why: argparse, pathlib, dataclasses and typing cost more than everything these verbs do (two
thirds of `docpilot note`); they are read here with a few lines instead, and sent with the light
transport. Anything this reader does not know for certain (an unknown or abbreviated option,
`--help`, `--color`, `record --output-file`, a missing text) returns None, and the full parser
(cli.py) takes the command line: behaviour, errors and help are the full parser's, this is only a
faster way to the same request.

Invariants: a command line is handled here only when the full parser would read it the same way
(tests/client/test_lean.py runs both on the same command lines); the request sent and the output
printed (`--json` too) are the full client's; imports are os, sys and what transport.py needs; a
result is checked before anything is shown (`status` and `record` as results.decode checks the
whole reply, with its message when it does not fit; the note verbs for the fields shown).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing's: importing typing costs these verbs 2 ms
if TYPE_CHECKING:
    from typing import Any

    from ..errors import DocpilotError
    from ..results import SessionStatus, SessionSummary, Status

# verb and aliases -> the annotation type they add (the full parser's table says the same:
# tests/client/test_lean.py checks it against client/verbs.py).
NOTE_VERBS = {
    "note": "note", "n": "note",
    "explain": "explanation", "exp": "explanation",
    "warn": "warning", "warning": "warning", "alert": "warning",
    "milestone": "milestone", "mile": "milestone", "checkpoint": "milestone",
}
ANNOTATE_VERBS = frozenset({"annotate", "add", "comment"})
STATUS_VERBS = frozenset({"status", "info", "stat"})
VERBS = frozenset({*NOTE_VERBS, *ANNOTATE_VERBS, *STATUS_VERBS, "record", "run"})
# An annotation's kind as `annotate --type` takes it (verbs._KINDS, checked by the tests).
KINDS = {"note": "note", "explanation": "explanation", "warning": "warning", "milestone": "milestone",
         "n": "note", "e": "explanation", "w": "warning", "m": "milestone"}
SHELLS = ("bash", "zsh", "fish")

# The options each verb takes besides --json and --session/-s: spelling -> field. Long ones are
# also read as --name=value; a value is never one that starts with "-" (argparse would refuse it
# or read it otherwise), except a negative whole number for the number fields.
_OPTIONS: dict[str, dict[str, str]] = {
    "annotate": {"--type": "type", "-t": "type", "--annotation-type": "type", "-a": "type"},
    "record": {"--exit-code": "exit_code", "--cwd": "cwd", "--shell": "shell", "--duration-ms": "duration_ms",
               "--started-at": "started_at"},
}
_NUMBERS = frozenset({"exit_code", "duration_ms"})


def main(argv: list[str]) -> int | None:
    """Handle `argv` (the verb first) when it is a simple hot verb; its exit code, or None when the
    full parser must read it."""
    parsed = _parse(argv)
    if parsed is None:
        return None
    verb, session, as_json, words, options = parsed
    as_json = as_json or wants_json(argv)
    try:
        if verb == "run":
            from types import SimpleNamespace

            from . import run

            return run.main(SimpleNamespace(command=["--", *words], session=session))  # type: ignore[arg-type]
        if verb == "record":
            return _record(words, session, as_json, options)
        if verb in STATUS_VERBS:
            return _status(session, as_json)
        kind = NOTE_VERBS[verb] if verb in NOTE_VERBS else str(options.get("type", "note"))
        return _annotate(kind, " ".join(words), session, as_json)
    except (Exception, KeyboardInterrupt) as exc:  # reported as the full client reports it
        return report(exc, as_json)


def _parse(argv: list[str]) -> tuple[str, str | None, bool, list[str], dict[str, str | int]] | None:
    """(verb, --session, --json, words, other options) as argparse would read them, or None when
    unsure. `words` is the text (note verbs, annotate), the command (run, record) or empty (status)."""
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        return None
    family = "annotate" if verb in ANNOTATE_VERBS else verb if verb in ("record", "run") else ""
    known = _OPTIONS.get(family, {})
    remainder = family in ("record", "run")  # everything from the command on is the command's
    session: str | None = None
    as_json = False
    words: list[str] = []
    options: dict[str, str | int] = {}
    i = 0
    separated = False
    interrupted = False  # an option after the text: argparse takes no more text after it
    while i < len(rest):
        word = rest[i]
        if remainder and words:
            words.extend(rest[i:])
            break
        if word == "--":
            if words:  # argparse reads `note a -- b` as it likes: the full parser's
                return None
            words.extend(rest[i + 1:])
            separated = True
            break
        name, equals, value = word.partition("=") if word.startswith("--") else (word, "", "")
        if word == "--json":
            as_json = True
        elif name in ("--session", "-s") or name in known:
            if not equals:
                if i + 1 >= len(rest):
                    return None
                i += 1
                value = rest[i]
            field = "session" if name in ("--session", "-s") else known[name]
            read = _value(field, value)
            if read is None:
                return None
            if field == "session":
                session = str(read)
            else:
                options[field] = read
        elif word.startswith("-") and word != "-":
            return None  # -h, --help, -sID, --color, an abbreviation, a typo...: the full parser's
        else:
            if interrupted:
                return None
            words.append(word)
            i += 1
            continue
        if words:
            interrupted = True
        i += 1
    if verb in STATUS_VERBS:
        if words or separated:
            return None
    elif not words or (not remainder and not any(words)):
        return None
    if verb == "run" and words[0].startswith("-") and not separated:
        return None
    return verb, session or os.environ.get("DOCPILOT_SESSION") or None, as_json, words, options


def _value(field: str, given: str) -> str | int | None:
    """An option's value as argparse would read it, or None when unsure."""
    if field in _NUMBERS:
        digits = given[1:] if given.startswith("-") else given
        return int(given) if digits.isascii() and digits.isdigit() else None
    if given.startswith("-"):
        return None
    if field == "type":
        return KINDS.get(given.strip().lower())
    return given


def _annotate(kind: str, text: str, session: str | None, as_json: bool) -> int:
    from .transport import Connection

    with Connection() as conn:
        result = conn.send("annotate", session=session, text=text, type=kind)
    if as_json:
        print_json(result)
    else:
        show_annotated(result)
    return 0


def _record(words: list[str], session: str | None, as_json: bool, options: dict[str, str | int]) -> int:
    """`record`: the request verbs._record_fields builds (no --output-file here)."""
    from .transport import Connection

    fields = {
        "command": " ".join(words), "exit_code": options.get("exit_code"), "cwd": options.get("cwd") or os.getcwd(),
        "shell": options.get("shell", ""), "duration_ms": options.get("duration_ms"),
        "started_at": options.get("started_at"), "output": None,
    }
    with Connection() as conn:
        result = conn.send("record", session=session, **fields)
    _check_recorded(result)
    if as_json:
        print_json(result)
    elif result.get("skipped"):
        print(f"not recorded: {result.get('skipped')}")
    else:
        print(f"recorded in {result['session']} ({result['commands']} commands)")
    return 0


def _check_recorded(result: Any) -> None:
    """results.Recorded, checked field by field as results.decode checks it (its message when not)."""
    fits = isinstance(result, dict) and isinstance(result.get("session"), str) and all(
        _is_int(result.get(key)) for key in ("seq", "commands"))
    if fits:
        for key, kind in (("duplicate", bool), ("skipped", str), ("redacted", int)):
            if key in result:
                value = result[key]
                fits = fits and (isinstance(value, bool) if kind is bool else _is_int(value) if kind is int
                                 else isinstance(value, str))
    if not fits:
        from ..errors import ProtocolError
        from ..results import Recorded, decode

        decode(Recorded, result, "the daemon's reply to 'record'")
        raise ProtocolError("the daemon's reply to 'record' does not fit this client; "
                            "are docpilot and docpilotd the same version?")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and value.__class__ is not bool


# results.Status as plain data, so that `status` checks its reply as results.decode would without
# importing typing (tests/client/test_lean.py derives the same tables from results.py): an
# object is {field: (required, shape)}; a shape is a type, None, an object, a tuple of shapes (one
# of them), ("list", shape) or ("map", shape) (string keys).
_SUMMARY: dict[str, tuple[bool, Any]] = {
    "id": (True, str), "description": (True, str), "state": (True, str), "created_at": (True, str),
    "updated_at": (True, str), "started_at": (True, (str, None)), "stopped_at": (True, (str, None)),
    "commands": (True, int), "annotations": (True, int), "successful_commands": (True, int),
    "failed_commands": (True, int),
}
_STATUS: dict[str, tuple[bool, Any]] = {
    "daemon": (True, {
        "pid": (True, int), "version": (True, str), "uptime_s": (True, float), "durability": (True, str),
        "root": (True, str), "degraded": (True, ("map", str)), "live_sessions": (True, int), "sessions": (True, int),
        "log": (False, str), "spool": (False, {"files": (True, int), "bytes": (True, int)}),
        "offline": (False, ("map", str)),
        "storage": (False, {"limit_mb": (True, float), "used_mb": (True, float), "backups_mb": (True, float),
                            "journal_mb": (True, float), "quarantine_mb": (True, float), "over": (True, bool),
                            "pruned": (True, int)}),
        "scrub": (False, {"at": (True, str), "files": (True, int), "bytes": (True, int), "seconds": (True, float),
                          "problems": (True, int), "repaired": (True, int)}),
    }),
    "session": (True, ({**_SUMMARY, "seq": (True, int), "unsaved": (True, bool)}, None)),
    "live": (False, ("list", _SUMMARY)),
}


def fits(value: Any, shape: Any) -> bool:
    """Whether `value` (parsed JSON) has `shape` (see _STATUS), as results.decode checks it: JSON
    true and false are not numbers, an integer is a number."""
    if shape is None:
        return value is None
    if shape is bool:
        return value.__class__ is bool
    if shape is int:
        return isinstance(value, int) and value.__class__ is not bool
    if shape is float:
        return isinstance(value, (int, float)) and value.__class__ is not bool
    if shape is str:
        return isinstance(value, str)
    if isinstance(shape, tuple) and shape[0] == "list":
        return value.__class__ is list and all(fits(item, shape[1]) for item in value)
    if isinstance(shape, tuple) and shape[0] == "map":
        return value.__class__ is dict and all(fits(item, shape[1]) for item in value.values())
    if isinstance(shape, tuple):
        return any(fits(value, one) for one in shape)
    return value.__class__ is dict and all(
        fits(value[key], kind) if key in value else not required for key, (required, kind) in shape.items())


def _status(session: str | None, as_json: bool) -> int:
    from .transport import Connection

    with Connection() as conn:
        result = conn.send("status", session=session)
    if not fits(result, _STATUS):  # the full client's message: results.decode's (typing only then)
        from ..errors import ProtocolError
        from ..results import Status, decode

        decode(Status, result, "the daemon's reply to 'status'")
        raise ProtocolError("the daemon's reply to 'status' does not fit this client; "
                            "are docpilot and docpilotd the same version?")
    if as_json:
        print_json(result)
    else:
        from . import style

        style.configure("auto")
        show_status(result)
    return 0


def show_status(result: Status) -> None:
    """The daemon (its log, a spool not read yet), every live session (`*`: the one session verbs
    use without --session), and this shell: hooked or not, joined or not."""
    d = result["daemon"]
    print(f"docpilotd {d['version']} pid {d['pid']}, up {d['uptime_s']:.0f} s, {d['sessions']} sessions "
          f"({d['live_sessions']} live), durability {d['durability']}")
    if "log" in d:
        print(f"log: {d['log']}")
    spool = d.get("spool")
    if spool and spool["bytes"]:
        print(f"spool: {spool['bytes']} bytes of commands in {spool['files']} file(s) not read yet")
    storage = d.get("storage")
    if storage:
        state = "OVER QUOTA" if storage["over"] else "quota"
        print(f"storage: {storage['used_mb']:.1f} MB of {storage['limit_mb']:.1f} MB ({state}; backups "
              f"{storage['backups_mb']:.1f}, journal {storage['journal_mb']:.1f}, quarantine {storage['quarantine_mb']:.1f})")
    for sid, why in d["degraded"].items():
        print(f"DEGRADED {sid}: {why}")
    scrub = d.get("scrub")
    if scrub:
        found = f"{scrub['problems']} problem(s), {scrub['repaired']} repaired (see the log)" if scrub["problems"] \
            else "no problem"
        print(f"scrub: {scrub['at']}, {scrub['files']} files, {scrub['bytes'] / 1e6:.1f} MB: {found}")
    for sid, why in d.get("offline", {}).items():
        print(f"OFFLINE {sid}: {why} (see 'docpilot recovery'; 'docpilotd fsck --repair' repairs it)")
    s = result["session"]
    live = result.get("live")
    if live is None:  # an older daemon: the one session
        live = [s] if s and s["state"] in ("Active", "Paused") else []
    if s and all(other["id"] != s["id"] for other in live):
        show_status_session(s, "")  # named, or joined, and not live
    if live:
        print(f"{len(live)} live session(s) (*: the one verbs use without --session):")
    else:
        print("no live session")
    for other in live:
        show_status_session(other, "* " if s and other["id"] == s["id"] else "  ")
    print(this_shell_line(s))


def show_status_session(s: SessionSummary, mark: str) -> None:
    from . import style

    print(f"{mark}session {s['id']}  {style.state(s['state'])}  \"{visible(s['description'])}\"")
    print(f"{' ' * len(mark)}  {s['commands']} commands ({s['successful_commands']} ok, {s['failed_commands']} failed), "
          f"{s['annotations']} annotations, started {style.when(s['started_at'])}")


def this_shell() -> tuple[str | None, str | None]:
    """The shell whose hooks run where this client was started (DOCPILOT_SHELL, which the hooks
    export), and the session that shell is joined to (DOCPILOT_SESSION, which `join` exports):
    what `status` and `doctor` say about this shell."""
    return os.environ.get("DOCPILOT_SHELL") or None, os.environ.get("DOCPILOT_SESSION") or None


def this_shell_line(session: SessionStatus | None) -> str:
    shell, joined = this_shell()
    if shell:
        line = f"this shell: {shell} with docpilot's hooks"
    else:
        login = os.path.basename(os.environ.get("SHELL", ""))
        guess = login if login in SHELLS else "bash"
        line = (f"this shell: no docpilot hooks, its commands are not recorded "
                f"(run 'docpilot init {guess}' and add the line it prints to its rc file; 'docpilot doctor' checks "
                "the setup)")
    if not joined:
        return line + ("; its commands go to the current session" if shell else "")
    state = session["state"] if session and session["id"].startswith(joined) else None
    if state in (None, "Active", "Paused"):
        return line + f"; joined to {joined}" + (f" ({state})" if state else "")
    return line + f"; joined to {joined}, which is {state}: 'docpilot leave' follows the current session again"


def show_annotated(result: Any) -> None:
    """What a note verb prints: `Note added to ID: text` (the full client prints the same)."""
    from ..errors import ProtocolError

    # The fields shown, checked as results.decode would say it (the hot path does not import typing).
    problem = ""
    note: Any = None
    if not isinstance(result, dict):
        problem = f"result: an object expected, got {'null' if result is None else type(result).__name__}"
    else:
        note = result.get("annotation")
        for key, value, kind in (("annotation", note, dict), ("session", result.get("session"), str)):
            if value is None:
                problem = problem or f"result: missing {key!r}"
            elif not isinstance(value, kind):
                problem = problem or f"result.{key}: {'an object' if kind is dict else 'a string'} expected"
        if not problem and not all(isinstance(note.get(k), str) for k in ("annotation_type", "text")):
            problem = "result.annotation: missing 'annotation_type' or 'text'"
    if problem:
        raise ProtocolError(f"the daemon's reply to 'annotate' does not fit this client ({problem}); "
                            "are docpilot and docpilotd the same version?")
    assert isinstance(result, dict) and isinstance(note, dict)
    print(f"{note['annotation_type']} added to {result['session']}: {visible(note['text'])}")


# Characters that reorder the text around them ("Trojan source") and C0/C1 controls other than a
# newline: echoed as <U+XXXX>, so a note can never rewrite what the terminal shows.
_HIDDEN = frozenset([*range(0x00, 0x0A), *range(0x0B, 0x20), *range(0x7F, 0xA0), 0x061C, 0x200E, 0x200F,
                     *range(0x202A, 0x202F), *range(0x2066, 0x206A)])


def visible(text: str) -> str:
    """`text` for a terminal: control and text-reordering characters as <U+XXXX> (every echo of
    what a user, a hook or a file gave: notes, commands, descriptions)."""
    if not any(ord(ch) in _HIDDEN for ch in text):
        return text
    return "".join(f"<U+{ord(ch):04X}>" if ord(ch) in _HIDDEN else ch for ch in text)


def print_json(result: Any) -> None:
    """`--json`: the result as the daemon sent it, on one line (json.dumps(result,
    ensure_ascii=False), without importing json: transport.dumps)."""
    from .transport import dumps

    sys.stdout.write(dumps(result) + "\n")


def wants_json(argv: list[str]) -> bool:
    """Whether --json is on the command line (before a `--`): errors are then JSON too."""
    for word in argv:
        if word == "--":
            return False
        if word == "--json":
            return True
    return False


def report(exc: BaseException, as_json: bool = False) -> int:
    """An error as the client shows it: one line on standard error and the exit code of its kind;
    under --json, one JSON object on standard output instead, `{"error": {"code", "message",
    "exit_code"}}` (a script reads one stream)."""
    from ..errors import DocpilotError

    if isinstance(exc, DocpilotError):
        if as_json:
            try:
                print_json({"error": {"code": exc.code, "message": exc.message, "exit_code": exc.exit_code}})
                return exc.exit_code
            except OSError:
                pass  # no standard output: say it on standard error
        print(f"docpilot: {exc.message}", file=sys.stderr)
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return 130
    if isinstance(exc, OSError):
        from .. import destination

        destination.discard_stdout()
        if isinstance(exc, BrokenPipeError):  # output piped into `head`
            return 0
        error: DocpilotError = destination.error_for(exc, "standard output")
        print(f"docpilot: {error.message}", file=sys.stderr)
        return error.exit_code
    raise exc
