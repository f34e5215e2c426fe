"""The lean loop's start: the first requests go out before the rest of the window is
prepared, a new connection pipelines two requests before its first answer (one after a
broken connection, RFC 9112 §9.3.2), and all of ``depth`` once the origin has shown it
keeps alive. Against a raw-socket server of the test's own, on loopback, that counts the
requests it has read before it answers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from segdl.net.lean import LeanLoop
from segdl.net.leanconn import Answer, LeanRequest

_BODY = b"0123456789"
_ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(_BODY)) + _BODY


class _Server:
    """Each connection: read what comes for ``settle_s`` (or until ``hold`` requests are
    in), note how many requests were in, then answer every request read and keep reading.
    ``drop_first``: the first connection is closed unanswered instead."""

    def __init__(self, *, hold: int, settle_s: float = 0.3, drop_first: bool = False) -> None:
        self.hold, self.settle_s, self.drop_first = hold, settle_s, drop_first
        self.first_reads: list[int] = []  # per connection, in order: requests in before answering
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._accepted += 1
            threading.Thread(target=self._serve, args=(conn, self._accepted), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        with conn:
            data = b""
            deadline = time.monotonic() + self.settle_s
            while data.count(b"\r\n\r\n") < self.hold and time.monotonic() < deadline:
                conn.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    break
                if not chunk:
                    return
                data += chunk
            self.first_reads.append(data.count(b"\r\n\r\n"))
            if self.drop_first and number == 1:
                return
            answered = 0
            conn.settimeout(5)
            while True:
                owed = data.count(b"\r\n\r\n") - answered
                conn.sendall(_ANSWER * owed)
                answered += owed
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                data += chunk

    def close(self) -> None:
        self._listener.close()


def _requests(port: int, count: int) -> list[LeanRequest]:
    wire = b"GET /f HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port
    return [LeanRequest("127.0.0.1", port, wire, n) for n in range(count)]


def _loop(*, slots: int, depth: int) -> LeanLoop:
    return LeanLoop(slots=slots, per_host=slots, depth=depth, timeout_s=5.0, max_body_bytes=1024)


def _run(loop: LeanLoop, source: Iterator[LeanRequest | None], window: int) -> list[int]:
    answered: list[int] = []
    deferred: list[str] = []

    def deliver(request: LeanRequest, answer: Answer) -> None:
        assert answer.body == _BODY and isinstance(request.token, int)
        answered.append(request.token)

    loop.run(source, deliver, lambda _, why: deferred.append(why), threading.Event(), window)
    assert deferred == []
    return answered


@pytest.mark.parametrize("depth", [1, 16])
def test_a_new_connection_pipelines_two_before_its_first_answer_then_depth(depth: int) -> None:
    """One slot, eight files: the server reads for a while before it answers. It sees two
    requests on the new connection (one without pipelining), then the rest follow."""
    server = _Server(hold=16)
    try:
        loop = _loop(slots=1, depth=depth)
        answered = _run(loop, iter(_requests(server.port, 8)), window=64)
    finally:
        server.close()
    assert sorted(answered) == list(range(8))
    assert server.first_reads == [min(2, depth)]


def test_after_a_broken_connection_the_retry_is_not_pipelined_at_once() -> None:
    """The first connection is dropped with two requests owed: the origin is not pipelined
    to again (one request at a time), and no file is lost."""
    server = _Server(hold=16, drop_first=True)
    try:
        answered = _run(_loop(slots=1, depth=16), iter(_requests(server.port, 4)), window=64)
    finally:
        server.close()
    assert sorted(answered) == list(range(4))
    assert server.first_reads[0] == 2 and server.first_reads[1] == 1


def test_a_connection_opened_once_the_origin_kept_alive_takes_its_whole_depth() -> None:
    """After an answer showed the origin keeps alive, a new connection to it takes all of
    ``depth`` at once; an origin not yet heard two; after a break, or not pipelined, one."""
    server = _Server(hold=1, settle_s=0.05)
    origin = ("127.0.0.1", server.port, False)
    try:
        loop = _loop(slots=2, depth=4)
        assert loop._depth(origin) == 2
        assert sorted(_run(loop, iter(_requests(server.port, 3)), window=64)) == [0, 1, 2]
        assert loop._depth(origin) == 4 and loop._depth(("127.0.0.1", 1, False)) == 2
        loop._kept_alive[origin] = False  # as after a connection that broke
        assert loop._depth(origin) == 1
        loop.shallow.add(("127.0.0.1", 1, False))
        assert loop._depth(("127.0.0.1", 1, False)) == 1
        assert _loop(slots=2, depth=1)._depth(origin) == 1
    finally:
        server.close()


def test_the_first_requests_go_out_before_the_rest_of_the_window_is_prepared() -> None:
    """Four slots and a window of 256: by the time the loop asks for the fifth request, it
    has already opened a connection for each of the first four."""
    server = _Server(hold=1, settle_s=0.05)
    opened_before_fifth: list[int] = []
    try:
        loop = _loop(slots=4, depth=16)
        requests = _requests(server.port, 40)

        def source() -> Iterator[LeanRequest | None]:
            for n, request in enumerate(requests):
                if n == 4:
                    opened_before_fifth.append(len(loop._conns))
                yield request

        answered = _run(loop, source(), window=256)
    finally:
        server.close()
    assert sorted(answered) == list(range(40))
    assert opened_before_fifth == [4]


@pytest.mark.parametrize("how", ["refused", "dropped"])
def test_a_server_no_connection_reaches_gets_every_request_given_back_at_once(how: str) -> None:
    """Nothing listens, or the listener's queue is full (the kernel drops the attempts): once
    the loop's last connection there fails, every request for it goes back to the caller
    (whose full path retries, and marks the server down), not each after its own attempts
    on new connections."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    filler = None
    if how == "refused":
        listener.close()
    else:
        listener.listen(0)
        filler = socket.create_connection(("127.0.0.1", port))  # the queue's one place
    try:
        loop = LeanLoop(slots=2, per_host=2, depth=1, timeout_s=0.3, max_body_bytes=1024,
                        max_attempts=5)  # fmt: skip
        deferred: list[str] = []
        connects: list[int] = []
        real_open = loop._open

        def counted(*args: object) -> object:
            connects.append(1)
            return real_open(*args)  # type: ignore[arg-type]

        loop._open = counted  # type: ignore[method-assign]
        loop.run(iter(_requests(port, 10)), lambda *_: None, lambda _, why: deferred.append(why),
                 threading.Event(), 64)  # fmt: skip
    finally:
        listener.close()
        if filler is not None:
            filler.close()
    assert len(deferred) == 10
    assert len(connects) <= 2  # the slots' first connections, none after (not 5 attempts each)
