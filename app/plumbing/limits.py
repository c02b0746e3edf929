"""Bounds on the request head, enforced while it is read: uvicorn's httptools protocol with limits.

uvicorn's h11 protocol bounds a request head (h11_max_incomplete_event_size), its httptools protocol
does not: a client could make a worker buffer a header of any size. `BoundedHttpToolsProtocol` (the
`http` option of `python -m app`) answers, as problem+json, and closes the connection:

    414 URI Too Long                        the request target is longer than MAX_URL_BYTES
    431 Request Header Fields Too Large     request line + headers exceed MAX_HEAD_BYTES
    408 Request Timeout                     a request head (or a new connection's first one) has not
                                            arrived in full within HEADER_TIMEOUT seconds: slow clients
                                            (slowloris) hold a connection for that long, no longer
    503 Service Unavailable                 the worker already has MAX_CONNECTIONS connections (answered
                                            when the connection is made) or requests in flight (answered
                                            when the head is complete); Retry-After: 1

Between requests on a kept-alive connection, uvicorn's own KEEPALIVE_TIMEOUT closes an idle connection.

A request httptools cannot parse gets uvicorn's 400, also as problem+json. A worker holds at most
MAX_HEAD_BYTES plus one socket read (<= 256 KiB) of a head it is receiving.
Bodies need no bound here: the endpoints that read a body (POST /feedback, the batch endpoints) bound their own
(app.plumbing.json_body.JsonBodyRoute), and uvicorn stops reading a body above 64 KiB until the app asks
for it.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from app.plumbing.metrics import CONNECTIONS_REFUSED
from app.settings import MAX_HEAD_BYTES, MAX_URL_BYTES


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = getattr(getattr(self.app, "state", None), "settings", None)
        self.max_url = getattr(settings, "max_url_bytes", MAX_URL_BYTES)
        self.max_head = getattr(settings, "max_head_bytes", MAX_HEAD_BYTES)
        self.max_connections = getattr(settings, "max_connections", None)
        self.head_timeout = getattr(settings, "header_timeout", None)
        self.url = b""
        self._in_head = True  # from the first byte of a request (or of the connection) to the end of its headers
        self._head_bytes = 0
        self._refused = False
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.max_connections is not None and len(self.connections) > self.max_connections:
            self._overloaded()  # refused at once: a connection that is never served must not hold a descriptor
            return
        self._arm_head_timer()  # a connection that never sends a head is timed out like a slow one

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        if self.head_timeout and self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _overloaded(self) -> None:
        CONNECTIONS_REFUSED.labels("max-connections").inc()
        self._refuse(
            HTTPStatus.SERVICE_UNAVAILABLE,
            f"this worker is at its limit of {self.max_connections} connections or requests in flight",
            "/problems/overloaded",
            log=False,
            headers=[b"retry-after: 1\r\n"],
        )

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._refused and not self.transport.is_closing():
            CONNECTIONS_REFUSED.labels("header-timeout").inc()
            self._refuse(
                HTTPStatus.REQUEST_TIMEOUT,
                f"the request head did not arrive within {self.head_timeout:g} seconds",
                "/problems/request-timeout",
                log=False,  # slow clients come in crowds: counted in /metrics, not logged one by one
            )

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self.cycle is None or self.cycle.response_complete:
            # Bytes on an idle connection start a head, even bytes the parser skips without beginning a message
            # (blank lines between requests): they cancel uvicorn's keep-alive timer, so this one takes over.
            self._arm_head_timer()
        super().data_received(data)
        if self._in_head and not self._refused and not self.transport.is_closing():
            # Still inside a head after this read: it all counts (a read that also ended the previous
            # request counts in full: the bound is approximate by at most one read, never lower).
            self._head_bytes += len(data)
            if len(self.url) > self.max_url:
                self._refuse(HTTPStatus.REQUEST_URI_TOO_LONG, f"the request target is longer than {self.max_url} bytes")
            elif self._head_bytes > self.max_head:
                self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"request line and headers exceed {self.max_head} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes = True, 0
        self._arm_head_timer()

    def on_headers_complete(self) -> None:
        # A head that arrived within one read: measured exactly here, before the app sees it.
        self._in_head = False
        self._disarm_head_timer()
        if self._refused:
            return
        if self.max_connections is not None and len(self.tasks) >= self.max_connections:
            self._overloaded()
            return
        if len(self.url) > self.max_url:
            self._refuse(HTTPStatus.REQUEST_URI_TOO_LONG, f"the request target is longer than {self.max_url} bytes")
            return
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.max_head:
            self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"request line and headers exceed {self.max_head} bytes")
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """A request httptools cannot parse (bad method, bytes, framing): problem+json like every other error."""
        self._refuse(HTTPStatus.BAD_REQUEST, f"malformed HTTP request: {msg}", "/problems/malformed-request", log=False)

    def _refuse(
        self,
        status: HTTPStatus,
        detail: str,
        type_: str = "/problems/request-too-large",
        log: bool = True,
        headers: list[bytes] | None = None,
    ) -> None:
        """Answer with a problem document and close: the rest of the connection is not parsed."""
        self._refused = True
        self._disarm_head_timer()
        path = self.url.split(b"?", 1)[0][:200].decode("latin-1")
        holder = getattr(getattr(self.app, "state", None), "holder", None)
        live = getattr(holder, "current", None)
        body = orjson.dumps(
            {
                "type": type_,
                "title": status.phrase,
                "status": int(status),
                "detail": detail,
                "instance": path,
                "artifact_version": getattr(live, "name", None),
            }
        )
        head = [STATUS_LINE[status]]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        head += headers or []
        head += [
            b"content-type: application/problem+json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()
        if log:  # uvicorn already logs its own 400s
            self.logger.warning("refused a request head: %s %s", int(status), detail)
