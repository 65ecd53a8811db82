"""Redaction rules (docpilotd.domain.redaction): each common secret form is replaced, the text around
it is kept, ordinary commands are left alone, and no input makes a rule slow."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docpilotd import config as config_mod
from docpilotd.domain import changes
from docpilotd.domain.redaction import MARKER, PatternError, Redactor, literal_rule
from docpilotd.errors import ConfigError
from tests.conftest import build_session, command_change

GITHUB = "ghp_" + "A1b2C3d4" * 4 + "e5F6"
GITHUB_PAT = "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMN"
SLACK = "xoxb-2345678901-3456789012345-AbCdEfGhIjKlMnOpQrStUvWx"
AWS_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

# (text, the secret in it, what a reader sees afterwards)
SECRET_FORMS = [
    ("mysql --password=hunter2 -h db.internal app", "hunter2", "mysql --password=[REDACTED] -h db.internal app"),
    ("docker login --password 'pa ss' --username ci", "pa ss", "docker login --password '[REDACTED]' --username ci"),
    ("psql --db-password=Sup3r.Secret", "Sup3r.Secret", "psql --db-password=[REDACTED]"),
    ("gh auth login --with-token --token=tok_ab12", "tok_ab12", "gh auth login --with-token --token=[REDACTED]"),
    ("mysql -u root -phunter2 app", "hunter2", "mysql -u root -p[REDACTED] app"),
    ("mysqldump -h db -u root -p'hunt er2' app > app.sql", "hunt er2", "mysqldump -h db -u root -p'[REDACTED]' app > app.sql"),
    ("mariadb -u app -pXy9zz app", "Xy9zz", "mariadb -u app -p[REDACTED] app"),
    ("curl -H 'Authorization: Bearer eyZ0.abc.def' https://api.example.com",
     "eyZ0.abc.def", "curl -H 'Authorization: Bearer [REDACTED]' https://api.example.com"),
    ('curl -H "authorization: token s3cr3t-t0ken" https://x', "s3cr3t-t0ken", 'curl -H "authorization: token [REDACTED]" https://x'),
    ("> Proxy-Authorization: Basic dXNlcjpwYXNz\n< HTTP/1.1 200 OK", "dXNlcjpwYXNz",
     "> Proxy-Authorization: Basic [REDACTED]\n< HTTP/1.1 200 OK"),
    ("curl -H 'X-Api-Key: k-123456' https://x", "k-123456", "curl -H 'X-Api-Key: [REDACTED]' https://x"),
    (f"git clone https://{GITHUB}@github.com/acme/app.git", GITHUB, "git clone https://[REDACTED]@github.com/acme/app.git"),
    (f"GH_TOKEN={GITHUB_PAT} gh pr list", GITHUB_PAT, "GH_TOKEN=[REDACTED] gh pr list"),
    (f"echo {GITHUB_PAT}", GITHUB_PAT, "echo [REDACTED]"),
    (f"slack-notify --hook x {SLACK}", SLACK, "slack-notify --hook x [REDACTED]"),
    ("curl -X POST https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXX -d @msg.json",
     "T000/B000/XXXXXXXXXXXX", "curl -X POST https://hooks.slack.com/services/[REDACTED] -d @msg.json"),
    (f"aws configure set aws_access_key_id {AWS_ID}", AWS_ID, "aws configure set aws_access_key_id [REDACTED]"),
    (f"export AWS_SECRET_ACCESS_KEY={AWS_SECRET}", AWS_SECRET, "export AWS_SECRET_ACCESS_KEY=[REDACTED]"),
    (f"aws_secret_access_key = {AWS_SECRET}", AWS_SECRET, "aws_secret_access_key = [REDACTED]"),
    ("export SECRET=topsecret", "topsecret", "export SECRET=[REDACTED]"),
    ('export DATABASE_PASSWORD="two words"', "two words", 'export DATABASE_PASSWORD="[REDACTED]"'),
    ("export API_KEY='k3y'", "k3y", "export API_KEY='[REDACTED]'"),
    ("PGPASSWORD=hunter2 psql -h db", "hunter2", "PGPASSWORD=[REDACTED] psql -h db"),
    ("docker run -e DB_PASS=hunter2 postgres", "hunter2", "docker run -e DB_PASS=[REDACTED] postgres"),
    ("MYSQL_PWD=hunter2 mysql app", "hunter2", "MYSQL_PWD=[REDACTED] mysql app"),
    ("set -gx OPENAI_API_KEY s3cr3tvalue", "s3cr3tvalue", "set -gx OPENAI_API_KEY [REDACTED]"),
    ("psql postgres://app:hunter2@db.internal:5432/app", "hunter2", "psql postgres://app:[REDACTED]@db.internal:5432/app"),
    ("redis-cli -u redis://:r3d1s@cache:6379", "r3d1s", "redis-cli -u redis://:[REDACTED]@cache:6379"),
    ("pip install --index-url https://user:p%40ss@pypi.example.com/simple x", "p%40ss",
     "pip install --index-url https://user:[REDACTED]@pypi.example.com/simple x"),
    ("curl -u admin:hunter2 https://x", "hunter2", "curl -u admin:[REDACTED] https://x"),
    ("sshpass -p hunter2 ssh deploy@web1", "hunter2", "sshpass -p [REDACTED] ssh deploy@web1"),
    ('{"client_secret": "abc123", "name": "app"}', "abc123", '{"client_secret": "[REDACTED]", "name": "app"}'),
    ("password: hunter2", "hunter2", "password: [REDACTED]"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----",
     "b3BlbnNzaC1rZXktdjEAAAAA", "-----BEGIN OPENSSH PRIVATE KEY-----[REDACTED]-----END OPENSSH PRIVATE KEY-----"),
    ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "4eC39HqLyjWDarjtT1zdp7dc", "[REDACTED]"),
    ("npm config set //registry.npmjs.org/:_authToken npm_" + "a" * 36, "npm_" + "a" * 36,
     "npm config set //registry.npmjs.org/:_authToken [REDACTED]"),
    ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N", "dozjgNryP4J3jVmNHl0w5N", "[REDACTED]"),
]

# Ordinary commands that look a little like secrets: left exactly as they are.
HARMLESS = [
    "psql --no-password app",
    "mysql -P 3306 -h db app",
    "cat --password-file=/etc/app/pw",
    "export PASSWORD_FILE=/run/secrets/db",
    "export TOKENIZERS_PARALLELISM=false",
    "export BYPASS=1",
    "cd $OLDPWD && echo $PWD",
    "docker run -u 1000:1000 app",
    "git push https://github.com/acme/app.git main",
    "curl https://example.com:8443/a@b",
    "ssh-keygen -t ed25519 -C ada@laptop",
    "Enter password:",
    "grep -r token src/",
    "kubectl get secrets",
    "echo [REDACTED]",
]


@pytest.mark.parametrize(("text", "secret", "expected"), SECRET_FORMS, ids=[f[0][:40] for f in SECRET_FORMS])
def test_each_secret_form_is_replaced_and_the_context_kept(text: str, secret: str, expected: str) -> None:
    redacted, count = Redactor.from_patterns().count(text)
    assert redacted == expected
    assert secret not in redacted and count >= 1


@pytest.mark.parametrize("text", HARMLESS)
def test_ordinary_commands_are_left_alone(text: str) -> None:
    assert Redactor.from_patterns().count(text) == (text, 0)


def test_config_patterns_add_to_the_defaults_or_replace_them() -> None:
    text = "deploy --vault corp-0123456789abcdef0123456789abcdef --password=x"
    mine = [r"corp-[0-9a-f]{32}", r"(?i)vault\s+(?P<secret>\S+)"]
    assert Redactor.from_patterns(mine).text(text) == "deploy --vault [REDACTED] --password=[REDACTED]"
    assert Redactor.from_patterns(mine, defaults=False).text(text) == "deploy --vault [REDACTED] --password=x"
    assert Redactor.from_patterns([], defaults=False).text(text) == text


def test_an_invalid_pattern_names_itself() -> None:
    with pytest.raises(PatternError) as caught:
        Redactor.from_patterns(["fine", "(unclosed"])
    assert caught.value.index == 1


def test_an_invalid_pattern_in_the_config_file_is_an_error_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "docpilotd.toml"
    path.write_text('redact_patterns = ["ok", "[z-a]"]\n')
    with pytest.raises(ConfigError, match=r"redact_patterns\[1\]"):
        config_mod.load(str(path))
    path.write_text('redact_patterns = ["corp-[0-9]+"]\nredact_defaults = false\n')
    loaded = config_mod.load(str(path))
    assert loaded.redact_patterns == ["corp-[0-9]+"] and loaded.redact_defaults is False


def test_redacting_twice_changes_nothing_more() -> None:
    redactor = Redactor.from_patterns()
    for text, _, expected in SECRET_FORMS:
        assert redactor.count(expected) == (expected, 0), expected


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_redacted_without_error_and_stably(text: str) -> None:
    redactor = Redactor.from_patterns()
    once = redactor.text(text)
    assert redactor.text(once) == once


@pytest.mark.parametrize("text", [
    "password" * 60_000, "password_" * 50_000 + "=", "a_" * 200_000 + "=", "curl " * 60_000, "mysql " + "a " * 200_000,
    "https://" * 100_000, "authorization: " * 50_000, "--password- " * 50_000, "set -x " * 60_000,
    "-----BEGIN PRIVATE KEY-----" * 20_000, "token=" * 100_000, "-" * 500_000, "x" * 1_000_000,
], ids=lambda t: t[:12])
def test_no_input_makes_redaction_slow(text: str) -> None:
    redactor = Redactor.from_patterns()
    started = time.perf_counter()
    redactor.text(text)
    # Linear time: a few hundred ms for half a megabyte on a slow machine; a quadratic rule would
    # take minutes.
    assert time.perf_counter() - started < 5.0


def test_a_session_is_redacted_in_every_free_text_field_and_nowhere_else() -> None:
    session = build_session(commands=3, annotations=1, description="Rotate SECRET_KEY=abc123")
    session = changes.apply(session, command_change("export API_TOKEN=abc123", session.updated_at, 0))
    session.commands[-1].output = "token: abc123"
    session.metadata.settings["note"] = "abc123"
    before = msgspec.json.encode(session)
    redacted, count = Redactor([literal_rule("abc123")]).session(session)
    assert msgspec.json.encode(session) == before, "the original is never mutated"
    assert b"abc123" not in msgspec.json.encode(redacted)
    assert count == 6  # description, event detail of the creation, command, its event, output, setting
    assert redacted.id == session.id and redacted.stats == session.stats
    assert [e.id for e in redacted.events] == [e.id for e in session.events]
    assert redacted.description == f"Rotate SECRET_KEY={MARKER}"
    assert Redactor([literal_rule("zzz")]).session(session) == (session, 0)


def test_a_journal_change_is_redacted_through_its_structure() -> None:
    change = command_change("mysql -psecretpw", "2025-08-01T09:00:00.000000000Z")
    redacted, count = Redactor.from_patterns().change(change)
    assert isinstance(redacted, changes.RecordCommand)
    assert redacted.entry.command == "mysql -p[REDACTED]" and count == 1
    assert redacted.event_id == change.event_id and change.entry.command == "mysql -psecretpw"
    pause = changes.Pause(at="2025-08-01T09:00:00.000000000Z", event_id="x")
    assert Redactor.from_patterns().change(pause) == (pause, 0)
    # An annotation's new text is free text too; a delete has none.
    edit = changes.EditAnnotation(annotation_id="a", text="the db password=hunter2", annotation_type="Note",
                                  at="2025-08-01T09:00:00.000000000Z", event_id="y")
    redacted_edit, count = Redactor.from_patterns().change(edit)
    assert isinstance(redacted_edit, changes.EditAnnotation) and count == 1
    assert redacted_edit.text == "the db password=[REDACTED]" and redacted_edit.annotation_id == "a"
    gone = changes.DeleteAnnotation(annotation_id="a", at="2025-08-01T09:00:00.000000000Z", event_id="z")
    assert Redactor.from_patterns().change(gone) == (gone, 0)
