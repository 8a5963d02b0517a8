"""`Idempotency-Key` for POST/PUT/PATCH/DELETE: the first response is stored and replayed.

Keyed by user + key, for `IDEMPOTENCY_TTL_SECONDS` (24 h). A retry with the same method, path and body
gets the stored status and body back (`Idempotent-Replayed: true`); a different body is 422; a duplicate
arriving while the first is still running is 409. The store is the shared KV (Redis), so this holds
across API processes. If the store is unreachable, requests that carry the header get 503 rather than a
silent loss of the guarantee; requests without it are unaffected.
"""

from __future__ import annotations

import hashlib

import msgspec
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from app.lib.errors import ApiError
from app.lib.log import ThrottledWarning, get_logger
from app.lib.middleware import LeanMiddleware

log = get_logger("app.idempotency")
_warn_store_unavailable = ThrottledWarning(log, "idempotency_store_unavailable")

METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
IN_FLIGHT_TTL = 120.0
_INFLIGHT = b"inflight:"


class StoredResponse(msgspec.Struct, array_like=True):
    fingerprint: str
    status: int
    content_type: bytes
    body: bytes


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(StoredResponse)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


class IdempotencyMiddleware(LeanMiddleware):

    def __init__(self, ttl: int) -> None:
        self.ttl = ttl

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        key = _header(scope, b"idempotency-key") if scope["method"] in METHODS else None
        principal = scope.get("user")
        if key is None or principal is None:
            await next_app(scope, receive, send)
            return
        if not (0 < len(key) <= 200) or not key.isprintable():
            raise ApiError(400, "Idempotency-Key must be 1..200 printable characters",
                           errors=[{"field": "Idempotency-Key", "message": "invalid header value"}])

        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        fingerprint = hashlib.sha256(
            scope["method"].encode() + b" " + scope["path"].encode() + b"\n" + body
        ).hexdigest()
        kv = scope["app"].state.kv
        store_key = f"idem:{principal.user_id}:{hashlib.sha256(key.encode()).hexdigest()}"

        try:
            acquired = await kv.set_nx(store_key, _INFLIGHT + fingerprint.encode(), IN_FLIGHT_TTL)
            existing = None if acquired else await kv.get(store_key)
        except Exception as exc:
            _warn_store_unavailable(error=repr(exc)[:200])
            raise ApiError(503, "Idempotency store unavailable; retry later or omit Idempotency-Key") from exc

        if not acquired:
            if existing is None:  # expired between the two calls: treat as in flight, client retries
                raise ApiError(409, "A request with this Idempotency-Key is being processed")
            if existing.startswith(_INFLIGHT):
                if existing[len(_INFLIGHT):].decode() != fingerprint:
                    raise ApiError(422, "Idempotency-Key was already used with a different request",
                                   slug="idempotency-key-reused")
                raise ApiError(409, "A request with this Idempotency-Key is still being processed",
                               slug="idempotency-in-flight")
            stored = _decoder.decode(existing)
            if stored.fingerprint != fingerprint:
                raise ApiError(422, "Idempotency-Key was already used with a different request",
                               slug="idempotency-key-reused")
            await send({
                "type": "http.response.start",
                "status": stored.status,
                "headers": [(b"content-type", stored.content_type), (b"idempotent-replayed", b"true"),
                            (b"content-length", str(len(stored.body)).encode())],
            })
            await send({"type": "http.response.body", "body": stored.body})
            return

        sent_body = False

        async def replay_receive() -> Message:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        status = 500
        content_type = b"application/json"
        out: list[bytes] = []

        async def capture_send(message: Message) -> None:
            nonlocal status, content_type
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", ()):
                    if name.lower() == b"content-type":
                        content_type = value
            elif message["type"] == "http.response.body":
                out.append(message.get("body", b""))
            await send(message)

        try:
            await next_app(scope, replay_receive, capture_send)
        except BaseException:
            await kv.delete(store_key)
            raise
        # Server errors and throttling are not "the first response": let the client retry for real.
        if status >= 500 or status == 429:
            await kv.delete(store_key)
            return
        record = StoredResponse(fingerprint, status, content_type, b"".join(out))
        await kv.set(store_key, _encoder.encode(record), ttl=self.ttl)
