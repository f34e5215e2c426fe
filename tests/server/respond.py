"""Decide the response to one request: status, header fields, body and how it is framed."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from tests.server.body import BodyPlan
from tests.server.faults import Faults, Selection
from tests.server.ranges import (
    FULL,
    RangeDecision,
    RangeKind,
    content_range,
    decide_range,
    if_range_matches,
    unsatisfied_range,
)
from tests.server.records import RequestRecord
from tests.server.resources import FileResource, Redirect, Resource
from tests.server.wire import http_date

ERROR_BODY = b"error page\n"
SERVER_NAME = "segdl-fault-server"


class Framing(Enum):
    """How the end of the body is shown (RFC 9112 §6.3)."""

    LENGTH = "content-length"
    CHUNKED = "chunked"
    CLOSE = "close"  # no length: the body ends when the connection closes
    NONE = "none"  # 1xx, 204 and 304 have no body


@dataclass(frozen=True, slots=True)
class ResponsePlan:
    """Everything the connection needs to send one response."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    body_start: int
    body_length: int
    send_body: bool
    framing: Framing
    close_after: bool
    faults: Faults

    def body_plan(self, connection_id: int) -> BodyPlan | None:
        """What the body sender needs (rates are per connection), or None for no body."""
        if not self.send_body:
            return None
        faults = self.faults
        return BodyPlan(
            view=memoryview(self.body)[self.body_start : self.body_start + self.body_length],
            chunked=self.framing is Framing.CHUNKED,
            rate_bytes_per_s=faults.rate_for(connection_id),
            truncate_after=faults.truncate_after,
            reset_after=faults.reset_after,
            stall_after=faults.stall_after,
            stall_s=faults.stall_s,
        )


@dataclass(slots=True)
class _Draft:
    """A response before framing: status, fields, and the [start, start+length) of body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    start: int = 0
    length: int = 0


def _text(status: int, text: bytes, extra: list[tuple[str, str]]) -> _Draft:
    headers = [("Content-Type", "text/plain; charset=utf-8"), *extra]
    return _Draft(status, headers, text, 0, len(text))


def _file_response(request: RequestRecord, file: FileResource, selection: Selection) -> _Draft:
    """200, 206 or 416 for a file, under the range and validator faults."""
    faults = selection.faults
    if selection.validators_changed:
        etag, last_modified = file.changed_validators()
    else:
        etag, last_modified = file.etag, file.last_modified
    decision: RangeDecision = FULL
    # §14.2: Range is defined for GET only; ignored for HEAD.
    if request.method == "GET" and not (
        faults.ignore_range or faults.no_content_length or faults.chunked
    ):
        if_range = request.header("If-Range")
        if request.range is not None and (
            if_range is None or if_range_matches(if_range, etag, last_modified)
        ):
            decision = decide_range(request.range, file.size)
    headers = [("Content-Type", file.content_type), ("Accept-Ranges", "bytes")]
    total = file.size if faults.content_range_total is None else faults.content_range_total
    if decision.kind is RangeKind.UNSATISFIABLE:
        headers.append(("Content-Range", unsatisfied_range(total)))
        return _Draft(416, headers)
    validators = [("ETag", etag), ("Last-Modified", last_modified)]
    headers.extend((name, value) for name, value in validators if value is not None)
    if decision.kind is RangeKind.PARTIAL:
        delta = faults.content_range_start_delta
        claimed = content_range(decision.first + delta, decision.last + delta, total)
        headers.append(("Content-Range", claimed))
        return _Draft(206, headers, file.data, decision.first, decision.length)
    return _Draft(200, headers, file.data, 0, file.size)


def plan_response(
    request: RequestRecord, resource: Resource | None, selection: Selection, wants_close: bool
) -> ResponsePlan:
    """The response to ``request`` under the faults selected for it."""
    faults = selection.faults
    if request.method not in ("GET", "HEAD"):
        draft = _text(405, b"method not allowed\n", [("Allow", "GET, HEAD")])
    elif request.method == "HEAD" and faults.head_status is not None:
        allow = [("Allow", "GET")] if faults.head_status == 405 else []
        draft = _text(faults.head_status, ERROR_BODY, allow)
    elif faults.status is not None:
        draft = _text(faults.status, ERROR_BODY, [])
    elif resource is None:
        draft = _text(404, b"not found\n", [])
    elif isinstance(resource, Redirect):
        draft = _text(resource.status, b"moved\n", [("Location", resource.location)])
    else:
        draft = _file_response(request, resource, selection)
    return _finish(request, draft, faults, wants_close)


def _finish(
    request: RequestRecord, draft: _Draft, faults: Faults, wants_close: bool
) -> ResponsePlan:
    """Add Date, framing, Connection and the faults' extra fields."""
    framing, length = Framing.LENGTH, draft.length
    if draft.status < 200 or draft.status in (204, 304):
        framing, length = Framing.NONE, 0
    elif faults.chunked:
        framing = Framing.CHUNKED
    elif faults.no_content_length:
        framing = Framing.CLOSE
    fields = [("Date", http_date()), ("Server", SERVER_NAME), *draft.headers]
    if framing is Framing.LENGTH:
        fields.append(("Content-Length", str(length)))
    elif framing is Framing.CHUNKED:
        fields.append(("Transfer-Encoding", "chunked"))
    if faults.retry_after is not None:
        fields.append(("Retry-After", faults.retry_after))
    close_after = wants_close or framing is Framing.CLOSE
    if close_after:
        fields.append(("Connection", "close"))
    fields.extend(faults.extra_headers)
    return ResponsePlan(
        status=draft.status,
        headers=fields,
        body=draft.body,
        body_start=draft.start,
        body_length=length,
        send_body=request.method != "HEAD" and framing is not Framing.NONE,
        framing=framing,
        close_after=close_after,
        faults=faults,
    )


def simple_plan(
    status: int, body: bytes, extra: list[tuple[str, str]], send_body: bool = True
) -> ResponsePlan:
    """A plain response that closes the connection (bad requests, over the connection cap)."""
    fields = [
        ("Date", http_date()),
        ("Server", SERVER_NAME),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        *extra,
        ("Connection", "close"),
    ]
    return ResponsePlan(
        status, fields, body, 0, len(body), send_body, Framing.LENGTH, True, Faults()
    )
