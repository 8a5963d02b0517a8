"""`tradedesk serve` with TLS as a real process: HTTPS health/readiness; SIGTERM drains in-flight requests.

The certificate is self-signed for 127.0.0.1 and is the only trust anchor the client uses, so a pass
also proves the server presents exactly that certificate.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import REDIS_URL, RUN_ID

pytestmark = pytest.mark.slow

WORKERS = 2  # as in the image's CMD: shutdown must coordinate several processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        import cryptography  # noqa: F401
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            pytest.skip("neither the cryptography package nor the openssl binary is available")
        subprocess.run(
            [
                openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            ],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        return cert, key
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert, key


def _tradedesk() -> str:
    beside = Path(sys.executable).with_name("tradedesk")
    return (
        str(beside)
        if beside.exists()
        else (shutil.which("tradedesk") or pytest.fail("tradedesk CLI not installed"))
    )


@pytest.fixture
def tls_server(tmp_path, database_url):
    cert, key = _self_signed(tmp_path)
    port = _free_port()
    admin_key = f"td_tls_admin_{RUN_ID}_{uuid.uuid4().hex}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        # Inside the test run's namespace, so the session teardown removes its keys.
        "TRADEDESK_QUEUE_NAME": f"tdtest-{RUN_ID}-tls",
        "TRADEDESK_REDIS_PREFIX": f"tdtest-{RUN_ID}-tls",
        "TRADEDESK_WORKERS_IN_PROCESS": "false",
        "TRADEDESK_ADMIN_API_KEY": admin_key,
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "WARNING",  # granian's own start/stop lines are INFO regardless
    }
    log = (tmp_path / "server.log").open("w+")
    argv = [
        _tradedesk(), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(WORKERS),
        "--ssl-certfile", str(cert), "--ssl-keyfile", str(key), "--no-access-log",
    ]  # fmt: skip
    # Own session: a failing test can kill the server and its granian workers as a group.
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    ctx = ssl.create_default_context(cafile=str(cert))

    def output() -> str:
        log.flush()
        log.seek(0)
        return log.read()[-5000:]

    try:
        yield {
            "proc": proc,
            "base": f"https://127.0.0.1:{port}",
            "ssl": ctx,
            "admin_key": admin_key,
            "output": output,
        }
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()


def _wait_serving(server, workers: int, timeout: float = 90.0) -> httpx.Response:
    """Until /health answers over HTTPS *and* every granian worker has started: granian (2.x) does not
    stop a worker that is still starting when SIGTERM arrives, it kills it after workers_kill_timeout
    (30 s), which would make the shutdown assertion below measure start-up instead of draining."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if server["proc"].poll() is not None:
            pytest.fail(f"server exited with {server['proc'].returncode}:\n{server['output']()}")
        try:
            resp = httpx.get(f"{server['base']}/health", verify=server["ssl"], timeout=2)
            last = resp.status_code
            output = server["output"]()
            if resp.status_code == 200 and all(
                f"Started worker-{n}" in output for n in range(1, workers + 1)
            ):
                return resp
        except httpx.TransportError as exc:
            last = exc
        time.sleep(0.25)
    pytest.fail(
        f"not serving over HTTPS with {workers} workers within {timeout}s ({last!r}):\n{server['output']()}"
    )


def test_serve_over_tls_and_drain_on_sigterm(tls_server):
    server = tls_server
    resp = _wait_serving(server, WORKERS)
    assert resp.json() == {"status": "ok"}
    assert resp.http_version == "HTTP/1.1"

    ready = httpx.get(f"{server['base']}/ready", verify=server["ssl"], timeout=10)
    assert ready.status_code == 200, ready.text

    # A client that does not trust the certificate is refused: TLS is really in the path.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server['base']}/health", verify=ssl.create_default_context(), timeout=5)

    # An order-entry-like write whose body is still arriving when SIGTERM lands must complete: this is
    # what preStop + granian's graceful shutdown rely on during a rolling update.
    code = f"TLS{uuid.uuid4().hex[:8].upper()}"
    body = (
        f'{{"code": "{code}", "name": "TLS drain", "maker_fee_rate": "0.0005", '
        f'"taker_fee_rate": "0.001", "slippage_bps": "0"}}'
    ).encode()
    first_part_sent, release = threading.Event(), threading.Event()

    def slow_body():
        yield body[:20]
        first_part_sent.set()  # the generator resumes only once the first part was written
        release.wait(30)
        yield body[20:]

    result: dict = {}

    def send() -> None:
        try:
            result["resp"] = httpx.post(
                f"{server['base']}/api/v1/exchanges",
                content=slow_body(),
                headers={
                    "Authorization": f"Bearer {server['admin_key']}",
                    "Content-Type": "application/json",
                },
                verify=server["ssl"],
                timeout=30,
            )
        except Exception as exc:  # reported by the assertion below
            result["error"] = exc

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    assert first_part_sent.wait(10), "the request body was never started"
    time.sleep(0.3)  # let the request reach the application before the signal

    started = time.monotonic()
    server["proc"].send_signal(signal.SIGTERM)
    time.sleep(1.0)
    release.set()
    sender.join(30)
    assert "error" not in result, f"in-flight request failed: {result.get('error')!r}\n{server['output']()}"
    assert result["resp"].status_code == 201, result["resp"].text
    assert result["resp"].json()["code"] == code

    try:
        returncode = server["proc"].wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"server still running 30 s after SIGTERM:\n{server['output']()}")
    elapsed = time.monotonic() - started
    assert returncode == 0, f"exit {returncode}:\n{server['output']()}"
    assert elapsed < 30
    # Every worker stopped by itself; granian did not have to kill one at workers_kill_timeout.
    assert "refused to gracefully stop" not in server["output"](), server["output"]()

    # Nothing accepts connections on the port any more.
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server['base']}/health", verify=server["ssl"], timeout=2)
