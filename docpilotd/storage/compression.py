"""Compressed backup generations: one zstd frame holding a snapshot file's exact bytes.

A generation older than the newest is kept as `backups/{name}.zst`: one zstd frame (level 3) of
the plain file byte for byte, its content size and zstd's content checksum (XXH64) in the frame.
Decompressed, it is the plain file, whose own checksum (see `snapshot`) is then verified as
always: a damaged frame fails zstd's checks, and anything that slipped past them fails ours.

`decompress` never raises and never holds more than `MAX_DECOMPRESSED_BYTES` (plus one block)
whatever the input: a frame must declare its content size (docpilotd always writes it), a size
over the limit is refused before anything is decompressed, and zstd stops at the declared size
(a frame that produces more is damage). Everything that is not exactly one such frame -- zero
bytes, not zstd, truncated, a flipped bit, bytes after the frame -- gives the reason instead.
`holds` (the check before a plain generation is removed) and `tail` (a generation's journal
sequence, at the end of its content) decompress a step at a time and never hold the whole
content; `readable_part` gives what a damaged frame still holds (for redaction to look into).

Only this module imports `zstandard`; it is the one place that knows the format.
"""

from __future__ import annotations

import zstandard

LEVEL = 3  # zstd's default: most of the ratio of higher levels at several times their speed
# The largest file a compressed generation may decompress to. Plain snapshots are as large as
# the file on disk; a compressed one could claim anything, so it is bounded: a session of a
# million commands is a few hundred MB of JSON, far below it.
MAX_DECOMPRESSED_BYTES = 1 << 30


def compress(data: bytes) -> bytes:
    """One frame of `data`, with its size and content checksum. zstd releases the GIL while it
    works; a compressor object must not be shared between threads, so each call makes its own."""
    return zstandard.ZstdCompressor(level=LEVEL, write_checksum=True, write_content_size=True).compress(data)


VERIFY_INPUT = 64 << 10  # compressed bytes per step: about a megabyte of JSON out


def holds(frame: bytes, data: bytes) -> bool:
    """Whether `frame` is exactly one frame of ours that decompresses to exactly `data` (the check
    before a plain generation is removed). Decompressed and compared a step at a time: no whole
    second copy of `data` is made, and the interpreter lock is held for one step at most (a whole
    large output is allocated and copied holding it)."""
    try:
        params = zstandard.get_frame_parameters(frame)
    except zstandard.ZstdError:
        return False
    if params.content_size != len(data) or not params.has_checksum:
        return False
    inflater = zstandard.ZstdDecompressor().decompressobj()
    at = 0
    try:
        for start in range(0, len(frame), VERIFY_INPUT):
            chunk = inflater.decompress(frame[start : start + VERIFY_INPUT])
            if data[at : at + len(chunk)] != chunk:  # bytes: one memcmp (a memoryview compares item by item)
                return False
            at += len(chunk)
    except zstandard.ZstdError:  # its content checksum, or any other damage
        return False
    return inflater.eof and not inflater.unused_data and at == len(data)


def tail(frame: bytes, size: int) -> bytes | None:
    """The last `size` bytes of a frame's content (all of it when shorter), None when the frame
    is not a complete, intact frame of ours within the limit. Decompressed a step at a time
    keeping only the end: the content is never held whole (a generation's sequence is at its end)."""
    try:
        params = zstandard.get_frame_parameters(frame)
    except zstandard.ZstdError:
        return None
    if params.content_size > MAX_DECOMPRESSED_BYTES or not params.has_checksum:
        return None  # CONTENTSIZE_UNKNOWN and CONTENTSIZE_ERROR are larger than any limit
    inflater = zstandard.ZstdDecompressor().decompressobj()
    kept = b""
    try:
        for start in range(0, len(frame), VERIFY_INPUT):
            kept = (kept + inflater.decompress(frame[start : start + VERIFY_INPUT]))[-size:]
    except zstandard.ZstdError:
        return None
    return kept if inflater.eof and not inflater.unused_data else None


def decompress(data: bytes, limit: int | None = None) -> tuple[bytes | None, str | None]:
    """(the plain bytes, None), or (None, why they cannot be had). Never raises."""
    limit = MAX_DECOMPRESSED_BYTES if limit is None else limit
    if not data:
        return None, "empty file (zero bytes)"
    try:
        params = zstandard.get_frame_parameters(data)
    except zstandard.ZstdError as exc:
        return None, f"not a zstd frame ({exc})"
    size = params.content_size
    if size == zstandard.CONTENTSIZE_UNKNOWN or size == zstandard.CONTENTSIZE_ERROR:
        return None, "the zstd frame does not say how large its content is (docpilotd always writes it)"
    if size > limit:
        return None, f"would decompress to {size} bytes, over the limit of {limit}"
    if not params.has_checksum:
        return None, "the zstd frame has no content checksum (docpilotd always writes one)"
    inflater = zstandard.ZstdDecompressor().decompressobj()
    try:
        plain = inflater.decompress(data)
    except zstandard.ZstdError as exc:
        return None, f"damaged zstd frame ({exc})"
    except MemoryError:
        return None, "damaged zstd frame (out of memory while decompressing)"
    if not inflater.eof:
        return None, f"truncated zstd frame ({len(data)} bytes, {len(plain)} of {size} decompressed)"
    if inflater.unused_data:
        return None, f"{len(inflater.unused_data)} bytes after the zstd frame (docpilotd writes one frame)"
    if len(plain) != size:
        return None, f"the zstd frame decompressed to {len(plain)} bytes, not the {size} it declares"
    return plain, None


def readable_part(data: bytes, limit: int | None = None) -> bytes:
    """As much of a frame's content as decompresses before its damage, at most about `limit`
    bytes (to look for what a damaged file still holds; never trusted as a session). Never raises."""
    limit = MAX_DECOMPRESSED_BYTES if limit is None else limit
    inflater = zstandard.ZstdDecompressor().decompressobj()
    pieces: list[bytes] = []
    total = 0
    # Fed a little at a time: one zstd block of at most 128 KB needs a few bytes of input, so
    # what one call can produce stays bounded whatever the input claims.
    step = 256
    try:
        for at in range(0, len(data), step):
            piece = inflater.decompress(data[at : at + step])
            pieces.append(piece)
            total += len(piece)
            if total >= limit or inflater.eof:
                break
    except (zstandard.ZstdError, MemoryError):
        pass
    return b"".join(pieces)
