"""Where the wall clock and random ids enter the daemon: `now()` and `new_id()`.

Handlers and the capture recorder build complete changes (timestamps, uuids) from these two, so
the rest of the runtime and all of `domain/` stay free of clocks and randomness.
"""

from __future__ import annotations

import os
import threading
import time

from ..domain import timestamps

_ID_BATCH = 256  # ids per read of the kernel's random source
_id_pool = bytearray()
_id_pool_pid = 0
_id_lock = threading.Lock()


def now() -> str:
    return timestamps.format_ns(time.time_ns())


def new_id() -> str:
    """A random (version 4) UUID, as uuid.uuid4() makes it, at a fraction of the cost.

    A change needs two ids; reading os.urandom for each was two system calls per change, which
    on a virtual machine cost more than the rest of the handler. The bytes are the same kernel
    randomness, read 4 KB at a time; a forked process never reuses its parent's bytes (pid check).
    """
    global _id_pool, _id_pool_pid
    with _id_lock:
        if len(_id_pool) < 16 or _id_pool_pid != os.getpid():
            _id_pool, _id_pool_pid = bytearray(os.urandom(16 * _ID_BATCH)), os.getpid()
        raw = _id_pool[-16:]
        del _id_pool[-16:]
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
