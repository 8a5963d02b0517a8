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
