"""`docpilotd run`: logging, optional detaching, and the event loop around `App`.

With `--detach`, python-daemon's DaemonContext forks first; the event loop, the threads and the
log handlers are all created after it, in the child (a forked loop or thread does not survive).
Before forking, the data lock is tried once in the foreground, so that a refusal (another daemon
owns the data root) reaches the person who ran the command instead of the detached child's
/dev/null; the child then takes the lock for good and writes the pid file while holding it.
"""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import sys
from pathlib import Path

from ..config import Config
from ..errors import DocpilotError
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
    from daemon.pidfile import TimeoutPIDLockFile  # noqa: F401  (documented alternative)

    layout = layout_for(config.home)
    layout.ensure()
    probe = DataLock(layout.lock)
    probe.acquire()  # raises DaemonAlreadyRunning here, in the foreground
    probe.release()
    if config.log_file is None:
        config.log_file = str(layout.root / "docpilotd.log")
    context = daemon.DaemonContext(
        working_directory=str(layout.root), umask=0o077, detach_process=True,
    )
    with context:
        setup_logging(config)
        try:
            return asyncio.run(App(config, config_file, pid_file=layout.pid_file).run())
        except DocpilotError as exc:  # stderr is /dev/null now: the log is where it can be read
            logging.getLogger("docpilotd").error("%s", exc.message)
            raise
