"""systemd's notify protocol with the standard library alone.

`send` writes `READY=1`, `STATUS=…`, `STOPPING=1` or `WATCHDOG=1` datagrams to `$NOTIFY_SOCKET`
(a path, or an abstract name starting with '@'); without NOTIFY_SOCKET it does nothing. The
watchdog heartbeat runs on the event loop, so a hung loop stops the heartbeats and systemd
restarts the daemon, which is the point.
"""

from __future__ import annotations

import asyncio
import os
import socket


def send(*lines: str) -> bool:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(lines).encode())
    except OSError:
        return False
    return True


def watchdog_interval() -> float | None:
    """Half of WATCHDOG_USEC in seconds (systemd's advice), when it is meant for this process."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2_000_000 if value > 0 else None


def start_watchdog(loop: asyncio.AbstractEventLoop) -> asyncio.Task[None] | None:
    interval = watchdog_interval()
    if interval is None or not os.environ.get("NOTIFY_SOCKET"):
        return None

    async def beat() -> None:
        while True:
            send("WATCHDOG=1")
            await asyncio.sleep(interval)

    return loop.create_task(beat())
