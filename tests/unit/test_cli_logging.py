"""The CLI: which log format it picks (JSON for the services, text for a person at a terminal), and
its input checks."""

from __future__ import annotations

import pytest

from app import cli


@pytest.mark.parametrize(
    ("service", "env", "expected"),
    [(True, None, "json"), (False, None, "console"), (True, "console", "console"), (False, "json", "json")],
)
def test_services_log_json_unless_log_format_says_otherwise(monkeypatch, service, env, expected):
    chosen = []
    monkeypatch.setattr(cli, "configure_logging", lambda level, fmt: chosen.append(fmt))
    if env is None:
        monkeypatch.delenv("LOG_FORMAT", raising=False)
    else:
        monkeypatch.setenv("LOG_FORMAT", env)
    cli._configure_cli_logging(service=service, verbose=False)
    assert chosen == [expected] and cli._cli_log_format == expected
    monkeypatch.setattr(cli, "_cli_log_format", "console")


def test_users_create_refuses_an_email_the_api_refuses(monkeypatch):
    from click.testing import CliRunner

    monkeypatch.setattr(cli, "configure_logging", lambda level, fmt: None)  # (the process's logging stays)
    result = CliRunner().invoke(cli.main, ["users", "create", "--email", "notanemail", "--role", "trader"])
    assert result.exit_code == 2 and "--email" in result.output, result.output


def test_db_downgrade_asks_first(monkeypatch):
    from click.testing import CliRunner

    monkeypatch.setattr(cli, "configure_logging", lambda level, fmt: None)
    result = CliRunner().invoke(cli.main, ["db", "downgrade"], input="n\n")
    assert result.exit_code == 1 and "Aborted" in result.output, result.output


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [
        ("RATE_LIMIT_READ_PER_MINUTE", "abc", "RATE_LIMIT_READ_PER_MINUTE='abc' is not a valid int"),
        ("RATE_LIMIT_READ_PER_MINUTE", "0", "RATE_LIMIT_READ_PER_MINUTE='0' must be at least 1"),
        ("DB_POOL_TIMEOUT", "soon", "DB_POOL_TIMEOUT='soon' is not a valid float"),
    ],
)
def test_a_bad_setting_is_a_usage_error_naming_the_variable(monkeypatch, env, value, message):
    from click.testing import CliRunner

    from app.lib.settings import get_settings

    monkeypatch.setattr(cli, "configure_logging", lambda level, fmt: None)
    monkeypatch.setenv(env, value)
    get_settings.cache_clear()  # (settings read by an earlier test in this process)
    result = CliRunner().invoke(cli.main, ["check"])  # (refused before it connects to anything)
    assert result.exit_code == 2 and message in result.output, result.output
