"""Shared fixtures: the DocPilot reference session, an isolated data root, and a session builder."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from docpilotd.domain import changes
from docpilotd.domain.model import Annotation, CommandEntry, Session, SessionMetadata
from docpilotd.domain.timestamps import format_ns
from docpilotd.paths import Layout, layout_for
from docpilotd.storage import snapshot
from docpilotd.storage.store import SessionStore

# A verbatim copy of DocPilot's reference example (reference/docpilot-example-session.json).
REFERENCE = Path(__file__).parent / "data" / "docpilot-example-session.json"

# 2025-08-01T09:00:00Z, the day of DocPilot's example.
BASE_NS = 1_754_038_800 * 1_000_000_000


@pytest.fixture(scope="session")
def example_bytes() -> bytes:
    return REFERENCE.read_bytes()


@pytest.fixture
def example_session(example_bytes: bytes) -> Session:
    return msgspec.json.decode(example_bytes, type=Session)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data root as DOCPILOT_HOME; no user config file can leak in."""
    root = tmp_path / "home"
    config_home = tmp_path / "xdg-config"
    config_home.mkdir()
    monkeypatch.setenv("DOCPILOT_HOME", str(root))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config_home))
    monkeypatch.delenv("DOCPILOT_CONFIG", raising=False)
    return root


@pytest.fixture
def layout(home: Path) -> Layout:
    result = layout_for(home)
    result.ensure()
    return result


@pytest.fixture
def store(layout: Layout) -> SessionStore:
    return SessionStore(layout)


def metadata() -> SessionMetadata:
    return SessionMetadata(
        working_directory="/home/ada/projects",
        shell_type="zsh",
        platform="linux",
        hostname="ada-laptop",
        user="ada",
        tags=[],
        llm_provider=None,
        settings={},
    )


class Clock:
    """Deterministic timestamps: each call is one second after the previous one."""

    def __init__(self, start_ns: int = BASE_NS) -> None:
        self.ns = start_ns

    def __call__(self) -> str:
        self.ns += 1_000_000_000
        return format_ns(self.ns)


def new_id() -> str:
    return str(uuid.uuid4())


def command_change(text: str, at: str, exit_code: int | None = 0) -> changes.RecordCommand:
    entry = CommandEntry(
        command=text,
        timestamp=at,
        exit_code=exit_code,
        working_directory="/home/ada/projects",
        shell="zsh",
        output=None,
        error=None,
    )
    return changes.RecordCommand(entry=entry, event_id=new_id())


def annotate_change(text: str, at: str, kind: str = "Note") -> changes.Annotate:
    note = Annotation(id=new_id(), text=text, timestamp=at, annotation_type=kind)  # type: ignore[arg-type]
    return changes.Annotate(annotation=note, event_id=new_id())


def build_session(
    commands: int = 3,
    annotations: int = 1,
    description: str = "Set up the staging proxy",
    clock: Clock | None = None,
    session_id: str | None = None,
) -> Session:
    """A valid Active session made through the state machine: exit codes cycle 0, 1, None."""
    clock = clock or Clock()
    session = changes.create(
        changes.Create(
            session_id=session_id or new_id(),
            description=description,
            at=clock(),
            event_id=new_id(),
            metadata=metadata(),
        )
    )
    for index in range(commands):
        exit_code = (0, 1, None)[index % 3]
        session = changes.apply(session, command_change(f"echo step {index}", clock(), exit_code))
    for index in range(annotations):
        session = changes.apply(session, annotate_change(f"note {index}", clock()))
    return session


@pytest.fixture
def make_session() -> Callable[..., Session]:
    """`make_session(commands=N, annotations=M, ...)`: see `build_session`."""
    return build_session


def encoded(session: Session) -> bytes:
    """Canonical compact bytes of a session (for before/after comparisons)."""
    return snapshot.encode_body(session)


def tree_bytes(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` with its content (None for directories)."""
    found: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        found[rel] = None if path.is_dir() and not path.is_symlink() else (
            path.read_bytes() if path.is_file() and not path.is_symlink() else b"->" + str(path.readlink()).encode()
        )
    return found
