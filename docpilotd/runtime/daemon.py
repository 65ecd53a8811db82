"""`docpilotd run`: logging, optional detaching, and the event loop around `App`.

With `--detach`, python-daemon's DaemonContext forks first; the event loop, the threads and the
log handlers are all created after it, in the child (a forked loop or thread does not survive).
Before forking, the data lock is tried once in the foreground, so that a refusal (another daemon
owns the data root) reaches the person who ran the command instead of the detached child's
/dev/null; the child then takes the lock for good and writes the pid file while holding it.
The command that was run waits (a pipe from the daemon) until the daemon serves, then prints its
pid and log file (`docpilotd.log` in the data root unless `log_file` says otherwise) and exits 0;
an error that stops the daemon before it serves is printed there too, with its exit code.
"""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import os
import select
import sys
import time
from pathlib import Path

from ..config import Config
from ..errors import DocpilotError, StorageError
from ..paths import layout_for
from ..storage.lock import DataLock
from .app import App


def setup_logging(config: Config) -> None:
    root = logging.getLogger("docpilotd")
    root.handlers.clear()
    root.setLevel(config.log_level.upper())
    if config.log_file:
        path = Path(config.log_file).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        handler: logging.Handler = logging.handlers.RotatingFileHandler(path, maxBytes=5_000_000, backupCount=3)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        # journald adds its own timestamps; a terminal user still sees the level.
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.propagate = False
    for noisy in ("apscheduler", "watchdog"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run(config: Config, detach: bool = False, config_file: str | None = None) -> int:
    if detach:
        return _run_detached(config, config_file)
    setup_logging(config)
    return asyncio.run(App(config, config_file).run())


def _run_detached(config: Config, config_file: str | None) -> int:
    import daemon  # python-daemon; imported only here

    layout = layout_for(config.home)
    layout.ensure()
    probe = DataLock(layout.lock)
    probe.acquire()  # raises DaemonAlreadyRunning here, in the foreground
    probe.release()
    if config.log_file is None:
        config.log_file = str(layout.root / LOG_NAME)
    log_file = str(Path(config.log_file).expanduser().absolute())
    reader, writer = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child:  # the command the person ran: it waits until the daemon serves and says where it is
        os.close(writer)
        try:
            code = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
            # A refusal before detaching was printed by the child, on this terminal.
            return code if code != 0 else _report_start(reader, log_file)
        finally:
            os.close(reader)
    os.close(reader)
    channel = _Channel(writer)
    context = daemon.DaemonContext(
        working_directory=str(layout.root), umask=0o077, detach_process=True, files_preserve=[writer],
    )
    with context:
        channel.say(f"pid {os.getpid()}")
        setup_logging(config)
        try:
            return asyncio.run(App(config, config_file, pid_file=layout.pid_file, on_ready=channel.ready).run())
        except DocpilotError as exc:  # stderr is /dev/null now: the log is where it can be read
            logging.getLogger("docpilotd").error("%s", exc.message)
            channel.say(f"error {exc.exit_code} {exc.message}")
            raise
        except OSError as exc:
            logging.getLogger("docpilotd").error("%s", exc)
            where = f": {exc.filename}" if exc.filename else ""
            channel.say(f"error {StorageError.exit_code} {exc.strerror or exc}{where}")
            raise
        finally:
            channel.close()


LOG_NAME = "docpilotd.log"  # a detached daemon's log, in the data root, unless log_file says otherwise
# How long `run --detach` waits for the daemon to serve (recovery of a large data root comes first).
DETACH_WAIT_S = 60.0


class _Channel:
    """A detached daemon's line back to the command that started it (a pipe): its pid, then
    "ready" or the error that stopped it. Closed after either, never written once closed."""

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd

    def say(self, line: str) -> None:
        if self.fd is None:
            return
        try:
            os.write(self.fd, (line.replace("\n", " ") + "\n").encode("utf-8", "replace"))
        except OSError:
            pass  # nobody waits any more (the command was interrupted): the daemon goes on

    def ready(self) -> None:
        self.say("ready")
        self.close()

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            try:
                os.close(fd)
            except OSError:
                pass


def _report_start(reader: int, log_file: str) -> int:
    """Wait for the detached daemon's word: print its pid and log file once it serves (0), its
    error as `docpilotd: ...` with that error's exit code, or that it is still starting (0)."""
    deadline = time.monotonic() + DETACH_WAIT_S
    buffer = b""
    pid: str | None = None
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([reader], [], [], left)[0]:
            continue
        chunk = os.read(reader, 4096)
        if not chunk:
            break
        buffer += chunk
        while b"\n" in buffer:
            raw, _, buffer = buffer.partition(b"\n")
            word, _, rest = raw.decode("utf-8", "replace").partition(" ")
            if word == "pid":
                pid = rest
            elif word == "ready":
                print(f"docpilotd is running in the background: pid {pid} (stop it with 'docpilotd stop')")
                print(f"log: {log_file}")
                return 0
            elif word == "error":
                code, _, message = rest.partition(" ")
                print(f"docpilotd: {message}", file=sys.stderr)
                return int(code) if code.isdigit() else DocpilotError.exit_code
    else:
        print(f"docpilotd started in the background (pid {pid}) and is still recovering its data; "
              "it serves once that is done")
        print(f"log: {log_file}")
        return 0
    print(f"docpilotd: the daemon (pid {pid}) exited before it served; its log says why: {log_file}", file=sys.stderr)
    return DocpilotError.exit_code
