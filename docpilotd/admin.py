"""`docpilotd`: the daemon's command line (run it, check its data).

    docpilotd run [--detach] [--config FILE] [--home DIR] [...]   serve (foreground by default)
    docpilotd fsck [--repair] [--json] [--home DIR]              check (and repair) the data root
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

    run = sub.add_parser("run", parents=[common], help="run the daemon (in the foreground)")
    run.add_argument("--detach", action="store_true", help="daemonize (for starting by hand)")
    run.add_argument("--autosave-interval", type=float, help="seconds between autosaves")
    run.add_argument("--backups-kept", type=int, help="backup generations kept per session")
    run.add_argument("--durability", choices=["always", "batch", "off"], help="when changes are fsynced")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    run.add_argument("--log-file", help="log to this file (rotated) instead of stderr")

    fsck = sub.add_parser("fsck", parents=[common], help="check the data root; --repair fixes it")
    fsck.add_argument("--repair", action="store_true", help="restore, quarantine and clean up")
    fsck.add_argument("--json", action="store_true", help="print the report as JSON")

    service = sub.add_parser("service", help="run docpilotd as a user service (systemd or launchd)")
    actions = service.add_subparsers(dest="action", metavar="ACTION", required=True)
    install = actions.add_parser(
        "install", parents=[common], help="write the unit (or LaunchAgent) with this installation's paths, enable it"
    )
    install.add_argument("--socket", action="store_true", help="systemd: also a socket unit (socket activation)")
    actions.add_parser("uninstall", help="stop, disable and remove what install wrote (data and logs stay)")
    actions.add_parser("status", help="what is installed and whether the service manager runs it")
    return parser


def load_config(args: argparse.Namespace) -> config_mod.Config:
    overrides: dict[str, Any] = {"data_dir": getattr(args, "home", None)}
    for key in ("autosave_interval", "backups_kept", "durability", "log_level", "log_file"):
        overrides[key] = getattr(args, key, None)
    return config_mod.load(getattr(args, "config", None), overrides)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.verb is None:
            build_parser().print_help()
            return 2
        if getattr(args, "home", None):
            os.environ["DOCPILOT_HOME"] = args.home  # one meaning of "home" for every module
        cfg = load_config(args)
        if args.verb == "fsck":
            return fsck(cfg, repair=args.repair, as_json=args.json)
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


def fsck(cfg: config_mod.Config, repair: bool, as_json: bool) -> int:
    from .storage import spelling
    from .storage.lock import DataLock
    from .storage.recovery import recover_all
    from .storage.store import SessionStore

    layout = layout_for(cfg.home)
    lock: DataLock | None = None
    if repair:
        # Repairing writes: only the owner of the data root may do it (promise 4).
        layout.ensure()
        lock = DataLock(layout.lock)
        lock.acquire(purpose="repair (stop the daemon first: it repairs at startup)")
    try:
        store = SessionStore(layout, backups_kept=cfg.backups_kept)
        misspelled = spelling.normalize(store, repair=repair)
        report, _ = recover_all(store, repair=repair, check_backups=True)
        report.other.extend(misspelled)
    finally:
        if lock is not None:
            lock.release()
    if as_json:
        payload = msgspec.to_builtins(report)
        payload["healthy"] = report.healthy
        sys.stdout.write(msgspec.json.encode(payload).decode() + "\n")
    else:
        print_report(report)
    if repair:
        return 0 if report.clean_after_repair else 1
    return 0 if report.healthy else 1


def print_report(report: Any) -> None:
    mode = "repair" if report.repair else "check only, nothing changed"
    print(f"docpilotd fsck: {report.root} ({mode})")
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
