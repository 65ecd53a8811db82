"""One daemon per data root, start-up order, signals, permissions and `--detach`."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_harness import DAEMON_CMD, REFERENCE, Daemon, DaemonFactory, wait_for


def test_second_daemon_is_refused_and_the_first_keeps_serving(daemons: DaemonFactory) -> None:
    first = daemons()
    sid = first.call("start", description="Owned by the first daemon")["id"]
    first.call("save")
    socket_inode = first.socket_path.stat().st_ino
    before = first.tree()

    second = subprocess.run(
        [*DAEMON_CMD], env=first.env(), capture_output=True, timeout=30, stdin=subprocess.DEVNULL
    )
    assert second.returncode == 3, second.stderr.decode()
    err = second.stderr.decode()
    assert err.startswith("docpilotd: ") and "already" in err and str(first.pid) in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err

    assert first.alive and first.call("hello")["pid"] == first.pid
    assert first.socket_path.stat().st_ino == socket_inode, "the second daemon must not touch the socket"
    assert first.tree() == before
    first.call("annotate", session=sid, text="still mine")
    rc, out, _ = first.client("status", "--json")
    assert rc == 0 and json.loads(out)["daemon"]["pid"] == first.pid


def test_second_detached_daemon_is_refused_with_a_message(daemons: DaemonFactory) -> None:
    first = daemons()
    before = first.tree()
    done = subprocess.run(
        [*DAEMON_CMD, "--detach"], env=first.env(), capture_output=True, timeout=30, stdin=subprocess.DEVNULL
    )
    err = done.stderr.decode()
    assert done.returncode == 3 and "already" in err, "the refusal must reach the person who ran it"
    time.sleep(0.3)
    assert first.alive and first.call("hello")["pid"] == first.pid
    after = first.tree()
    after.pop("docpilotd.log", None)  # a detached process may log its refusal
    assert after == before


def test_stale_socket_file_from_a_killed_daemon_is_replaced(daemons: DaemonFactory) -> None:
    d = daemons()
    d.kill9()
    assert d.socket_path.exists()
    rc, out, err = d.client("sessions")
    assert rc == 3 and out == "" and "not running" in err and "docpilotd run" in err
    assert len(err.strip().splitlines()) == 1
    d.start()
    assert d.call("sessions") == []


def test_a_regular_file_in_place_of_the_socket_is_handled(daemons: DaemonFactory) -> None:
    d = daemons(start=False)
    (d.home / "run").mkdir(parents=True, mode=0o700)
    d.socket_path.write_text("left over by something")
    d.start()
    assert stat.S_ISSOCK(d.socket_path.lstat().st_mode)


def test_first_reply_comes_after_recovery(daemons: DaemonFactory) -> None:
    d = daemons(start=False)
    sessions = d.home / "sessions"
    sessions.mkdir(parents=True)
    reference = json.loads(REFERENCE.read_bytes())
    ids = []
    for i in range(300):
        reference["id"] = str(uuid.uuid4())
        reference["description"] = f"session {i}"
        (sessions / f"{reference['id']}.json").write_text(json.dumps(reference, indent=2))
        ids.append(reference["id"])
    proc = d.spawn()
    deadline = time.monotonic() + 20
    while True:
        assert proc.poll() is None, d.log()
        try:
            reply = d.request("sessions")
        except OSError:
            assert time.monotonic() < deadline, "the daemon never served"
            time.sleep(0.005)
            continue
        break
    assert reply["ok"] and sorted(s["id"] for s in reply["result"]) == sorted(ids), (
        "the very first request answered must see every recovered session"
    )


def _modes(root: Path) -> dict[str, tuple[str, int]]:
    found = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = path.lstat()
        kind = "dir" if stat.S_ISDIR(st.st_mode) else "sock" if stat.S_ISSOCK(st.st_mode) else "file"
        found[str(path.relative_to(root))] = (kind, stat.S_IMODE(st.st_mode))
    return found


def test_everything_is_private_even_with_a_permissive_umask(daemons: DaemonFactory) -> None:
    old = os.umask(0)  # the daemon inherits it: the worst case
    try:
        d = daemons(env={"DOCPILOT_RESCAN_INTERVAL": "1"})
    finally:
        os.umask(old)
    sid = d.call("start", description="Private")["id"]
    d.call("save")
    d.call("annotate", session=sid, text="second generation")
    d.call("save")
    d.session_file(sid).write_bytes(b"damage")  # brings quarantine/ and a .reason file into play
    wait_for(lambda: any(d.quarantine_dir.iterdir()), 10, what="quarantine")
    d.call("save")

    modes = _modes(d.home)
    kinds = {kind for kind, _ in modes.values()}
    assert kinds == {"dir", "file", "sock"}
    for name in ("sessions", "backups", "journal", "quarantine", "spool", "run"):
        assert modes[name] == ("dir", 0o700), name
    assert any(n.startswith("backups/") for n in modes) and any(n.endswith(".reason") for n in modes)
    assert any(n.startswith("journal/") for n in modes)
    wrong = {name: oct(mode) for name, (kind, mode) in modes.items() if mode != (0o700 if kind == "dir" else 0o600)}
    assert wrong == {}, f"not private: {wrong}"


def test_sighup_reloads_the_configuration_and_keeps_serving(daemons: DaemonFactory) -> None:
    d = daemons()
    sid = d.call("start", description="Across a reload")["id"]
    assert d.call("status")["daemon"]["durability"] == "always"
    (d.home / "docpilotd.toml").write_text('durability = "batch"\nautosave_interval = 0.5\n')
    d.send_signal(signal.SIGHUP)
    wait_for(lambda: d.call("status")["daemon"]["durability"] == "batch", 10, what="the reload")
    # The new autosave interval is in effect: a change is saved without a save request.
    d.call("annotate", session=sid, text="saved by the rescheduled autosave")
    wait_for(lambda: d.session_file(sid).exists() and d.read_session_file(sid)["annotations"], 10, what="autosave")

    # An invalid file is reported and changes nothing; the daemon goes on.
    (d.home / "docpilotd.toml").write_text('durability = "sometimes"\n')
    d.send_signal(signal.SIGHUP)
    wait_for(lambda: "not reloaded" in d.log(), 10, what="the refusal in the log")
    assert d.alive and d.call("status")["daemon"]["durability"] == "batch"
    d.call("annotate", session=sid, text="still serving")
    assert d.terminate() == 0


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def _start_detached(d: Daemon) -> int:
    done = subprocess.run(
        [*DAEMON_CMD, "--detach"], env=d.env(), capture_output=True, timeout=30, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 0, done.stderr.decode()
    text = wait_for(lambda: d.pid_file.exists() and d.pid_file.read_text(), 10, what="the pid file")
    pid = int(text.strip())
    hello = wait_for(lambda: _hello(d), 10, what="the detached daemon to answer")
    assert hello["pid"] == pid
    return pid


@pytest.fixture
def detached(daemons: DaemonFactory) -> Iterator[Daemon]:
    """A data root for detached daemons; any still running at the end is killed."""
    d = daemons(start=False)
    yield d
    for path in (d.pid_file, d.home / "run" / "docpilotd.lock"):
        try:
            pid = int(path.read_text().strip())
        except (OSError, ValueError):
            continue
        if _pid_alive(pid) and "docpilotd" in Path(f"/proc/{pid}/cmdline").read_text():
            os.kill(pid, signal.SIGKILL)


def test_detach_writes_a_pid_file_serves_and_stops_on_sigterm(detached: Daemon) -> None:
    d = detached
    pid = _start_detached(d)
    assert stat.S_IMODE(d.pid_file.stat().st_mode) == 0o600
    sid = d.call("start", description="Served by a detached daemon")["id"]
    rc, out, _ = d.client("note", "through the client")
    assert rc == 0 and sid in out

    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not _pid_alive(pid), 15, what="the detached daemon to exit")
    assert not d.pid_file.exists(), "the pid file is removed on exit"
    assert not d.socket_path.exists()
    doc = d.read_session_file(sid)
    assert [a["text"] for a in doc["annotations"]] == ["through the client"]
    log = d.home / "docpilotd.log"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600 and "final save" in log.read_text()


def test_second_detached_daemon_leaves_the_first_ones_pid_file(detached: Daemon) -> None:
    d = detached
    pid = _start_detached(d)
    done = subprocess.run(
        [*DAEMON_CMD, "--detach"], env=d.env(), capture_output=True, timeout=30, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 3 and "already" in done.stderr.decode()
    time.sleep(0.5)  # time for a wrongly detached second process to do damage
    assert d.pid_file.read_text().strip() == str(pid), "the running daemon's pid file must stay"
    assert _hello(d)["pid"] == pid  # type: ignore[index]
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not _pid_alive(pid), 15, what="the detached daemon to exit")


def _hello(d: Daemon) -> dict[str, object] | None:
    try:
        reply = d.request("hello")
    except OSError:
        return None
    return reply["result"] if reply.get("ok") else None
