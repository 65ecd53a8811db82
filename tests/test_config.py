"""Configuration: documented defaults, precedence, and errors that name the key."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from docpilotd import admin, config
from docpilotd.errors import ConfigError

DOCUMENTED = Path(__file__).resolve().parent.parent / "config" / "docpilotd.toml"


WriteConfig = Callable[[str | bytes], Path]


@pytest.fixture
def cfg_file(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> WriteConfig:
    """`write(text)` puts a config file in place and points DOCPILOT_CONFIG at it."""
    path = tmp_path / "my.toml"

    def write(text: str | bytes) -> Path:
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        monkeypatch.setenv("DOCPILOT_CONFIG", str(path))
        return path

    return write


def test_defaults_equal_the_documented_file(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCPILOT_HOME")  # it would set data_dir
    documented = config.load(str(DOCUMENTED))
    assert documented == config.Config()
    assert config.load() == config.Config()  # no file at all (empty XDG_CONFIG_HOME): the same


def test_the_documented_file_names_every_key_and_variable() -> None:
    text = DOCUMENTED.read_text()
    keys = [*config.Config.__struct_fields__, *config.Limits.__struct_fields__, *config.RetentionPolicy.__struct_fields__]
    for key in keys:
        if key in ("limits", "retention"):
            assert re.search(rf"^\[{key}\]$", text, re.M), f"[{key}] is not documented"
        elif key == "policies":
            assert re.search(r"^#   \[policies\.\w+\]$", text, re.M) and "tags = [" in text, "[policies.NAME] is not shown"
        else:
            assert re.search(rf"^(# )?{key} = ", text, re.M), f"{key} is not documented"
    for variable in config.ENVIRONMENT:
        assert f"env: {variable}" in text, f"{variable} is not documented"


def test_commented_defaults_in_the_documented_file_match_too() -> None:
    """The keys shown commented out (no default value) are the ones whose default is unset."""
    text = DOCUMENTED.read_text()
    commented = re.findall(r"^# (\w+) = ", text, re.M)
    unset = sorted(name for name in config.Config.__struct_fields__ if getattr(config.Config(), name) is None)
    assert sorted(commented) == unset == ["data_dir", "log_file", "templates_dir"]


def test_file_overrides_defaults(cfg_file: WriteConfig) -> None:
    cfg_file('backups_kept = 3\ndurability = "batch"\n[limits]\nmax_connections = 7\n')
    cfg = config.load()
    assert (cfg.backups_kept, cfg.durability, cfg.limits.max_connections) == (3, "batch", 7)
    assert cfg.limits.max_line_bytes == config.Limits().max_line_bytes  # the rest stays default
    assert cfg.autosave_interval == 30.0


def test_environment_overrides_the_file(cfg_file: WriteConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg_file('backups_kept = 3\nautosave_interval = 12.5\n[limits]\nmax_line_bytes = 4096\n')
    monkeypatch.setenv("DOCPILOT_BACKUPS_KEPT", "8")
    monkeypatch.setenv("DOCPILOT_MAX_LINE_BYTES", "2048")
    monkeypatch.setenv("DOCPILOT_DURABILITY", "off")
    cfg = config.load()
    assert (cfg.backups_kept, cfg.limits.max_line_bytes, cfg.durability) == (8, 2048, "off")
    assert cfg.autosave_interval == 12.5  # not in the environment: the file's value


def test_flags_override_the_environment(
    cfg_file: WriteConfig, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cfg_file("backups_kept = 3\nautosave_interval = 12.5\n")
    monkeypatch.setenv("DOCPILOT_BACKUPS_KEPT", "8")
    monkeypatch.setenv("DOCPILOT_LOG_LEVEL", "debug")
    args = admin.build_parser().parse_args(
        ["run", "--backups-kept", "9", "--autosave-interval", "2", "--home", str(tmp_path / "flag-home")]
    )
    cfg = admin.load_config(args)
    assert (cfg.backups_kept, cfg.autosave_interval, cfg.log_level) == (9, 2.0, "debug")
    assert cfg.home == tmp_path / "flag-home"
    assert config.load(overrides={"backups_kept": None}).backups_kept == 8  # an unset flag is no override


def test_data_dir_comes_from_docpilot_home(home: Path) -> None:
    assert config.load().home == home


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ("bogus = 1\n", "bogus", "unknown key"),
        ("[limits]\nbogus = 1\n", "limits.bogus", "unknown key"),
        ("[other]\nx = 1\n", "other", "unknown key"),
        ('backups_kept = "many"\n', "backups_kept", "Expected `int`, got `str`"),
        ('backups_kept = "5"\n', "backups_kept", "Expected `int`, got `str`"),
        ("autosave_interval = true\n", "autosave_interval", "Expected `float`, got `bool`"),
        ('durability = "sometimes"\n', "durability", "sometimes"),
        ("log_level = 3\n", "log_level", "Expected `str`, got `int`"),
        ("data_dir = 5\n", "data_dir", "got `int`"),
        ("limits = 3\n", "limits", "Expected `object`, got `int`"),
        ("backups_kept = 0\n", "backups_kept", ">= 1"),
        ("backups_kept = 1001\n", "backups_kept", "<= 1000"),
        ("autosave_interval = 0\n", "autosave_interval", "> 0"),
        ("rescan_interval = -1.0\n", "rescan_interval", "> 0"),
        ("batch_window_ms = 100000\n", "batch_window_ms", "<= 10000"),
        ("[limits]\nmax_line_bytes = 10\n", "limits.max_line_bytes", ">= 1024"),
        ("[limits]\nread_timeout = 100000.0\n", "limits.read_timeout", "<= 86400"),
    ],
)
def test_an_invalid_file_is_one_error_naming_the_key(cfg_file: WriteConfig, text: str, key: str, fragment: str) -> None:
    path = cfg_file(text)
    with pytest.raises(ConfigError) as info:
        config.load()
    message = info.value.message
    assert f"'{key}'" in message and fragment in message and str(path) in message
    assert "\n" not in message and info.value.exit_code == 2


@pytest.mark.parametrize(
    ("variable", "value", "key"),
    [
        ("DOCPILOT_BACKUPS_KEPT", "many", "backups_kept"),
        ("DOCPILOT_BACKUPS_KEPT", "0", "backups_kept"),
        ("DOCPILOT_AUTOSAVE_INTERVAL", "soon", "autosave_interval"),
        ("DOCPILOT_DURABILITY", "sometimes", "durability"),
        ("DOCPILOT_MAX_CONNECTIONS", "-1", "limits.max_connections"),
    ],
)
def test_an_invalid_environment_variable_is_named(
    home: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, key: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        config.load()
    assert f"'{key}'" in info.value.message and variable in info.value.message


def test_an_invalid_flag_value_is_named(home: Path) -> None:
    args = admin.build_parser().parse_args(["run", "--backups-kept", "0"])
    with pytest.raises(ConfigError, match="'backups_kept'.*>= 1"):
        admin.load_config(args)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("backups_kept = \n", "not valid TOML"),
        ("[limits\n", "not valid TOML"),
        (b'log_file = "\xff"\n', "not UTF-8"),
    ],
)
def test_a_file_that_is_not_toml(cfg_file: WriteConfig, content: str | bytes, fragment: str) -> None:
    path = cfg_file(content)
    with pytest.raises(ConfigError, match=fragment) as info:
        config.load()
    assert str(path) in info.value.message


def test_a_missing_named_file_is_an_error(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="config file not found: .*absent.toml"):
        config.load(str(tmp_path / "absent.toml"))
    monkeypatch.setenv("DOCPILOT_CONFIG", str(tmp_path / "also-absent.toml"))
    with pytest.raises(ConfigError, match="also-absent.toml"):
        config.load()


def test_a_directory_as_config_file_is_an_error(home: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        config.load(str(tmp_path))


def test_missing_default_files_are_fine(home: Path) -> None:
    assert not (home / "docpilotd.toml").exists()
    assert config.load() == config.Config(data_dir=str(home))


def test_which_file_is_read(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert config.config_file("x.toml") == (Path("x.toml"), True)
    assert config.config_file() == (home / "docpilotd.toml", False)
    monkeypatch.setenv("DOCPILOT_CONFIG", str(tmp_path / "c.toml"))
    assert config.config_file() == (tmp_path / "c.toml", True)
    assert config.config_file("x.toml") == (Path("x.toml"), True)
    monkeypatch.delenv("DOCPILOT_CONFIG")
    monkeypatch.delenv("DOCPILOT_HOME")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config.config_file() == (tmp_path / "xdg" / "docpilot" / "docpilotd.toml", False)


def test_the_file_in_docpilot_home_is_read(home: Path) -> None:
    home.mkdir(parents=True)
    (home / "docpilotd.toml").write_text("backups_kept = 11\n")
    assert config.load().backups_kept == 11


def test_a_user_config_never_leaks_into_an_isolated_home(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    xdg = tmp_path / "xdg"
    (xdg / "docpilot").mkdir(parents=True)
    (xdg / "docpilot" / "docpilotd.toml").write_text("backups_kept = 99\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    assert config.load().backups_kept == 5


def test_config_is_a_plain_value() -> None:
    assert msgspec.to_builtins(config.Config())["limits"]["max_connections"] == 1024


# -- retention policies --------------------------------------------------------------------------


def test_retention_defaults_and_the_old_name_of_keep_last(cfg_file: WriteConfig) -> None:
    assert config.Config().retention == config.RetentionPolicy()
    cfg_file("backups_kept = 3\n")
    assert config.load().retention.keep_last == 3  # the older key still sets it
    cfg_file("backups_kept = 3\n[retention]\nkeep_last = 9\nkeep_hourly = 0\n")
    loaded = config.load().retention
    assert (loaded.keep_last, loaded.keep_hourly, loaded.keep_daily) == (9, 0, 7)  # the table wins; the rest default


def test_named_policies_and_how_a_session_gets_one(cfg_file: WriteConfig) -> None:
    cfg_file(
        "[retention]\nkeep_last = 4\n"
        "[policies.important]\nkeep_last = 20\nkeep_monthly = 12\ntags = ['release', 'incident']\n"
        "[policies.scratch]\nkeep_last = 1\nkeep_hourly = 0\nkeep_daily = 0\nkeep_weekly = 0\nkeep_monthly = 0\n"
        "tags = ['tmp', 'release']\n"
    )
    cfg = config.load()
    assert list(cfg.policies) == ["important", "scratch"]
    assert cfg.policy_for([], None) == ("default", cfg.retention)
    assert cfg.policy_for(["incident"], None) == ("important", cfg.policies["important"])
    assert cfg.policy_for(["release"], None)[0] == "important"  # the first table naming the tag
    assert cfg.policy_for(["release"], "scratch")[0] == "scratch"  # chosen beats tags
    assert cfg.policy_for(["release"], "default") == ("default", cfg.retention)
    assert cfg.policy_for(["tmp"], "gone-since") == ("scratch", cfg.policies["scratch"])  # removed from the config


@pytest.mark.parametrize(("text", "says"), [
    ("[retention]\nkeep_last = 0\nkeep_hourly = 0\nkeep_daily = 0\nkeep_weekly = 0\nkeep_monthly = 0\n",
     "key 'retention': a policy that keeps nothing"),
    ("[policies.x]\nschedule_seconds = 10\n", "key 'policies.x': schedule_seconds must be 0"),
    ("[policies.default]\nkeep_last = 2\n", "'default' is the [retention] table's policy"),
    ("[policies.'bad name']\nkeep_last = 2\n", "policies"),
    ("[policies.x]\nkeep_last = -1\n", "keep_last"),
    ("[policies.x]\nkeep_everything = true\n", "keep_everything"),
])
def test_a_bad_policy_is_one_error_naming_it(cfg_file: WriteConfig, text: str, says: str) -> None:
    cfg_file(text)
    with pytest.raises(ConfigError) as caught:
        config.load()
    assert says in str(caught.value)
