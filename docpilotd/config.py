"""Configuration: one msgspec type, loaded from TOML, the environment and the command line.

Precedence: command-line flags > `DOCPILOT_*` environment > config file > defaults. The file is the
first of `--config`, `$DOCPILOT_CONFIG`, `$DOCPILOT_HOME/docpilotd.toml` (when DOCPILOT_HOME is set,
so isolated instances share nothing) or `$XDG_CONFIG_HOME/docpilot/docpilotd.toml`; a missing
default file is fine, a missing named file is an error. An unknown key, a wrong type or a value out
of range is one `ConfigError` naming the key and where it was set: the file is read with TOML's own
types (`"5"` is not an integer there), environment values are text converted leniently.
`config/docpilotd.toml` documents every key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from . import paths
from .domain.retention import RetentionPolicy
from .errors import ConfigError

Durability = Literal["always", "batch", "off"]
PositiveSeconds = Annotated[float, msgspec.Meta(gt=0, le=86400)]


class Limits(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    max_line_bytes: Annotated[int, msgspec.Meta(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024
    max_connections: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1024
    idle_timeout: PositiveSeconds = 300.0
    read_timeout: PositiveSeconds = 10.0


PolicyName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
# Where a session's chosen policy is kept: one of its metadata settings, so that it travels with the
# session (snapshot, backups, export) in DocPilot's own format.
POLICY_SETTING = "docpilotd.policy"
DEFAULT_POLICY = "default"


class NamedPolicy(RetentionPolicy, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A policy of `[policies.NAME]`: a retention policy, and the tags that choose it for a session
    started without `--policy`."""

    tags: tuple[Annotated[str, msgspec.Meta(max_length=256)], ...] = ()


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    data_dir: str | None = None
    autosave_interval: PositiveSeconds = 30.0
    # A snapshot is a compaction of the journal (runtime/engine.py, `Engine.autosave`): a session
    # whose last snapshot is up to `autosave_small_mb` is written at every autosave it changed in
    # (sessions/ is then never more than one interval behind); a larger one only once the journal
    # since its snapshot reaches `autosave_growth` times the snapshot's size, or the snapshot is
    # `autosave_max_age` seconds old, so that its checkpoints cost a bounded share of what is
    # recorded. `save`, `stop` and shutdown always write every changed session.
    autosave_small_mb: Annotated[float, msgspec.Meta(ge=0, le=1_000_000)] = 16.0
    autosave_growth: Annotated[float, msgspec.Meta(gt=0, le=1000)] = 0.25
    autosave_max_age: PositiveSeconds = 600.0
    # The default retention policy's keep_last, as it was named before there were policies (the
    # `[retention]` table's own keep_last wins when both are given).
    backups_kept: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 5
    # Backup generations: the default policy, and named ones a session chooses (`docpilot start
    # --policy NAME`, `docpilot policy NAME`) or gets by one of its tags (domain/retention.py).
    retention: RetentionPolicy = msgspec.field(default_factory=RetentionPolicy)
    policies: dict[PolicyName, NamedPolicy] = msgspec.field(default_factory=dict)
    # Backups, journal and quarantine together (runtime/quota.py); 0: no quota. When over, backups
    # are pruned down to each policy's keep_last; live data is never refused.
    max_storage_mb: Annotated[float, msgspec.Meta(ge=0, le=1e9)] = 0.0
    quota_check_interval: PositiveSeconds = 60.0  # how often (after an autosave) the quota is checked
    # Start-up recovery (storage/recovery): which valid copy a session is recovered from
    # ("newest_valid", or "most_complete": the most commands + annotations after journal replay),
    # and what a damaged session does ("quarantine" its damaged files and continue, or "offline":
    # left as it is, not loaded, until `docpilotd fsck --repair`).
    recovery_prefer: Literal["newest_valid", "most_complete"] = "newest_valid"
    recovery_damage: Literal["quarantine", "offline"] = "quarantine"
    durability: Durability = "always"
    batch_window_ms: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100
    rescan_interval: PositiveSeconds = 60.0
    # The scrub (storage/scrubbing.py): every this many days the daemon reads and checks every
    # retained backup generation and journal segment, and replaces a damaged generation from a
    # good copy; 0 never (`docpilotd fsck --scrub` still does it on demand).
    scrub_interval_days: Annotated[float, msgspec.Meta(ge=0, le=3650)] = 7.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_file: str | None = None
    # Redaction of secrets before anything is stored (see docpilotd/domain/redaction.py).
    redact_defaults: bool = True
    redact_patterns: list[Annotated[str, msgspec.Meta(max_length=4096)]] = msgspec.field(default_factory=list)
    # Text never replaced (a false positive of the rules): a secret found inside a match is kept.
    redact_allow: list[Annotated[str, msgspec.Meta(max_length=4096)]] = msgspec.field(default_factory=list)
    # Shell capture: record the tool's own command lines (`docpilot note ...`) as commands too.
    record_own_commands: bool = False
    # Command output (`docpilot run`, `record --output-file`): bytes kept, its head and its tail
    # (docpilotd/domain/output.py); 0 keeps none.
    output_max_bytes: Annotated[int, msgspec.Meta(ge=0, le=512 * 1024)] = 64 * 1024
    # Documents (docpilot generate): the template used when none is named, where the user's own
    # templates are (default: templates/ beside this file), and from how long a command is slow
    # (its duration is shown).
    default_template: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = "standard"
    templates_dir: str | None = None
    slow_command_seconds: Annotated[float, msgspec.Meta(ge=0, le=86_400 * 365)] = 5.0
    limits: Limits = msgspec.field(default_factory=Limits)

    def __post_init__(self) -> None:
        # Built in code with the older name only (`Config(backups_kept=2)`), as a file is read.
        if self.backups_kept != 5 and self.retention == RetentionPolicy():
            self.retention = msgspec.structs.replace(self.retention, keep_last=self.backups_kept)

    def policy_for(self, tags: list[str] | tuple[str, ...], chosen: str | None) -> tuple[str, RetentionPolicy]:
        """A session's policy: the one it chose (when the config still has it), else the first
        `[policies.*]` table, in the file's order, naming one of its tags, else the default."""
        if chosen is not None and chosen in self.policies:
            return chosen, self.policies[chosen]
        if chosen == DEFAULT_POLICY:
            return DEFAULT_POLICY, self.retention
        for name, policy in self.policies.items():
            if policy.tags and any(tag in policy.tags for tag in tags):
                return name, policy
        return DEFAULT_POLICY, self.retention

    @property
    def home(self) -> Path:
        from .paths import default_home

        return Path(self.data_dir).expanduser() if self.data_dir else default_home()


# Settings read once at start-up: a reload keeps the running value (and says so when it differs).
# (recovery_*: recovery runs at start-up; a reload would change nothing until the next one.)
RESTART_ONLY = frozenset({"data_dir", "log_file", "rescan_interval", "recovery_prefer", "recovery_damage"})


def reload_into(running: Config, fresh: Config) -> tuple[set[str], set[str]]:
    """Copy into `running` (which the daemon's parts share) every setting of `fresh` that can
    change while running; returns the names that changed and those that differ but need a restart."""
    changed: set[str] = set()
    kept: set[str] = set()
    for name in running.__struct_fields__:
        new = getattr(fresh, name)
        if new == getattr(running, name):
            continue
        if name in RESTART_ONLY:
            kept.add(name)
        else:
            setattr(running, name, new)
            changed.add(name)
    return changed, kept


# Environment variables and the (dotted) key each one sets.
ENVIRONMENT: dict[str, str] = {
    "DOCPILOT_HOME": "data_dir",
    "DOCPILOT_AUTOSAVE_INTERVAL": "autosave_interval",
    "DOCPILOT_BACKUPS_KEPT": "backups_kept",
    "DOCPILOT_DURABILITY": "durability",
    "DOCPILOT_BATCH_WINDOW_MS": "batch_window_ms",
    "DOCPILOT_RESCAN_INTERVAL": "rescan_interval",
    "DOCPILOT_SCRUB_INTERVAL_DAYS": "scrub_interval_days",
    "DOCPILOT_LOG_LEVEL": "log_level",
    "DOCPILOT_LOG_FILE": "log_file",
    "DOCPILOT_OUTPUT_MAX_BYTES": "output_max_bytes",
    "DOCPILOT_MAX_LINE_BYTES": "limits.max_line_bytes",
    "DOCPILOT_MAX_CONNECTIONS": "limits.max_connections",
}


config_file = paths.config_file  # defined with the data root, so that client and hooks agree


def load(explicit_file: str | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """The effective configuration; raises ConfigError naming the offending key."""
    path, required = config_file(explicit_file)
    raw: dict[str, Any] = {}
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    else:
        raw = _parse_file(path, text)
    for variable, key in ENVIRONMENT.items():
        value = os.environ.get(variable)
        if value:
            _set(raw, key, _from_text(value))
            _convert(raw, f"environment variable {variable}")  # each layer is checked as it is added
    for key, value in (overrides or {}).items():
        if value is not None:
            _set(raw, key, value)
    return _convert(raw, "command line")


class Setting(msgspec.Struct, frozen=True):
    """One effective setting and where its value came from (`docpilotd config`): `source` is
    "default", "file" (`origin`: the file), "environment" (`origin`: the variable) or "flag"
    (`origin`: the option)."""

    value: Any
    source: Literal["default", "file", "environment", "flag"]
    origin: str | None = None


def explain(
    explicit_file: str | None = None, overrides: dict[str, Any] | None = None, flags: dict[str, str] | None = None,
) -> tuple[Config, Path, bool, dict[str, Setting]]:
    """The effective configuration as `load` makes it (ConfigError as `load` raises it), the config
    file's path and whether it was read, and each dotted key's value with where it came from, by
    the same precedence: `overrides` (command-line flags; `flags` names each key's option) >
    the ENVIRONMENT variables > the file > the defaults."""
    effective = load(explicit_file, overrides)
    path, _ = config_file(explicit_file)
    try:
        in_file = _parse_file(path, path.read_bytes())
        read = True
    except OSError:  # absent (load said that is fine) or gone since
        in_file, read = {}, False
    by_key = {key: variable for variable, key in ENVIRONMENT.items() if os.environ.get(variable)}
    settings: dict[str, Setting] = {}
    for key in _keys(Config):
        value = msgspec.to_builtins(_get(effective, key))
        if (overrides or {}).get(key) is not None:
            settings[key] = Setting(value, "flag", (flags or {}).get(key, "--" + key.replace("_", "-")))
        elif key in by_key:
            settings[key] = Setting(value, "environment", by_key[key])
        elif _present(in_file, key):
            settings[key] = Setting(value, "file", str(path))
        else:
            settings[key] = Setting(value, "default")
    return effective, path, read, settings


def _keys(struct: type[msgspec.Struct], prefix: str = "") -> list[str]:
    """Every dotted key of `struct`, a nested table's keys under its name."""
    keys: list[str] = []
    for field in msgspec.structs.fields(struct):
        if isinstance(field.type, type) and issubclass(field.type, msgspec.Struct):
            keys.extend(_keys(field.type, f"{prefix}{field.name}."))
        else:
            keys.append(prefix + field.name)
    return keys


def _get(obj: Any, dotted: str) -> Any:
    for name in dotted.split("."):
        obj = getattr(obj, name)
    return obj


def _present(raw: dict[str, Any], dotted: str) -> bool:
    *parents, last = dotted.split(".")
    for name in parents:
        child = raw.get(name)
        if not isinstance(child, dict):
            return False
        raw = child
    return last in raw


def _parse_file(path: Path, text: bytes) -> dict[str, Any]:
    # Check the encoding ourselves: msgspec versions differ in how they report bad UTF-8
    # (UnicodeDecodeError before 0.23, a DecodeError with Python's message after).
    try:
        text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 text (byte {exc.start})") from None
    try:
        data = msgspec.toml.decode(text)
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    if not isinstance(data, dict):  # pragma: no cover - TOML documents are tables
        raise ConfigError(f"{path}: not a TOML table")
    _convert(data, str(path), strict=True)  # names the bad key against the file itself
    return data


def _convert(raw: dict[str, Any], where: str, strict: bool = False) -> Config:
    if "backups_kept" in raw:  # the old name of the default policy's keep_last
        retention = raw.get("retention")
        if isinstance(retention, dict) and "keep_last" not in retention:
            raw = {**raw, "retention": {**retention, "keep_last": raw["backups_kept"]}}
        elif retention is None:
            raw = {**raw, "retention": {"keep_last": raw["backups_kept"]}}
    try:
        config = msgspec.convert(raw, Config, strict=strict)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{where}: {_describe(exc)}") from None
    _check_patterns(config, where)
    _check_policies(config, where)
    return config


def _check_policies(config: Config, where: str) -> None:
    """Each policy keeps something; `default` is the name of the `[retention]` table's policy."""
    config.retention.check(f"{where}: key 'retention'")
    for name, policy in config.policies.items():
        if name == DEFAULT_POLICY:
            raise ConfigError(f"{where}: key 'policies.{name}': '{name}' is the [retention] table's policy; "
                              "give this one another name")
        policy.check(f"{where}: key 'policies.{name}'")


def _check_patterns(config: Config, where: str) -> None:
    """Every redact pattern compiles (a daemon must never meet a bad one while recording)."""
    from .domain.redaction import PatternError, user_rule

    for key in ("redact_patterns", "redact_allow"):
        for index, pattern in enumerate(getattr(config, key)):
            try:
                user_rule(f"pattern {index}", pattern, index)
            except PatternError as exc:
                raise ConfigError(f"{where}: key '{key}[{index}]': not a valid regular expression: {exc.reason}") from None


def _describe(exc: msgspec.ValidationError) -> str:
    # msgspec says "... - at `$.limits.max_line_bytes`"; put the key first, where a person looks.
    text = str(exc)
    message, _, location = text.partition(" - at `$.")
    key = location.rstrip("`")
    if not key and "unknown field" in message:
        return message.replace("Object contains unknown field", "unknown key").replace("`", "'")
    if "unknown field" in message:
        field = message.split("`")[1] if "`" in message else "?"
        return f"unknown key '{key}.{field}'"
    return f"key '{key}': {message}" if key else message


def _set(raw: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    target = raw
    for name in parents:
        child = target.get(name)
        if not isinstance(child, dict):
            child = {}
            target[name] = child
        target = child
    target[last] = value


def _from_text(value: str) -> Any:
    """Environment values are text; msgspec's lax conversion turns "30" into 30 where needed."""
    return value
