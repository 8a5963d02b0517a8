"""Settings (app/lib/settings.py): each field's environment variable and default are written once, and
`from_env` reads every field from them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from app.lib.settings import ENV, Settings


@pytest.fixture
def clean_env(monkeypatch):
    for f in dataclasses.fields(Settings):
        if ENV in f.metadata:
            monkeypatch.delenv(f.metadata[ENV], raising=False)
    return monkeypatch


def test_every_setting_but_the_version_has_an_environment_variable():
    missing = [f.name for f in dataclasses.fields(Settings) if ENV not in f.metadata and f.name != "version"]
    assert not missing
    names = [f.metadata[ENV] for f in dataclasses.fields(Settings) if ENV in f.metadata]
    assert len(names) == len(set(names))


def test_an_empty_environment_gives_the_field_defaults(clean_env):
    # the one derived default: without Redis the workers run in the API process
    assert Settings.from_env() == dataclasses.replace(Settings(), workers_in_process=True)
    clean_env.setenv("REDIS_URL", "redis://x")
    assert Settings.from_env() == dataclasses.replace(Settings(), redis_url="redis://x")
    clean_env.setenv("DB_POOL_SIZE", "")  # empty counts as unset
    assert Settings.from_env().db_pool_size == Settings().db_pool_size


_SAMPLES = {"str": "x", "str | None": "y", "int": "7", "float": "2.5", "bool": "true", "Path": "/tmp/td"}
_PARSED = {"str": "x", "str | None": "y", "int": 7, "float": 2.5, "bool": True, "Path": Path("/tmp/td")}


@pytest.mark.parametrize(
    "f", [f for f in dataclasses.fields(Settings) if ENV in f.metadata], ids=lambda f: f.metadata[ENV]
)
def test_each_variable_sets_its_field(clean_env, f):
    clean_env.setenv(f.metadata[ENV], _SAMPLES[f.type])
    expected = _PARSED[f.type].upper() if f.name == "log_level" else _PARSED[f.type]
    assert getattr(Settings.from_env(), f.name) == expected


def test_booleans_read_the_usual_spellings(clean_env):
    spellings = [("1", True), ("yes", True), ("ON", True), ("false", False), ("0", False), ("no", False)]
    for raw, value in spellings:
        clean_env.setenv("TRADEDESK_ACCESS_LOG", raw)
        assert Settings.from_env().access_log is value
