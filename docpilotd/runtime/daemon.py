"""`docpilotd run`: logging, optional detaching, and the event loop around `App`.

With `--detach`, python-daemon's DaemonContext forks first; the event loop, the threads and the
log handlers are all created after it, in the child (a forked loop or thread does not survive).
"""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import os
import sys
from pathlib import Path

from ..config import Config
from ..paths import layout_for
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
    if config.log_file is None:
        config.log_file = str(layout.root / "docpilotd.log")
    context = daemon.DaemonContext(
        working_directory=str(layout.root), umask=0o077, detach_process=True,
    )
    with context:
        layout.pid_file.write_text(f"{os.getpid()}\n")
        try:
            setup_logging(config)
            return asyncio.run(App(config, config_file).run())
        finally:
            try:
                layout.pid_file.unlink()
            except OSError:
                pass
