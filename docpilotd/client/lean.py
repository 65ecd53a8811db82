"""The hot verbs on a lean path: `docpilot note|explain|warn|milestone TEXT...` and `docpilot run
-- CMD`, what people, scripts and aliases run many times a day, started near the interpreter's
own start-up.

Why: argparse, pathlib, dataclasses and typing cost more than everything these verbs do (two
thirds of `docpilot note`); they are read here with a few lines instead, and sent with the light
transport. Anything this reader does not know for certain (an unknown option, `--help`, a missing
text) returns None, and the full parser (cli.py) takes the command line: behaviour, errors and
help are the full parser's, this is only a faster way to the same request.

Invariants: a command line is handled here only when the full parser would read it the same way
(tests/client/test_lean.py runs both on the same command lines); imports are os, sys and what
transport.py needs; the result is checked for the fields shown before it is shown.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing's: importing typing costs these verbs 2 ms
if TYPE_CHECKING:
    from typing import Any

    from ..errors import DocpilotError

# verb and aliases -> the annotation type they add (the full parser's table says the same:
# tests/client/test_lean.py checks it against client/verbs.py).
NOTE_VERBS = {
    "note": "note", "n": "note",
    "explain": "explanation", "exp": "explanation",
    "warn": "warning", "warning": "warning", "alert": "warning",
    "milestone": "milestone", "mile": "milestone", "checkpoint": "milestone",
}
VERBS = frozenset({*NOTE_VERBS, "run"})


def main(argv: list[str]) -> int | None:
    """Handle `argv` (the verb first) when it is a simple hot verb; its exit code, or None when the
    full parser must read it."""
    parsed = _parse(argv)
    if parsed is None:
        return None
    verb, session, as_json, words = parsed
    as_json = as_json or wants_json(argv)
    try:
        if verb == "run":
            from types import SimpleNamespace

            from . import run

            return run.main(SimpleNamespace(command=["--", *words], session=session))  # type: ignore[arg-type]
        return _annotate(NOTE_VERBS[verb], " ".join(words), session, as_json)
    except (Exception, KeyboardInterrupt) as exc:  # reported as the full client reports it
        return report(exc, as_json)


def _parse(argv: list[str]) -> tuple[str, str | None, bool, list[str]] | None:
    """(verb, --session, --json, words) as argparse would read them, or None when unsure."""
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        return None
    session: str | None = None
    as_json = False
    words: list[str] = []
    i = 0
    separated = False
    while i < len(rest):
        word = rest[i]
        if word == "--":
            words.extend(rest[i + 1:])
            separated = True
            break
        if verb == "run" and words:  # run: everything from the command on is the command's
            words.extend(rest[i:])
            break
        if word == "--json":
            as_json = True
        elif word in ("--session", "-s"):
            if i + 1 >= len(rest) or rest[i + 1].startswith("-"):
                return None
            session = rest[i + 1]
            i += 1
        elif word.startswith("--session="):
            session = word.partition("=")[2]
        elif word.startswith("-") and word != "-":
            return None  # -h, --help, -sID, a typo...: the full parser's to read and to explain
        else:
            words.append(word)
        i += 1
    if not words or (verb != "run" and not any(words)):
        return None
    if verb == "run" and words[0].startswith("-") and not separated:
        return None
    return verb, session or os.environ.get("DOCPILOT_SESSION") or None, as_json, words


def _annotate(kind: str, text: str, session: str | None, as_json: bool) -> int:
    from .transport import Connection

    with Connection() as conn:
        result = conn.send("annotate", session=session, text=text, type=kind)
    if as_json:
        print_json(result)
    else:
        show_annotated(result)
    return 0


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
    """`--json`: the result as the daemon sent it, on one line."""
    import json

    sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")


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
