"""Settings: one definition each; CLI over environment over config file over default."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from supervisor.cli import cli
from supervisor.config import SETTINGS, Config, ConfigError, env_name, load_config


def test_precedence_cli_env_file_default(tmp_path: Path) -> None:
    conf = tmp_path / "qs.toml"
    conf.write_text(
        '[qsupervise]\napp = "tasks"\nchildren = 3\nthreads = 7\n'
        'heartbeat-timeout = 9.5\nqueues = ["high:3", "low:1"]\n'
    )
    env = {
        "QSUPERVISE_THREADS": "8",
        "QSUPERVISE_GRACEFUL_TIMEOUT": "12",
        "REDIS_URL": "redis://127.0.0.1:7000/1",
    }
    config = load_config({"config": str(conf), "children": 5}, env)
    assert config.children == 5  # CLI
    assert config.threads == 8  # environment beats the file
    assert config.heartbeat_timeout == 9.5  # file
    assert config.graceful_timeout == 12.0
    assert config.redis_url == "redis://127.0.0.1:7000/1"  # REDIS_URL fallback
    assert config.sweep_interval == Config.sweep_interval  # default
    assert config.queue_names == ["high", "low"] and config.weights == {"high": 3, "low": 1}


def test_qsupervise_redis_url_wins_over_redis_url() -> None:
    env = {"REDIS_URL": "redis://a:1/0", "QSUPERVISE_REDIS_URL": "redis://b:2/0"}
    assert load_config({"app": "tasks"}, env).redis_url == "redis://b:2/0"


def test_strict_order_has_no_weights() -> None:
    config = load_config({"app": "tasks", "queues": "critical,default,low"}, {})
    assert config.queue_names == ["critical", "default", "low"]
    assert config.weights is None


@pytest.mark.parametrize(
    ("cli", "env", "message"),
    [
        ({}, {}, "no task modules given"),
        ({"app": "tasks", "threads": 0}, {}, "--threads must be at least 1"),
        ({"app": "tasks"}, {"QSUPERVISE_CHILDREN": "many"}, "children must be an integer"),
        ({"app": "tasks", "queues": "a:x"}, {}, "queue weight must be an integer"),
        ({"app": "tasks", "queues": "a,a"}, {}, "named twice"),
        (
            {"app": "tasks", "heartbeat_timeout": 1.0, "heartbeat_interval": 2.0},
            {},
            "--heartbeat-timeout must be longer",
        ),
        ({"app": "tasks", "log_level": "loud"}, {}, "--log-level must be one of"),
    ],
)
def test_bad_settings_are_one_line_errors(
    cli: dict[str, object], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_config(cli, env)
    assert "\n" not in str(info.value)


def test_unknown_key_in_config_file(tmp_path: Path) -> None:
    conf = tmp_path / "qs.toml"
    conf.write_text("app = 'tasks'\nchildern = 3\n")
    with pytest.raises(ConfigError, match="unknown setting 'childern'"):
        load_config({"config": str(conf)}, {})


def test_every_setting_has_a_flag_an_env_var_and_docs() -> None:
    runner = CliRunner()
    help_text = runner.invoke(cli, ["--help"]).output
    docs = (Path(__file__).resolve().parent.parent / "docs" / "supervisor.md").read_text()
    for f in SETTINGS:
        flag = "--" + f.name.replace("_", "-")
        assert flag in help_text, flag
        assert flag in docs, f"{flag} missing from docs/supervisor.md"
        assert env_name(f.name) in docs, f"{env_name(f.name)} missing from docs/supervisor.md"


def test_cli_reports_bad_setting_in_one_line() -> None:
    result = CliRunner().invoke(cli, ["--app", "tasks", "--threads", "0"])
    assert result.exit_code == 2
    assert result.output.strip() == "qsupervise: error: --threads must be at least 1"
