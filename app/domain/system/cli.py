"""`tradedesk backup create FILE` / `tradedesk backup restore FILE` (registered by app/cli.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click


def _database_url() -> str:
    from app.lib.embedded import apply_embedded_defaults
    from app.lib.log import configure_logging
    from app.lib.settings import get_settings

    apply_embedded_defaults()
    settings = get_settings()
    configure_logging(settings.log_level, os.environ.get("LOG_FORMAT", "console"))
    if not settings.database_url:
        raise click.ClickException("DATABASE_URL is not configured")
    return settings.database_url


@click.group("backup")
def backup_group() -> None:
    """Logical PostgreSQL backups (pg_dump custom format) and restores."""


@backup_group.command("create")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def backup_create(file: Path) -> None:
    """Dump the configured database to FILE."""
    from app.domain.system.backup import BackupError, backup

    try:
        result = backup(_database_url(), file)
    except BackupError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(
        f"backup written: {result.path} ({result.size_bytes} bytes, PostgreSQL {result.server_major}, "
        f"{result.tool.path} {result.tool.major})"
    )


@backup_group.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def backup_restore(file: Path, yes: bool) -> None:
    """Restore FILE into the configured database, replacing the objects it contains.

    Stop the API and workers first: the restore runs in one transaction and waits for their locks."""
    from app.domain.system.backup import BackupError, restore

    url = _database_url()
    if not yes:
        click.confirm(f"Replace the contents of the configured database with {file}?", abort=True)
    try:
        tool = restore(file, url)
    except BackupError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(
        f"restored {file} ({tool.path} {tool.major}); run `tradedesk db upgrade` if it predates this release"
    )


COMMANDS = [backup_group]
