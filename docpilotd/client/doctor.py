"""`docpilot doctor [--json]`: checks the setup and says, one line per check, what is wrong and
what to do about it.

The checks, in order: `config` (the configuration loads as the daemon loads it), `data_root` (it
exists, is yours, 0700), `socket` (its directory and the socket are yours, 0700 and 0600),
`daemon` (it answers, on the data root this shell uses, saving normally), `version` (the daemon's
against this client's), `hooks` (loaded in this shell, and which shell), `session` (the session
DOCPILOT_SESSION joins is live), `service` (installed and active; optional), `spool` (commands the
hooks spooled that are not read yet) and `disk` (free space where the data root is).

Each check ends as one of:
  ok    nothing to do;
  warn  it works, but look: the line says what to do (a version mismatch, low disk space, a
        spool waiting for a daemon that is down, a service installed but not active);
  fail  something does not work, or commands or notes are lost or go astray: the line says
        how to fix it;
  skip  it could not be checked because another check failed (that one says why).
The exit status is 0 when no check failed (warnings allowed) and 1 when one did (as `docpilotd
fsck`: the check found problems); `--json` prints one object with every check.

Never hangs and never prints a traceback: the daemon is asked with a timeout; the two checks that
need the daemon's own modules (the configuration, read with msgspec, and the service manager) run
`docpilotd config --json` and `docpilotd service status` in this interpreter, in parallel, with a
timeout; a check that breaks unexpectedly is reported as failed, with what broke.

How a hooked shell is told: the hooks export DOCPILOT_SHELL (bash, zsh or fish) and `docpilot
join` exports DOCPILOT_SESSION; this process inherits both. A DOCPILOT_SHELL inherited by a shell
that did not load the hooks itself (a zsh started from a hooked bash) is caught when the parent
process is another shell.

Invariants: imported only by the `doctor` verb; like the rest of the client it imports neither
msgspec nor asyncio nor the daemon's modules; it changes nothing anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable

from .. import __version__, where
from ..errors import ConfigError, DaemonNotRunning, DocpilotError, PermissionDenied, SessionNotFound
from ..results import Hello, Status
from .hooks import SCRIPTS, this_shell
from .lean import print_json
from .transport import Connection

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
MARKS = {OK: "ok", WARN: "WARN", FAIL: "FAIL", SKIP: "skip"}
DAEMON_TIMEOUT_S = 5.0  # each answer of the daemon
COMMAND_TIMEOUT_S = 20.0  # `docpilotd config` and `docpilotd service status`
FULL_DISK_BYTES = 10 * 1024 * 1024  # below this the daemon soon refuses changes
LOW_DISK_BYTES = 100 * 1024 * 1024
LOW_DISK_SHARE = 0.05
SPOOL_BEHIND_BYTES = 1024 * 1024  # read within ~20 ms of an append: thousands of commands waiting is behind
START = "docpilotd run --detach (or 'docpilotd service install' to start it at every login)"
# `docpilot init SHELL` writes the hook once and prints the `source` line that loads it: a new
# shell then runs no Python (the older `eval "$(docpilot init bash)"` still works, slower).
INIT = {"bash": ("docpilot init bash", "~/.bashrc"), "zsh": ("docpilot init zsh", "~/.zshrc"),
        "fish": ("docpilot init fish", "~/.config/fish/config.fish")}


class Check:
    __slots__ = ("fix", "message", "name", "status")

    def __init__(self, name: str, status: str, message: str, fix: str | None = None) -> None:
        self.name = name
        self.status = status
        self.message = message
        self.fix = fix

    def as_json(self) -> dict[str, str | None]:
        return {"name": self.name, "status": self.status, "message": self.message, "fix": self.fix}

    def line(self) -> str:
        fix = f"; fix: {self.fix}" if self.fix and self.status in (WARN, FAIL) else ""
        return f"{MARKS[self.status]:<5} {self.name:<10} {self.message}{fix}"


class Doctor:
    """Runs the checks once, in order; `checks` holds what each found."""

    def __init__(self) -> None:
        self.checks: list[Check] = []
        self.root = where.configured_root()
        self.socket: str | None = None
        self.hello: Hello | None = None
        self.status: Status | None = None
        self.joined: Status | None = None
        self.joined_error: DocpilotError | None = None

    def add(self, name: str, status: str, message: str, fix: str | None = None) -> None:
        self.checks.append(Check(name, status, message, fix))

    def run(self) -> list[Check]:
        config = _Command("config", "--json")
        service = _Command("service", "status")
        steps: list[tuple[str, Callable[[], None]]] = [
            ("config", lambda: self.check_config(config)), ("data_root", self.check_data_root),
            ("socket", self.check_socket), ("daemon", self.check_daemon), ("version", self.check_version),
            ("hooks", self.check_hooks), ("session", self.check_session),
            ("service", lambda: self.check_service(service)), ("spool", self.check_spool), ("disk", self.check_disk),
        ]
        for name, step in steps:
            try:
                step()
            except Exception as exc:  # a bug in a check must not hide the others, nor print a traceback
                self.add(name, FAIL, f"the check itself broke: {type(exc).__name__}: {exc}",
                         "please report this, with the output of 'docpilot doctor --json'")
        return self.checks

    # -- the configuration ---------------------------------------------------------------------------

    def check_config(self, command: _Command) -> None:
        code, out, err = command.result()
        if code is None:
            self.add("config", WARN, f"could not be checked: {err}", "run 'docpilotd config' to see what it says")
            return
        if code != 0:
            self.add("config", FAIL, _first_line(err) or f"docpilotd config exited {code}",
                     "correct the key or value it names, in that file or variable ('docpilotd config' shows every "
                     "setting and where it came from); until then docpilotd refuses to start")
            return
        shown = json.loads(out)
        where_from = f"read from {shown['config_file']}" if shown["config_file_read"] else (
            f"no config file at {shown['config_file']}, so the defaults apply")
        changed = sum(1 for s in shown["settings"].values() if s["source"] != "default")
        self.add("config", OK, f"valid: {where_from}; {changed} setting(s) not default ('docpilotd config' lists them)")

    # -- files ---------------------------------------------------------------------------------------

    def check_data_root(self) -> None:
        root = self.root
        variable = os.environ.get("DOCPILOT_HOME")
        try:
            st = os.stat(root)
        except (FileNotFoundError, NotADirectoryError):
            if variable:
                self.add("data_root", FAIL, f"DOCPILOT_HOME={variable}, but {root} does not exist",
                         "check DOCPILOT_HOME (a typo? without it the data root is ~/.docpilot), or start a daemon "
                         f"there, which creates it: {START}")
            else:
                self.add("data_root", WARN, f"{root} does not exist yet", f"start the daemon, which creates it: {START}")
            return
        except OSError as exc:
            self.add("data_root", FAIL, f"cannot examine {root}: {exc.strerror}", "check its parent directories' permissions")
            return
        problem = _not_private(root, st, 0o077, directory=True)
        if problem:
            self.add("data_root", FAIL, problem[0], problem[1])
        else:
            self.add("data_root", OK, f"{root}: a directory of yours, mode {stat.S_IMODE(st.st_mode):04o}")

    def check_socket(self) -> None:
        try:
            path = where.socket_path()
        except ConfigError as exc:
            self.add("socket", FAIL, exc.message, "choose a shorter DOCPILOT_HOME (or data_dir)")
            return
        self.socket = path
        directory = os.path.dirname(path)
        try:
            st = os.stat(directory)
        except (FileNotFoundError, NotADirectoryError):
            self.add("socket", SKIP, f"no {directory} yet: no daemon has run for this data root")
            return
        except OSError as exc:
            self.add("socket", FAIL, f"cannot examine {directory}: {exc.strerror}", "check its permissions")
            return
        problem = _not_private(directory, st, 0o077, directory=True)
        if problem:
            self.add("socket", FAIL, problem[0], problem[1])
            return
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            self.add("socket", SKIP, f"no socket at {path}: docpilotd is not running")
            return
        except OSError as exc:
            self.add("socket", FAIL, f"cannot examine {path}: {exc.strerror}", "check its directory's permissions")
            return
        if not stat.S_ISSOCK(st.st_mode):
            self.add("socket", FAIL, f"{path} is not a socket", "move it away, then start docpilotd again")
            return
        problem = _not_private(path, st, 0o077, directory=False)
        if problem:
            self.add("socket", FAIL, problem[0], problem[1])
        else:
            self.add("socket", OK, f"{path}: yours, mode {stat.S_IMODE(st.st_mode):04o}, in a directory only you can enter")

    # -- the daemon ----------------------------------------------------------------------------------

    def check_daemon(self) -> None:
        _, joined = this_shell()
        try:
            with Connection(timeout=DAEMON_TIMEOUT_S) as conn:
                self.hello = conn.request("hello", Hello)
                self.status = conn.request("status", Status)
                if joined:
                    try:
                        self.joined = conn.request("status", Status, session=joined)
                    except DocpilotError as exc:
                        self.joined_error = exc
        except DaemonNotRunning as exc:
            self.add("daemon", FAIL, exc.message.split("; start it")[0], START)
            return
        except PermissionDenied as exc:
            self.add("daemon", FAIL, exc.message, "only you may own the socket and its directory (see the socket "
                     "check); is DOCPILOT_HOME right?")
            return
        except DocpilotError as exc:
            self.add("daemon", FAIL, exc.message, "restart docpilotd: docpilotd stop, then " + START)
            return
        assert self.status is not None
        d = self.status["daemon"]
        if os.path.realpath(d["root"]) != os.path.realpath(self.root):
            self.add("daemon", FAIL, f"the daemon at {self.socket} keeps {d['root']}, but this shell's data root is "
                     f"{self.root}: its hooks spool where that daemon does not read",
                     "run docpilotd with the DOCPILOT_HOME and configuration your shells use (docpilotd stop, then "
                     "docpilotd run --detach)")
            return
        what = (f"docpilotd answers (pid {d['pid']}, up {d['uptime_s']:.0f} s, {d['sessions']} sessions, "
                f"{d['live_sessions']} live; log: {d.get('log', 'see docpilotd run')})")
        if d["degraded"]:
            listed = "; ".join(f"{sid}: {why}" for sid, why in d["degraded"].items())
            self.add("daemon", WARN, f"{what}, but changes of {len(d['degraded'])} session(s) are not saved normally "
                     f"({listed})", "free disk space or fix what the log names; 'docpilot status' shows when it is over")
        else:
            self.add("daemon", OK, what)
        storage = d.get("storage")
        if storage and storage["over"]:
            self.add("storage", WARN, f"backups, journal and quarantine use {storage['used_mb']:.1f} MB, over the "
                     f"{storage['limit_mb']:.1f} MB of max_storage_mb even with backups pruned to each policy's "
                     f"keep_last (backups {storage['backups_mb']:.1f}, journal {storage['journal_mb']:.1f}, quarantine "
                     f"{storage['quarantine_mb']:.1f} MB)",
                     "raise max_storage_mb, lower keep_last, or remove sessions (docpilot purge, docpilot cleanup) "
                     "or quarantine files you have looked at")
        elif storage:
            self.add("storage", OK, f"{storage['used_mb']:.1f} MB of the {storage['limit_mb']:.1f} MB quota")

    def check_version(self) -> None:
        if self.hello is None:
            self.add("version", SKIP, f"no daemon to compare with (this docpilot is {__version__})")
        elif self.hello["daemon"] == __version__:
            self.add("version", OK, f"docpilot and docpilotd are both {__version__}")
        else:
            restart = ("systemctl --user restart docpilotd" if sys.platform != "darwin"
                       else "launchctl kickstart -k gui/$UID/com.docpilot.docpilotd")
            self.add("version", WARN, f"docpilotd runs {self.hello['daemon']}, this docpilot is {__version__}",
                     f"restart the daemon so it runs this version: docpilotd stop, then docpilotd run --detach (as a "
                     f"service: {restart})")

    # -- this shell ----------------------------------------------------------------------------------

    def check_hooks(self) -> None:
        shell, _ = this_shell()
        parent = _parent_shell()
        if shell and (parent is None or parent == shell):
            self.add("hooks", OK, f"loaded in this {shell} shell (DOCPILOT_SHELL={shell}): its commands are recorded")
            return
        guess = parent or _login_shell()
        line, rc_file = INIT[guess]
        if shell:
            self.add("hooks", FAIL, f"this is {parent}, which did not load the hooks (DOCPILOT_SHELL={shell} came "
                     f"from the {shell} that started it): commands typed here are not recorded",
                     f"run  {line}  and add the line it prints to {rc_file}, then open a new shell")
        else:
            self.add("hooks", FAIL, f"not loaded in this shell ({guess}; DOCPILOT_SHELL is not set): commands "
                     "typed here are not recorded", f"run  {line}  and add the line it prints to {rc_file}, then open a new shell")

    def check_session(self) -> None:
        _, joined = this_shell()
        leave = "docpilot leave (in a shell without the hooks: unset DOCPILOT_SESSION)"
        if not joined:
            self.add("session", OK, "this shell is not joined: its commands and notes go to the current session "
                     "('docpilot join ID' pins one)")
            return
        if self.hello is not None:
            if isinstance(self.joined_error, SessionNotFound):
                self.add("session", FAIL, f"DOCPILOT_SESSION={joined}: no such session (purged, or of another data "
                         "root): notes are refused and commands go nowhere", leave)
            elif self.joined_error is not None:
                self.add("session", FAIL, f"DOCPILOT_SESSION={joined}: {self.joined_error.message}", leave)
            elif self.joined is not None and self.joined["session"] is not None:
                s = self.joined["session"]
                if s["state"] in ("Active", "Paused"):
                    self.add("session", OK, f"joined to {s['id']} ({s['state']}, \"{s['description']}\")")
                else:
                    self.add("session", FAIL, f"joined to {s['id']}, which is {s['state']}: nothing typed here is "
                             "recorded and notes are refused", leave + ", or 'docpilot join ID' of a live session")
            return
        # No daemon: the capture markers the hooks read say which sessions are live.
        markers = os.path.join(self.root, "spool", "active")
        try:
            names = os.listdir(markers)
        except OSError:
            names = []
        live = [n for n in names if n != "current" and n.startswith(joined)]
        if live:
            state = "Paused" if live[0].endswith(".paused") else "Active"
            self.add("session", OK, f"joined to {joined} ({state} when docpilotd last ran)")
        else:
            self.add("session", FAIL, f"joined to {joined}, which was not live when docpilotd last ran: nothing typed "
                     "here is recorded", leave)

    # -- service, spool, disk ------------------------------------------------------------------------

    def check_service(self, command: _Command) -> None:
        code, out, err = command.result()
        reason = _first_line(err)
        if code is None:
            self.add("service", WARN, f"could not be checked: {err}", "run 'docpilotd service status' to see what it says")
            return
        installed = any(line.endswith(": installed") for line in out.splitlines())
        start = ("launchctl kickstart gui/$UID/com.docpilot.docpilotd" if sys.platform == "darwin"
                 else "systemctl --user start docpilotd (journalctl --user -u docpilotd says why it stopped)")
        if code == 0:
            self.add("service", OK, f"installed and active: {out.strip().splitlines()[-1]}")
        elif not installed:
            nobody = " (and no user service manager answers here)" if code == 11 else ""
            why = f": {reason}" if code not in (1, 11) and reason else ""
            self.add("service", OK, f"not installed{why}{nobody}; optional: 'docpilotd service install' starts "
                     "docpilotd at login and after a crash")
        elif code == 11:
            self.add("service", WARN, f"installed, but no user service manager answers here ({reason})",
                     "check it from a login session: docpilotd service status")
        elif self.hello is not None:
            self.add("service", WARN, "installed but not active: the docpilotd that answers was started another way",
                     f"docpilotd stop, then {start}")
        else:
            self.add("service", WARN, "installed but not active", start)

    def check_spool(self) -> None:
        daemon = self.status["daemon"] if self.status is not None else None
        if daemon is not None and "spool" in daemon:
            size, files = daemon["spool"]["bytes"], daemon["spool"]["files"]
            if size < SPOOL_BEHIND_BYTES:
                self.add("spool", OK, "nothing waiting: docpilotd has read what the hooks spooled" if not size
                         else f"{_size(size)} in {files} file(s) being read")
            else:
                self.add("spool", WARN, f"{_size(size)} of commands in {files} file(s) not read yet: docpilotd is "
                         "behind", "nothing is lost, they are read in order; if it does not shrink, the log says why")
            return
        if daemon is not None:
            self.add("spool", SKIP, "this docpilotd does not report its spool (an older version)")
            return
        lines, files = _count_spooled(os.path.join(self.root, "spool"))
        if not lines:
            self.add("spool", OK, "nothing waiting")
        else:
            self.add("spool", WARN, f"{lines} command(s) in {files} spool file(s) wait for docpilotd (hooks spool while "
                     "it is down)", f"start it; it reads them before it serves (what it recorded before is skipped): {START}")

    def check_disk(self) -> None:
        path = self.root
        while not os.path.isdir(path) and os.path.dirname(path) != path:
            path = os.path.dirname(path)
        st = os.statvfs(path)
        free, total = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
        share = free / total if total else 1.0
        text = f"{_size(free)} free of {_size(total)} ({share:.0%}) where {self.root} is"
        cleanup = "free some space ('docpilot cleanup --max-age-days N' removes old stopped sessions)"
        if free < FULL_DISK_BYTES:
            self.add("disk", FAIL, f"{text}: docpilotd refuses changes when the disk is full", cleanup)
        elif free < LOW_DISK_BYTES or share < LOW_DISK_SHARE:
            self.add("disk", WARN, f"{text}: little left", cleanup)
        else:
            self.add("disk", OK, text)


class _Command:
    """`docpilotd ARGS` in this interpreter, started now, its result read later (with a timeout)."""

    def __init__(self, *args: str) -> None:
        package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
        self.error = ""
        self.proc: subprocess.Popen[bytes] | None = None
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", "docpilotd.admin", *args], env=env,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as exc:
            self.error = f"cannot run {sys.executable}: {exc.strerror}"

    def result(self) -> tuple[int | None, str, str]:
        """(exit status, stdout, stderr); (None, "", why) when it could not run or took too long."""
        if self.proc is None:
            return None, "", self.error
        try:
            out, err = self.proc.communicate(timeout=COMMAND_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            return None, "", f"no answer within {COMMAND_TIMEOUT_S:.0f} s"
        return self.proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip().removeprefix("docpilotd: ")
    return ""


def _not_private(path: str, st: os.stat_result, others: int, directory: bool) -> tuple[str, str] | None:
    """(problem, fix) when `path` is not ours alone, else None."""
    if directory and not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory", "move it away (docpilotd makes the directory it needs)"
    if st.st_uid != os.geteuid():
        return (f"{path} belongs to uid {st.st_uid}, not to you (uid {os.geteuid()})",
                "use a data root of your own (DOCPILOT_HOME), or give this one back to you (chown)")
    mode = stat.S_IMODE(st.st_mode)
    if mode & others:
        wanted = "700" if directory else "600"
        return (f"{path} has mode {mode:04o}: other users can get in (it must be {wanted})", f"chmod {wanted} {path}")
    return None


def _parent_shell() -> str | None:
    """bash, zsh or fish when this process was started by one (the shell the user is in)."""
    parent = os.getppid()
    try:
        with open(f"/proc/{parent}/comm", encoding="utf-8", errors="replace") as handle:
            name = handle.read().strip()
    except OSError:
        try:
            done = subprocess.run(["ps", "-o", "comm=", "-p", str(parent)], capture_output=True, timeout=5,
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            return None
        name = os.path.basename(done.stdout.decode("utf-8", "replace").strip())
    name = name.lstrip("-")
    return name if name in SCRIPTS else None


def _login_shell() -> str:
    name = os.path.basename(os.environ.get("SHELL", ""))
    return name if name in SCRIPTS else "bash"


def _count_spooled(directory: str) -> tuple[int, int]:
    """Complete lines and files in the spool (all of it: without a daemon, nobody knows what was read)."""
    lines = files = 0
    try:
        names = os.listdir(directory)
    except OSError:
        return 0, 0
    for name in names:
        if not name.endswith((".jsonl", ".claimed")):
            continue
        try:
            fd = os.open(os.path.join(directory, name), os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            found = 0
            while chunk := os.read(fd, 1024 * 1024):
                found += chunk.count(b"\n")
        except OSError:
            continue
        finally:
            os.close(fd)
        if found:
            lines, files = lines + found, files + 1
    return lines, files


def _size(count: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if count < 1024 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TB"  # pragma: no cover


def main(args: argparse.Namespace) -> int:
    """Run every check, print them (one line each, or one JSON object), exit 1 if one failed."""
    checks = Doctor().run()
    counts = {status: sum(1 for c in checks if c.status == status) for status in (OK, WARN, FAIL, SKIP)}
    if args.json:
        print_json({"ok": not counts[FAIL], "version": __version__, "counts": counts,
                    "checks": [c.as_json() for c in checks]})
    else:
        for check in checks:
            print(check.line())
        verdict = "everything works" if not counts[FAIL] else "see the fixes above"
        print(f"docpilot {__version__} doctor: {counts[OK]} ok, {counts[WARN]} warning(s), {counts[FAIL]} failed, "
              f"{counts[SKIP]} skipped: {verdict}")
    return 1 if counts[FAIL] else 0
