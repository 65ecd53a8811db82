"""`docpilotd`: the daemon's command line (run it, check its data).

    docpilotd run [--detach] [--config FILE] [--home DIR] [...]   serve (foreground by default)
    docpilotd stop [--timeout SECONDS] [--home DIR]              stop the running daemon (and wait for it)
    docpilotd config [--json] [--config FILE] [--home DIR] [...] the effective configuration and its sources
    docpilotd fsck [--repair] [--reindex] [--json] [--home DIR]  check (and repair) the data root and search index
    docpilotd fsck --scrub [--repair] [--json] [--home DIR]      read and check every backup and journal segment
    docpilotd service install [--socket] | uninstall | status   run it as a systemd/launchd user service

Every DocpilotError becomes one line on stderr and its exit code (an OSError that no layer turned
into one is reported as a StorageError); no traceback reaches the user.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import msgspec

from . import __version__
from . import config as config_mod
from .errors import DocpilotError, StorageError, UsageError
from .paths import layout_for


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see 'docpilotd --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="docpilotd", description="Keeps DocPilot documentation sessions safe.")
    parser.add_argument("--version", action="version", version=f"docpilotd {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")

    common = _Parser(add_help=False)
    common.add_argument("--config", help="config file (default: see config/docpilotd.toml)")
    common.add_argument("--home", help="data root (default: $DOCPILOT_HOME or ~/.docpilot)")

    # The settings `run` takes as flags; `config` takes them too, to show what a `run` would use.
    tuning = _Parser(add_help=False)
    tuning.add_argument("--autosave-interval", type=float, help="seconds between autosaves")
    tuning.add_argument("--backups-kept", type=int, help="backup generations kept per session")
    tuning.add_argument("--durability", choices=["always", "batch", "off"], help="when changes are fsynced")
    tuning.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    tuning.add_argument("--log-file", help="log to this file (rotated) instead of stderr")

    run = sub.add_parser("run", parents=[common, tuning], help="run the daemon (in the foreground)")
    run.add_argument("--detach", action="store_true",
                     help="run in the background; prints its pid and log file once it serves")

    stop = sub.add_parser("stop", help="stop the running daemon (through the service manager when it runs one)")
    stop.add_argument("--home", help="data root (default: $DOCPILOT_HOME or ~/.docpilot)")
    stop.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                      help="how long to wait for it to exit (default 120: its final save may take a while)")

    show = sub.add_parser("config", parents=[common, tuning],
                          help="the effective configuration: each value and where it came from")
    show.add_argument("--json", action="store_true", help="print it as JSON")

    fsck = sub.add_parser("fsck", parents=[common], help="check the data root; --repair fixes it")
    fsck.add_argument("--repair", action="store_true", help="restore, quarantine and clean up")
    fsck.add_argument("--json", action="store_true", help="print the report as JSON")
    fsck.add_argument("--reindex", action="store_true",
                      help="build the search index anew from the sessions (implies --repair)")
    fsck.add_argument("--scrub", action="store_true",
                      help="read and check every backup generation and journal segment (bit rot); with "
                           "--repair, replace a damaged generation from a good copy")

    service = sub.add_parser("service", help="run docpilotd as a user service (systemd or launchd)")
    actions = service.add_subparsers(dest="action", metavar="ACTION", required=True)
    install = actions.add_parser(
        "install", parents=[common], help="write the unit (or LaunchAgent) with this installation's paths, enable it"
    )
    install.add_argument("--socket", action="store_true", help="systemd: also a socket unit (socket activation)")
    actions.add_parser("uninstall", help="stop, disable and remove what install wrote (data and logs stay)")
    actions.add_parser("status", help="what is installed and whether the service manager runs it")
    return parser


# The configuration keys command-line flags set, and each one's option.
FLAGS = {"data_dir": "--home", "autosave_interval": "--autosave-interval", "backups_kept": "--backups-kept",
         "durability": "--durability", "log_level": "--log-level", "log_file": "--log-file"}


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {key: getattr(args, "home" if key == "data_dir" else key, None) for key in FLAGS}


def load_config(args: argparse.Namespace) -> config_mod.Config:
    return config_mod.load(getattr(args, "config", None), _overrides(args))


def show_config(args: argparse.Namespace) -> int:
    """`docpilotd config`: every setting, its value and where it came from (flag, environment
    variable, config file, default); an invalid configuration is its one-line ConfigError."""
    from .where import socket_in

    effective, path, read, settings = config_mod.explain(args.config, _overrides(args), FLAGS)
    layout = layout_for(effective.home)
    if args.json:
        payload = {
            "config_file": str(path), "config_file_read": read, "data_root": str(layout.root),
            "socket": socket_in(str(layout.run_dir)),
            "settings": {key: {"value": s.value, "source": s.source, "from": s.origin} for key, s in settings.items()},
        }
        sys.stdout.write(msgspec.json.encode(payload).decode() + "\n")
        return 0
    print(f"config file: {path}" + ("" if read else " (not there: nothing read from it)"))
    print(f"data root:   {layout.root}")
    print(f"socket:      {socket_in(str(layout.run_dir))}")
    width = max(len(key) for key in settings)
    for key, s in settings.items():
        value = msgspec.json.encode(s.value).decode()
        where = {"default": "default", "file": f"config file {s.origin}", "environment": f"environment {s.origin}",
                 "flag": f"flag {s.origin}"}[s.source]
        print(f"{key:<{width}} = {value:<24} {where}")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.verb is None:
            build_parser().print_help()
            return 2
        if getattr(args, "home", None):
            os.environ["DOCPILOT_HOME"] = args.home  # one meaning of "home" for every module
        if args.verb == "stop":  # needs only where the daemon is: a broken config must not keep it running
            from .control import stop

            return stop(args.home, sys.stdout, timeout=args.timeout)
        if args.verb == "config":
            return show_config(args)
        cfg = load_config(args)
        if args.verb == "fsck" and args.scrub:
            return fsck_scrub(cfg, repair=args.repair, as_json=args.json)
        if args.verb == "fsck":
            return fsck(cfg, repair=args.repair or args.reindex, as_json=args.json, reindex=args.reindex)
        if args.verb == "service":
            return service(args)
        if args.verb == "run":
            from .runtime.daemon import run

            return run(cfg, detach=args.detach, config_file=args.config)
        raise UsageError(f"unknown verb {args.verb}")
    except DocpilotError as exc:
        print(f"docpilotd: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a file-system failure no layer named (a data root that is a file...)
        where = f": {exc.filename}" if exc.filename else ""
        print(f"docpilotd: {exc.strerror or exc}{where}", file=sys.stderr)
        return StorageError.exit_code
    except KeyboardInterrupt:
        return 130


def service(args: argparse.Namespace) -> int:
    from . import service as service_mod

    target = service_mod.this_target(config_file=getattr(args, "config", None))
    if args.action == "install":
        return service_mod.install(target, sys.stdout, socket=args.socket)
    if args.action == "uninstall":
        return service_mod.uninstall(target, sys.stdout)
    return service_mod.status(target, sys.stdout)


def fsck(cfg: config_mod.Config, repair: bool, as_json: bool, reindex: bool = False) -> int:
    from .storage import spelling
    from .storage.lock import DataLock
    from .storage.recovery import recover_all
    from .storage.store import SessionStore

    layout = layout_for(cfg.home)
    if not layout.root.is_dir():
        # Nothing there is not "healthy": most often DOCPILOT_HOME (or data_dir) names the wrong place.
        from .errors import DataRootNotFound

        raise DataRootNotFound(f"no data root at {layout.root}: nothing to check (is DOCPILOT_HOME or data_dir right?)")
    lock: DataLock | None = None
    if repair:
        # Repairing writes: only the owner of the data root may do it (promise 4).
        layout.ensure()
        lock = DataLock(layout.lock)
        lock.acquire(purpose="repair (stop the daemon first: it repairs at startup)")
    try:
        store = SessionStore(layout, backups_kept=cfg.retention.keep_last)
        misspelled = spelling.normalize(store, repair=repair)
        # The copy preferred as the daemon would; damage is always repaired (what brings a
        # session the daemon kept offline back at its next start).
        report, recovered = recover_all(store, repair=repair, check_backups=True, prefer=cfg.recovery_prefer)
        report.other.extend(misspelled)
        index = search_index_state(layout, recovered, repair, reindex)
    finally:
        if lock is not None:
            lock.release()
    if as_json:
        payload = msgspec.to_builtins(report)
        payload["healthy"] = report.healthy
        payload["search_index"] = index
        sys.stdout.write(msgspec.json.encode(payload).decode() + "\n")
    else:
        print_report(report)
        print(f"  search index: {index['says']}")
    if repair:
        return 0 if report.clean_after_repair else 1
    return 0 if report.healthy else 1


def fsck_scrub(cfg: config_mod.Config, repair: bool, as_json: bool) -> int:
    """`docpilotd fsck --scrub`: every retained generation and journal segment read and checked
    (storage/scrubbing.py), one line per problem and the totals; `--repair` repairs, holding the
    data lock as `fsck --repair` does. Exit 1 when a problem was found (after --repair: when one
    was not repaired from a good copy)."""
    from .errors import DataRootNotFound
    from .storage import scrubbing
    from .storage.lock import DataLock
    from .storage.store import SessionStore

    layout = layout_for(cfg.home)
    if not layout.root.is_dir():
        raise DataRootNotFound(f"no data root at {layout.root}: nothing to scrub (is DOCPILOT_HOME or data_dir right?)")
    lock: DataLock | None = None
    if repair:
        lock = DataLock(layout.lock)
        lock.acquire(purpose="repair (stop the daemon first: it scrubs on its own schedule)")
    try:
        store = SessionStore(layout)
        report = scrubbing.scrub(store, repair_found=repair)
        if repair:
            scrubbing.save_last(store.ops, layout, scrubbing.summary(report))
    finally:
        if lock is not None:
            lock.release()
    remaining = [p for p in report.problems if not p.repaired] if repair else report.problems
    if as_json:
        payload = {"root": str(layout.root), "repair": repair, "files": report.files, "bytes": report.bytes,
                   "seconds": round(report.seconds, 3), "mb_per_s": round(report.mb_per_s, 1),
                   "problems": msgspec.to_builtins(report.problems), "healthy": not remaining}
        sys.stdout.write(msgspec.json.encode(payload).decode() + "\n")
    else:
        mode = "repair" if repair else "check only, nothing changed"
        print(f"docpilotd fsck --scrub: {layout.root} ({mode})")
        for problem in report.problems:
            print(f"  {report.line(problem)}")
        verdict = "no bit rot found" if not report.problems else (
            "every problem repaired" if not remaining else
            "problems remain" if repair else "problems found (run 'docpilotd fsck --scrub --repair')")
        print(f"{report.totals()}; {verdict}")
    return 1 if remaining else 0


def search_index_state(layout: Any, recovered: dict[str, Any], repair: bool, reindex: bool) -> dict[str, Any]:
    """The search index against the sessions recovery found (storage/search_index.py): checked,
    or with `repair` brought in line with them (made anew with `reindex`). It is derived data: what
    is found here never changes fsck's exit code (the daemon rebuilds it at start anyway)."""
    from .storage import search_index

    path = search_index.path_of(layout)
    marks = {sid: search_index.session_mark(found.outline, found.seq) for sid, found in recovered.items()}
    if not repair:
        found = search_index.check(path, marks)
        says = {
            "ok": f"ok ({len(marks)} session(s))",
            "missing": "missing: the daemon builds it at start (fsck --repair builds it now)",
            "damaged": f"damaged ({found.detail}): would be made anew from the sessions",
            "behind": f"{len(found.stale)} session(s) not indexed as they are, {len(found.unknown)} no longer there: "
                      "would be indexed again (a running daemon does it by itself)",
        }[found.state]
        return {"state": found.state, "stale": len(found.stale), "unknown": len(found.unknown), "says": says}

    def loader(found: Any) -> Any:
        def load() -> Any:
            try:
                return found.session, found.seq
            except DocpilotError:
                return None
        return load

    try:
        why, indexed, dropped = search_index.rebuild(
            path, [(sid, marks[sid], loader(found)) for sid, found in recovered.items()], from_scratch=reindex)
    except DocpilotError as exc:
        return {"state": "unavailable", "stale": 0, "unknown": 0, "says": f"not rebuilt: {exc.message}"}
    except Exception as exc:  # sqlite3 or the file system: the sessions are repaired all the same
        return {"state": "unavailable", "stale": 0, "unknown": 0, "says": f"not rebuilt: {exc}"}
    if why is not None:
        says = f"made anew ({why}): {indexed} session(s) indexed"
    elif indexed or dropped:
        says = f"{indexed} session(s) indexed again, {dropped} dropped"
    else:
        says = f"ok ({len(marks)} session(s))"
    return {"state": "rebuilt" if why is not None else "ok", "stale": 0, "unknown": 0, "says": says}


def print_report(report: Any) -> None:
    mode = "repair" if report.repair else "check only, nothing changed"
    print(f"docpilotd fsck: {report.root} ({mode}; recovery_prefer = {report.prefer})")
    counts: dict[str, int] = {}
    for s in report.sessions:
        counts[s.status] = counts.get(s.status, 0) + 1
        what = f"{s.source} ({s.state}, {s.commands} commands, {s.annotations} annotations)" if s.source else "-"
        print(f"  {s.session_id}  {s.status.replace('_', ' ')}  {what}")
        for line in s.problems:
            print(f"      problem: {line}")
        for line in s.actions:
            print(f"      {line}")
        if s.lost_window:
            print(f"      lost: {s.lost_window}")
    for line in report.other:
        print(f"  {line}")
    summary = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(counts.items())) or "no sessions"
    if report.repair:
        verdict = "everything in sessions/ is valid" if report.clean_after_repair else "problems remain"
    else:
        verdict = "healthy" if report.healthy else "problems found (run 'docpilotd fsck --repair')"
    print(f"{len(report.sessions)} sessions: {summary}; {verdict}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
