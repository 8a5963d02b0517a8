"""GET /api/v1/stream (WebSocket), GET /api/v1/accounts/{id}/stream (SSE), GET .../activities.

The protocol is documented in docs/STREAMING.md (OpenAPI cannot describe a WebSocket). Handlers parse,
authorise and hand over to the hub; the rules of delivery live in hub.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

import anyio
import msgspec
from litestar import Controller, Request, get, websocket
from litestar.background_tasks import BackgroundTask
from litestar.connection import WebSocket
from litestar.exceptions import WebSocketDisconnect
from litestar.params import FromPath, HeaderParameter, Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from app.domain.desk import sessions as desk_sessions
from app.domain.identity.bruteforce import BruteForcePolicy, reject_failed_authentication
from app.domain.identity.middleware import credential
from app.domain.identity.schemas import Principal
from app.domain.identity.services import KEY_PREFIX, authenticate, live_principals
from app.domain.markets.candles import TIMEFRAMES
from app.domain.streams import log as stream_log
from app.domain.streams.hub import CLOSE_CREDENTIALS, CLOSE_OVERFLOW, Client
from app.domain.streams.messages import ActivityPage, encode, error
from app.domain.streams.runtime import StreamRuntime
from app.lib.errors import Conflict, Malformed, RateLimited, not_found
from app.lib.log import get_logger
from app.lib.metrics import STREAM_CONNECTIONS
from app.lib.pagination import Limit

log = get_logger("app.streams")

AUTH_TIMEOUT_SECONDS = 5.0
MAX_STREAMS_PER_CONNECTION = 200
CLEANUP_SECONDS = 5  # the most a closed SSE response's cleanup may take
CLOSE_TOO_MANY = 4429
ACCOUNT_STREAMS = frozenset({"trade_updates", "accounts", "risk"})
# Scope key under which app.server.asgi leaves the server's own `send` of a WebSocket. Inside Litestar each
# frame passes three wrappers that do nothing for a `websocket.send` after the accept (the before_send
# hook, the exception middleware's "response started" flag, the socket's disconnect check): with 100
# subscribers of an account, 300 coroutine calls per event (docs/BENCHMARKS.md, "Streams"). The sender
# uses it when present (under a real server) and the wrapped `socket.send` otherwise (in-process tests).
RAW_SEND = "tradedesk.raw_send"
BATCH_MAX = 100  # messages per frame when batching: a frame stays well under clients' 1 MiB limits


class StreamRequestError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _ClientMessage(msgspec.Struct, forbid_unknown_fields=True):
    action: str
    streams: list[str] = []
    since: dict[str, int] = {}
    key: str | None = None


_decode_message = msgspec.json.Decoder(_ClientMessage).decode


def _runtime(conn: Any) -> StreamRuntime:
    return conn.app.state.streams


# ------------------------------------------------------------------------------------------ authorisation


async def _instrument_exists(apg: Any, symbol: str) -> bool:
    return await apg.fetchval("SELECT EXISTS (SELECT 1 FROM instruments WHERE symbol = $1)", symbol)


async def authorise_streams(rt: StreamRuntime, principal: Principal, names: list[str]) -> set[str]:
    """The canonical names of `names`, or StreamRequestError. An account the caller may not read is
    answered exactly like one that does not exist."""
    if len(set(names)) > MAX_STREAMS_PER_CONNECTION:  # (a name given twice is one stream)
        raise StreamRequestError(
            "too-many-streams", f"at most {MAX_STREAMS_PER_CONNECTION} streams per connection"
        )
    out: set[str] = set()
    for name in names:
        if not isinstance(name, str) or len(name) > 100:
            raise StreamRequestError("unknown-stream", "stream names are strings of at most 100 characters")
        if name in ACCOUNT_STREAMS:
            out.add(name)
            continue
        kind, _, rest = name.partition(":")
        unknown = StreamRequestError("unknown-stream", f"unknown stream {name!r}")
        if kind == "trade_updates" and rest:
            try:
                account_id = uuid.UUID(rest)
            except ValueError:
                raise unknown from None
            state = await rt.read(
                lambda apg, a=account_id: stream_log.log_state(
                    apg, a, principal.user_id, principal.can_read_all_accounts
                )
            )
            if state is None:
                raise unknown
            out.add(f"trade_updates:{account_id}")
        elif kind == "prices" and rest:
            if not await rt.read(lambda apg, s=rest: _instrument_exists(apg, s)):
                raise unknown
            out.add(name)
        elif kind == "bars" and rest:
            symbol, _, timeframe = rest.rpartition(":")
            if timeframe not in TIMEFRAMES or not symbol:
                raise unknown
            if not await rt.read(lambda apg, s=symbol: _instrument_exists(apg, s)):
                raise unknown
            out.add(name)
        else:
            raise unknown
    return out


async def authorise_since(
    rt: StreamRuntime, principal: Principal, since: dict[str, int], streams: set[str]
) -> dict[str, int]:
    """`since` keyed by account hex, after checking each account is readable, covered by a subscribed
    trade_updates stream and still fully retained."""
    out: dict[str, int] = {}
    for key, seq in since.items():
        try:
            account_id = uuid.UUID(key)
        except ValueError:
            raise StreamRequestError("unknown-stream", f"unknown account {key!r}") from None
        state = await rt.read(
            lambda apg, a=account_id: stream_log.log_state(
                apg, a, principal.user_id, principal.can_read_all_accounts
            )
        )
        if state is None:
            raise StreamRequestError("unknown-stream", f"unknown account {key!r}")
        if "trade_updates" not in streams and f"trade_updates:{account_id}" not in streams:
            raise StreamRequestError(
                "invalid-since", f"since names account {key} but no subscribed trade_updates stream covers it"
            )
        problem = state.resume_error(seq)
        if problem is not None:
            raise StreamRequestError(*problem)
        out[account_id.hex] = seq
    return out


# ---------------------------------------------------------------------------------------------- WebSocket


async def _authenticate_socket(socket: WebSocket, rt: StreamRuntime) -> tuple[Principal | None, str | None]:
    """The connection's principal (None: close it), and the key it presented (None: none was)."""
    key = credential(socket.scope)
    if key is None and (principal := await desk_sessions.authenticate_socket(socket.scope)) is not None:
        return principal, None  # the desk: its session cookie, on an upgrade from this server's own origin
    if key is None:
        try:
            text = await asyncio.wait_for(socket.receive_text(), AUTH_TIMEOUT_SECONDS)
            message = _decode_message(text)
        except (TimeoutError, msgspec.ValidationError, msgspec.DecodeError):
            return None, None
        if message.action != "auth" or not message.key:
            return None, None
        key = message.key
    return await authenticate(rt.engine, key), key


async def _handle_message(client: Client, rt: StreamRuntime, text: str) -> None:
    try:
        message = _decode_message(text)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        client.offer(error("invalid-message", f"not a client message: {exc}"[:300]).decode())
        return
    try:
        if message.action == "subscribe":
            # Rights as they are now, not as they were when the connection was made.
            current = await live_principals(rt.engine, [client.principal.key_id])
            if current.get(client.principal.key_id) != client.principal:
                client.close(CLOSE_CREDENTIALS, "credentials")
                return
            wanted = client.streams | await authorise_streams(rt, client.principal, message.streams)
            if len(wanted) > MAX_STREAMS_PER_CONNECTION:
                raise StreamRequestError("too-many-streams", f"at most {MAX_STREAMS_PER_CONNECTION} streams")
            since = await authorise_since(rt, client.principal, message.since, wanted)
        elif message.action == "unsubscribe":
            wanted = client.streams - {_canonical(s) for s in message.streams}
            since = {}
        elif message.action == "auth":
            raise StreamRequestError("invalid-message", "already authenticated")
        else:
            raise StreamRequestError("invalid-message", f"unknown action {message.action!r}")
    except StreamRequestError as exc:
        client.offer(error(exc.code, exc.message).decode())
        return
    try:
        # `seqs`: where each account's trade updates stand for this subscription (its last seq before the
        # live ones, or the `since` asked for), so a client that reconnects resumes even an account it has
        # not heard from yet.
        await client.set_streams(
            wanted,
            since,
            lambda seqs: encode({"type": "subscribed", "streams": sorted(wanted), "seqs": seqs}).decode(),
        )
    except Exception as exc:  # the channels backend (Redis) or PostgreSQL is unavailable
        log.warning("stream_subscribe_failed", error=repr(exc)[:200])
        client.offer(error("unavailable", "the stream backend is unavailable; try again").decode())


def _canonical(name: str) -> str:
    kind, _, rest = name.partition(":")
    if kind == "trade_updates" and rest:
        with contextlib.suppress(ValueError):
            return f"trade_updates:{uuid.UUID(rest)}"
    return name


async def _send_loop(socket: WebSocket, client: Client, batch: bool) -> None:
    send = socket.scope.get(RAW_SEND) or socket.send  # type: ignore[call-overload]
    if batch:
        # `?batch=true`: every frame is a JSON array of the messages queued when the sender ran (at least
        # one, at most BATCH_MAX): one frame (one write, one wake-up of the client) for the event's fan-out
        # instead of one per message when several are waiting (a placement's `new` and `accepted`, a
        # replay). No delay is added to wait for more.
        while True:
            items = await client.take_all(BATCH_MAX)
            if items is None:
                return
            await send({"type": "websocket.send", "text": "[" + ",".join([body for _, body in items]) + "]"})
    while True:
        item = await client.take()
        if item is None:
            return
        await send({"type": "websocket.send", "text": item[1]})


async def _receive_loop(socket: WebSocket, client: Client, rt: StreamRuntime) -> None:
    try:
        while client.close_code is None:
            # (socket.receive_text() reads a binary frame as "", which then failed to decode as
            # "truncated": say what is wrong instead)
            event = await socket.receive()
            if event["type"] == "websocket.disconnect":
                return
            text = event.get("text")
            if text is None:
                message = "binary frames are not read: send JSON as text"
                client.offer(error("invalid-message", message).decode())
                continue
            await _handle_message(client, rt, text)
    except WebSocketDisconnect:
        pass
    finally:
        client.close(1000, "client_gone")


@websocket("/api/v1/stream")
async def stream_socket(socket: WebSocket) -> None:
    rt = _runtime(socket)
    await socket.accept()
    principal, presented = await _authenticate_socket(socket, rt)
    if principal is None:
        code = CLOSE_CREDENTIALS
        if presented is not None:
            # Counted, audited and slowed like a failed key over HTTP (identity/bruteforce.py); an address
            # blocked for its failures is told so with 4429.
            shown = presented[:10] if presented.startswith(KEY_PREFIX) else None
            policy = BruteForcePolicy.from_settings(rt.settings)
            problem = await reject_failed_authentication(socket.scope, policy, shown)
            code = CLOSE_TOO_MANY if problem.status_code == 429 else CLOSE_CREDENTIALS
        with contextlib.suppress(Exception):
            await socket.close(
                code=code,
                reason="too many failed keys from this address" if code == CLOSE_TOO_MANY
                else "missing, invalid, expired or revoked API key",
            )
        return
    conn_id = uuid.uuid4().hex
    if not await rt.slots.acquire(principal.user_id, conn_id):
        with contextlib.suppress(Exception):
            await socket.close(code=CLOSE_TOO_MANY, reason="too many stream connections for this user")
        return
    client = Client(rt.hub, principal, rt.settings.stream_buffer_messages)
    if presented is None:  # the desk's session cookie: the stream ends with the session (sign-out, expiry)
        client.desk_session = desk_sessions.session_cookie(socket.scope)
    rt.hub.attach(client)
    STREAM_CONNECTIONS.inc()
    receiver = asyncio.create_task(_receive_loop(socket, client, rt))
    batch = socket.query_params.get("batch", "").lower() in ("1", "true")
    try:
        await _send_loop(socket, client, batch)
    except Exception:  # the peer went away mid-send
        client.close(1000, "client_gone")
    finally:
        STREAM_CONNECTIONS.dec()
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await receiver
        await client.aclose()
        with contextlib.suppress(Exception):
            await rt.slots.release(principal.user_id, conn_id)
        code = client.close_code or 1000
        if code != 1000:  # 1000: the client left; 4008 (overflow) and 1001 (shutdown) are ours to send
            with contextlib.suppress(Exception):
                reasons = {
                    CLOSE_OVERFLOW: "slow consumer: resume with since", CLOSE_CREDENTIALS: "key revoked or changed"
                }
                await socket.close(code=code, reason=reasons.get(code, ""))


# ---------------------------------------------------------------------------------------------- SSE, REST

LastEventId = Annotated[str | None, HeaderParameter(name="Last-Event-ID", max_length=24, required=False)]


class StreamController(Controller):
    path = "/api/v1/accounts/{account_id:uuid}"
    tags = ["streams"]

    @get(
        "/activities",
        summary="The account's order events (trade_updates), ascending by seq: the stream's durable log",
    )
    async def activities(
        self,
        request: Request,
        account_id: FromPath[uuid.UUID],
        # At most 2**52: every integer up to one past it is exact as a JSON number (a float), so a client
        # that checks the documented maximum in floating point agrees with the server (near 2**62 it
        # rounded 2**62 + 95 down to the bound: schema-valid for the client, a 400 from the server).
        after_seq: Annotated[
            int, Parameter(ge=0, le=2**52, description="Return events with seq > after_seq")
        ] = 0,
        limit: Limit = 50,
    ) -> ActivityPage:
        rt = _runtime(request)
        principal: Principal = request.user

        async def read(apg: Any) -> ActivityPage:
            state = await stream_log.log_state(
                apg, account_id, principal.user_id, principal.can_read_all_accounts
            )
            if state is None:
                raise not_found("Account")
            items = await stream_log.read_log(apg, account_id, after_seq, limit + 1)
            more = len(items) > limit
            items = items[:limit]
            return ActivityPage(items=items, next_after_seq=items[-1].seq if more else None)

        return await rt.read(read)

    @get(
        "/stream",
        media_type="text/event-stream",
        summary="Server-Sent Events of the account's trade_updates (id = seq; Last-Event-ID resumes)",
        description="Each event's data is a trade_update (docs/STREAMING.md); `: heartbeat` comments keep the "
        "connection alive. A Last-Event-ID older than the retained log is 409 resume-too-old.",
    )
    async def stream(
        self,
        request: Request,
        account_id: FromPath[uuid.UUID],
        last_event_id: LastEventId = None,
    ) -> ServerSentEvent:
        rt = _runtime(request)
        principal: Principal = request.user
        state = await rt.read(
            lambda apg: stream_log.log_state(
                apg, account_id, principal.user_id, principal.can_read_all_accounts
            )
        )
        if state is None:
            raise not_found("Account")
        since: dict[str, int] = {}
        if last_event_id is not None and last_event_id.strip():
            text = last_event_id.strip()
            if not (text.isascii() and text.isdigit()):  # (int() would also take "+5", "5_0", " 5")
                raise Malformed(
                    "Last-Event-ID must be a seq (digits only)", "Last-Event-ID", slug="invalid-last-event-id"
                )
            seq = int(text)
            problem = state.resume_error(seq)
            if problem is not None:
                raise Conflict(problem[1], slug=problem[0])
            since = {account_id.hex: seq}
        conn_id = uuid.uuid4().hex
        if not await rt.slots.acquire(principal.user_id, conn_id):
            raise RateLimited(
                "Too many stream connections for this user",
                slug="too-many-streams",
                headers={"Retry-After": str(int(rt.settings.stream_heartbeat_seconds))},
            )
        client = Client(rt.hub, principal, rt.settings.stream_buffer_messages)
        rt.hub.attach(client)
        try:
            await client.set_streams({f"trade_updates:{account_id}"}, since, None)
        except BaseException:
            await client.aclose()
            await rt.slots.release(principal.user_id, conn_id)
            raise
        release = _sse_release(client, rt, principal.user_id, conn_id)
        return ServerSentEvent(_sse_events(client, release), background=BackgroundTask(release))


class _SseChunk(ServerSentEventMessage):
    """Events already in their wire form, several to a chunk: Litestar writes what `encode` returns."""

    def __init__(self, raw: bytes) -> None:
        super().__init__()
        self.raw = raw

    def encode(self) -> bytes:
        return self.raw


def sse_chunk(items: list[tuple[int, str]]) -> bytes:
    """The SSE text of queued (seq, JSON) items: `id:` + `data:` per trade_update, a `: heartbeat` comment
    per heartbeat (nothing else reaches an SSE client). One write for everything queued, not one per event:
    a replay of 10,000 events goes out in a few hundred chunks. JSON from msgspec has no line breaks, so
    each event is one `data:` line."""
    parts = []
    for seq, body in items:
        if seq:
            parts.append(f"id: {seq}\r\ndata: {body}\r\n\r\n")
        elif body.startswith('{"type":"heartbeat"'):
            parts.append(": heartbeat\r\n\r\n")
    return "".join(parts).encode()


def _sse_release(
    client: Client, rt: StreamRuntime, user_id: uuid.UUID, conn_id: str
) -> Callable[[], Awaitable[None]]:
    """What an SSE connection lets go when it ends (its routes, interest keys and connection slot), once,
    whichever of the response's two ways gets there first: the stream's `finally`, or the response's
    background task, which Litestar runs after the body even when the client left before the stream's
    first item (a generator never started runs no `finally`: before, such a connection kept its slot,
    refreshed by every heartbeat, and the user was locked out with 4429)."""
    done = False

    async def release() -> None:
        nonlocal done
        if done:
            return
        done = True
        # A client that disconnects cancels the response's task group (Litestar's send_body): shielded, or
        # the first await raised CancelledError. Bounded: a shielded await cannot be cancelled, and at
        # shutdown the backend it waits on may already be gone (the slot then expires with the registry).
        with anyio.move_on_after(CLEANUP_SECONDS, shield=True):
            await client.aclose()
            with contextlib.suppress(Exception):
                await rt.slots.release(user_id, conn_id)

    return release


async def _sse_events(client: Client, release: Callable[[], Awaitable[None]]) -> AsyncIterator[Any]:
    STREAM_CONNECTIONS.inc()
    try:
        while True:
            items = await client.take_all()
            if items is None:
                return
            chunk = sse_chunk(items)
            if chunk:
                yield _SseChunk(chunk)
    finally:
        STREAM_CONNECTIONS.dec()
        await release()
