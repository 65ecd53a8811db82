"""Secrets never reach a file: a real daemon is sent every common secret form (over the socket, in
command output, in annotations and descriptions, and through the shell spool), checkpoints,
is killed and recovers; then every file under the data root is read."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from docpilotd.storage import snapshot
from tests.conftest import build_session
from tests.daemon_harness import Daemon, DaemonFactory, wait_for
from tests.docs.disk import Hook, directories_of, every_file, files_holding
from tests.docs.test_redaction import SECRET_FORMS


def _configured(daemons: DaemonFactory, text: str) -> Daemon:
    d = daemons(start=False)
    d.home.mkdir(parents=True, exist_ok=True)
    (d.home / "docpilotd.toml").write_text(text)
    return d


def test_every_secret_form_is_redacted_before_it_reaches_any_file(daemons: DaemonFactory) -> None:
    d = _configured(daemons, 'redact_patterns = ["corp-[0-9a-f]{16}"]\n').start()
    sid = d.call("start", description="Rotate keys: export SECRET=desc-secret-1", tags=["token=tag-secret-2"])["id"]
    hook = Hook(d)
    expected_commands: list[tuple[str, str | None]] = []  # (command, output) as a reader should see them
    for index, (text, _, redacted) in enumerate(SECRET_FORMS):
        if index % 3 == 0:
            d.call("record", session=sid, command=text, exit_code=0, cwd="/srv")
            expected_commands.append((redacted, None))
        elif index % 3 == 1:
            d.call("record", session=sid, command=f"step {index}", exit_code=0, cwd="/srv", output=f"log\n{text}\n")
            expected_commands.append((f"step {index}", f"log\n{redacted}\n"))
        else:
            hook.send(text, session=sid)
            expected_commands.append((redacted, None))
        if index == len(SECRET_FORMS) // 2:
            d.call("save")  # a snapshot, and later a backup, written in the middle
    d.call("annotate", session=sid, text="deployed with corp-0123456789abcdef, see export TOKEN=note-secret-3", type="warning")
    d.call("record", session=sid, command="deploy --key corp-fedcba9876543210", exit_code=0, cwd="/srv")
    expected_commands.append(("deploy --key [REDACTED]", None))
    wait_for(lambda: d.call("status", session=sid)["session"]["commands"] == len(expected_commands), what="the spool")
    d.call("save")
    d.kill9()  # recovery replays the journal written since the last snapshot
    d.start()
    d.call("record", session=sid, command="echo after the restart", exit_code=0, cwd="/srv")
    d.call("save")

    secrets = [secret for _, secret, _ in SECRET_FORMS] + [
        "desc-secret-1", "tag-secret-2", "note-secret-3", "0123456789abcdef", "fedcba9876543210",
    ]
    wait_for(lambda: not files_holding(d.home, *secrets), timeout=15, what="no file holding a secret")
    files = every_file(d.home)
    # The check above read the journal, the snapshot and the backups: they exist and are not empty.
    assert {"sessions", "backups", "journal"} <= directories_of([name for name, data in files.items() if data])
    shown = d.call("show", session=sid)
    # (Spooled lines are ingested a moment later than socket requests: compare regardless of order.)
    recorded = [(c["command"], c["output"]) for c in shown["commands"]]
    assert recorded[-1] == ("echo after the restart", None)
    assert sorted(recorded[:-1], key=repr) == sorted(expected_commands, key=repr)
    assert shown["description"] == "Rotate keys: export SECRET=[REDACTED]"
    assert shown["metadata"]["tags"] == ["token=[REDACTED]"]
    assert shown["annotations"][0]["text"] == "deployed with [REDACTED], see export TOKEN=[REDACTED]"


def test_a_spool_file_that_held_a_secret_is_deleted_at_once(daemon: Daemon) -> None:
    sid = daemon.call("start", description="spool")["id"]
    hook = Hook(daemon)
    hook.send("echo harmless", session=sid)
    wait_for(lambda: daemon.call("status", session=sid)["session"]["commands"] == 1, what="ingestion")
    assert hook.spool_files() == [hook.path.name], "a file without secrets stays until it is idle"
    started = time.monotonic()
    hook.send("mysql -u root -pspool-secret-9 app", session=sid)
    wait_for(lambda: not hook.spool_files(), timeout=15, what="the spool file to go")
    assert time.monotonic() - started < 10, "deleted after the grace period, not after a minute of idleness"
    assert not files_holding(daemon.home, "spool-secret-9")
    hook.send("echo next", session=sid)  # the shell's next line starts a new file, ingested as usual
    wait_for(lambda: daemon.call("status", session=sid)["session"]["commands"] == 3, what="the new file")
    commands = [c["command"] for c in daemon.call("show", session=sid)["commands"]]
    assert commands == ["echo harmless", "mysql -u root -p[REDACTED] app", "echo next"]


def test_a_command_starting_with_a_space_is_not_recorded(daemon: Daemon) -> None:
    sid = daemon.call("start", description="private")["id"]
    reply = daemon.call("record", session=sid, command=" echo private-socket", exit_code=0)
    assert reply["skipped"] and "commands" in reply
    rc, out, _ = daemon.client("record", "--session", sid, "--", " echo private-client")
    assert rc == 0 and out.startswith("not recorded")
    hook = Hook(daemon)
    hook.send(" echo private-spool", session=sid)
    hook.send("echo public", session=sid)
    wait_for(lambda: daemon.call("status", session=sid)["session"]["commands"] == 1, what="ingestion")
    wait_for(lambda: not hook.spool_files(), timeout=15, what="the spool file holding a private command to go")
    daemon.call("save")
    assert [c["command"] for c in daemon.call("show", session=sid)["commands"]] == ["echo public"]
    assert not files_holding(daemon.home, "private-socket", "private-client", "private-spool")


def test_an_invalid_pattern_stops_the_daemon_naming_the_key(daemons: DaemonFactory) -> None:
    d = _configured(daemons, 'redact_patterns = ["fine", "(?P<secret>unclosed"]\n')
    proc = d.spawn()
    assert proc.wait(timeout=20) == 2
    assert "redact_patterns[1]" in d.log()
    assert not d.socket_path.exists()


def test_patterns_are_reloaded_on_sighup(daemon: Daemon) -> None:
    sid = daemon.call("start", description="reload")["id"]
    daemon.call("record", session=sid, command="deploy corp-1111222233334444", exit_code=0)
    (daemon.home / "docpilotd.toml").write_text('redact_patterns = ["corp-[0-9]{16}"]\n')
    daemon.send_signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in daemon.log(since_start=True), what="the reload")
    daemon.call("record", session=sid, command="deploy corp-5555666677778888", exit_code=0)
    commands = [c["command"] for c in daemon.call("show", session=sid)["commands"]]
    assert commands == ["deploy corp-1111222233334444", "deploy [REDACTED]"]


def test_an_imported_session_is_redacted_before_it_is_stored(daemon: Daemon, tmp_path: Path) -> None:
    session = build_session(commands=2, annotations=1, description="Imported: export API_TOKEN=import-secret-1")
    session.commands[0].command = "mysql -u root -pimport-secret-2 app"
    session.annotations[0].text = "password: import-secret-3"
    source = tmp_path / "work" / "exported.json"
    source.parent.mkdir()
    source.write_bytes(snapshot.encode_plain(session))
    sid = daemon.call("import", path=str(source))["id"]
    shown = daemon.call("show", session=sid)
    assert shown["commands"][0]["command"] == "mysql -u root -p[REDACTED] app"
    assert shown["annotations"][0]["text"] == "password: [REDACTED]"
    assert shown["description"] == "Imported: export API_TOKEN=[REDACTED]"
    assert not files_holding(daemon.home, "import-secret-1", "import-secret-2", "import-secret-3")
    assert (daemon.home / "sessions" / f"{sid}.json").is_file()
