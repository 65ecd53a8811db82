"""A generated document: rendered here, written by the client; and which output files to trust.

The daemon renders the Markdown (in its I/O pool: `freeze` runs on the loop, pointer copies only)
and sends it back with the session's `output_file` and whether that file can be trusted. The
client decides where the document goes and writes it, as the user, relative to the user's
directory (docpilotd.client.destination: a FIFO or a device is written into, a link followed, a
regular file replaced atomically, the data root refused).

Trust. A session's `output_file` is where a bare `docpilot generate` writes, so it must be a place
the user chose here, with `docpilot start --output-file`: not one that came with an imported
(shared) session, nor one written into a session file by another program. `start` stores the path
absolute and marks it in the session's `metadata.settings["docpilotd.output_file"]` with an HMAC
(SHA-256) of the session id and the path, under a key kept in the data root (`docpilotd.key`, 32
random bytes, 0600, created by the first `start --output-file`). An output file is trusted only
when that mark verifies: an import drops the mark, a file from elsewhere cannot make one (nor can
an edit that changes the path), and a restore brings back the mark of the same session. Without
the key (deleted), nothing is trusted: `generate -o` still writes anywhere the user names.

For the older protocol (`generate` with an absolute `output`), the daemon writes that path itself
with the same rules, except that it never writes into a FIFO or a device (that could block it).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

import msgspec

from .. import destination
from ..domain.model import Session
from ..errors import UsageError
from ..paths import Layout
from . import markdown
from .view import DEFAULT_OPTIONS, Options

TRUST_SETTING = "docpilotd.output_file"
KEY_NAME = "docpilotd.key"
KEY_SIZE = 32
_MARK_VERSION = "v1"

log = logging.getLogger("docpilotd.render")
_keys: dict[str, bytes] = {}
_keys_lock = threading.Lock()


@dataclass(frozen=True)
class Spec:
    """How a document is laid out: the template's name, the view's options, the user's templates."""

    template: str = "standard"
    options: Options = DEFAULT_OPTIONS
    user_templates: Path | None = None


def render(session: Session, spec: Spec) -> str:
    return markdown.render(session, spec.template, spec.options, spec.user_templates)


def freeze(session: Session) -> Session:
    """A view of the session that later changes cannot alter, at the cost of pointer copies.

    The loop keeps appending to the live session's lists while a thread renders; items are never
    mutated once appended (see storage.snapshot), so copying the lists is enough."""
    return msgspec.structs.replace(
        session, commands=list(session.commands), annotations=list(session.annotations), events=[]
    )


# -- where documents may never go ---------------------------------------------------------------


def private_places(layout: Layout) -> tuple[list[str], list[str]]:
    """The daemon's directories and its configuration files: never a document's destination."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    configs = [os.path.join(base, "docpilot", "docpilotd.toml"), str(layout.root / "docpilotd.toml")]
    if os.environ.get("DOCPILOT_CONFIG"):
        configs.append(os.environ["DOCPILOT_CONFIG"])
    return [str(layout.root), str(layout.run_dir)], configs


def absolute_output_file(given: str, cwd: str | None) -> str:
    """`start --output-file`, stored absolute: a relative path (an older client) is taken from the
    directory `start` ran in."""
    path = Path(given).expanduser()
    if not path.is_absolute():
        if not cwd or not Path(cwd).is_absolute():
            raise UsageError("start needs an absolute --output-file (or the directory it ran in)")
        path = Path(cwd) / path
    return os.path.normpath(path)


def check_output_file(path: str, layout: Layout) -> None:
    """Refuse, at `start`, an output file inside the data root or on a configuration file."""
    forbidden, configs = private_places(layout)
    destination.refuse_private(path, (path,), forbidden, configs)


# -- trust ---------------------------------------------------------------------------------------


def _read_key(path: Path) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_size != KEY_SIZE:
            return None
        data = os.read(fd, KEY_SIZE + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data if len(data) == KEY_SIZE else None


def _create_key(path: Path) -> bytes:
    key = os.urandom(KEY_SIZE)
    temp = path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except OSError:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return key


def _key(layout: Layout, create: bool) -> bytes | None:
    path = layout.root / KEY_NAME
    with _keys_lock:
        key = _keys.get(str(path)) or _read_key(path)
        if key is None and create:
            if path.exists() or path.is_symlink():
                log.warning("%s is not a valid key: replacing it (output files marked with it are no longer trusted)", path)
            try:
                key = _create_key(path)
            except OSError as exc:
                log.warning("cannot create %s: %s; the output file is not marked as trusted", path, exc.strerror)
                return None
        if key is not None:
            _keys[str(path)] = key
        return key


def _mark(key: bytes, session_id: str, output_file: str) -> str:
    message = b"\0".join((
        b"docpilotd output_file", session_id.encode("utf-8", "surrogatepass"),
        output_file.encode("utf-8", "surrogatepass"),
    ))
    return f"{_MARK_VERSION}:{hmac.new(key, message, hashlib.sha256).hexdigest()}"


def mark_output_file(layout: Layout, session_id: str, output_file: str) -> dict[str, str]:
    """The settings entry that marks `output_file` as chosen here for `session_id` (empty when no
    key can be made: the file is then simply not trusted)."""
    key = _key(layout, create=True)
    return {TRUST_SETTING: _mark(key, session_id, output_file)} if key is not None else {}


def output_file_trusted(session: Session, layout: Layout) -> bool:
    """Whether `session.output_file` was set by `docpilot start` in this data root (see above)."""
    given = session.metadata.settings.get(TRUST_SETTING)
    if not session.output_file or not given or not Path(session.output_file).is_absolute():
        return False
    key = _key(layout, create=False)
    return key is not None and hmac.compare_digest(given, _mark(key, session.id, session.output_file))


def untrusted(session: Session) -> Session:
    """The session without any trust mark (an import: whatever it says, its output file is not ours)."""
    if TRUST_SETTING not in session.metadata.settings:
        return session
    settings = {k: v for k, v in session.metadata.settings.items() if k != TRUST_SETTING}
    return msgspec.structs.replace(session, metadata=msgspec.structs.replace(session.metadata, settings=settings))


def shown_output_file(session: Session) -> str | None:
    """The session's output file as an absolute path (an older or foreign session may hold a
    relative one: it was relative to the directory the session started in)."""
    if not session.output_file:
        return None
    path = Path(session.output_file)
    if not path.is_absolute():
        path = Path(session.metadata.working_directory or "/") / path
    return os.path.normpath(path)


# -- the result ------------------------------------------------------------------------------------


def generate(session: Session, requested: str | None, layout: Layout, spec: Spec = Spec()) -> dict[str, object]:
    """Render the document; the result the client gets.

    Without `requested`: the Markdown, with `output_file` (absolute, or None) and
    `output_file_trusted`: the client writes it. With `requested` (the older protocol, an absolute
    path): written here, by the client's rules minus FIFOs and devices; `path` and `bytes`."""
    text = render(session, spec)
    result: dict[str, object] = {
        "session": session.id, "commands": len(session.commands), "annotations": len(session.annotations),
    }
    if requested is None:
        result["markdown"] = text
        result["output_file"] = shown_output_file(session)
        result["output_file_trusted"] = output_file_trusted(session, layout)
        return result
    if not Path(requested).is_absolute():
        raise UsageError("generate needs an absolute output path (the client resolves it)")
    data = text.encode("utf-8", "replace")
    forbidden, configs = private_places(layout)
    named, _ = destination.write(
        requested, data, name=f"{session.id}.md", forbidden=forbidden, config_files=configs, special=False
    )
    result["path"] = named
    result["bytes"] = len(data)
    return result
