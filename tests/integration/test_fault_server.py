"""Self-tests of the fault server, through http.client and raw sockets only (never segdl)."""

from __future__ import annotations

import hashlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.server import Faults, FaultServer, RequestRecord
from tests.server.ranges import RangeKind, decide_range

MakeData = Callable[..., bytes]
Response = tuple[int, http.client.HTTPMessage, bytes]
REPO_ROOT = Path(__file__).resolve().parents[2]


def get(
    server: FaultServer, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> Response:
    """One request on a fresh connection: status, header fields, body."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.msg, response.read()
    finally:
        conn.close()


def raw_exchange(server: FaultServer, request: bytes, timeout_s: float = 5.0) -> bytes:
    """Send raw bytes, read until the server closes; return everything received."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout_s) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def split_response(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    """Status line, lower-cased header fields (last wins) and body of a raw response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.lower()] = value.strip()
    return lines[0], fields, body


@pytest.fixture
def data(make_data: MakeData) -> bytes:
    return make_data(100_000, seed=1)


@pytest.fixture
def server(fault_server: FaultServer, data: bytes) -> FaultServer:
    fault_server.add_file("/f.bin", data)
    return fault_server


# -- honest behaviour ------------------------------------------------------------------------


def test_full_get_carries_body_and_validators(server: FaultServer, data: bytes) -> None:
    """A plain GET is 200 with the whole body, exact length, strong ETag, dates and ranges."""
    status, fields, body = get(server, "/f.bin")
    assert status == 200
    assert body == data
    assert fields["Content-Length"] == str(len(data))
    assert fields["Accept-Ranges"] == "bytes"
    assert fields["ETag"] == '"' + hashlib.sha1(data).hexdigest()[:16] + '"'
    assert fields["Last-Modified"].endswith(" GMT")
    assert fields["Date"].endswith(" GMT")


def test_head_has_get_fields_and_no_body(server: FaultServer, data: bytes) -> None:
    """HEAD answers 200 with GET's length and validators but sends no body."""
    status, fields, body = get(server, "/f.bin", method="HEAD")
    assert (status, body) == (200, b"")
    assert fields["Content-Length"] == str(len(data))
    assert fields["ETag"] == get(server, "/f.bin")[1]["ETag"]


@pytest.mark.parametrize(
    ("range_value", "first", "last"),
    [
        ("bytes=0-9", 0, 9),
        ("bytes=99990-", 99990, 99999),
        ("bytes=-5", 99995, 99999),
        ("bytes=99998-200000", 99998, 99999),
        ("bytes=-200000", 0, 99999),
        ("BYTES=7-7", 7, 7),
        ("bytes=3-4, ", 3, 4),
    ],
)
def test_single_range_is_206(
    server: FaultServer, data: bytes, range_value: str, first: int, last: int
) -> None:
    """Each single-range form is answered 206 with the exact bytes and Content-Range."""
    status, fields, body = get(server, "/f.bin", {"Range": range_value})
    assert status == 206
    assert fields["Content-Range"] == f"bytes {first}-{last}/{len(data)}"
    assert fields["Content-Length"] == str(last - first + 1)
    assert body == data[first : last + 1]


@pytest.mark.parametrize("range_value", ["bytes=100000-", "bytes=200000-300000", "bytes=-0"])
def test_unsatisfiable_range_is_416(server: FaultServer, range_value: str) -> None:
    """A range that starts past the end (or an empty suffix) is 416 with bytes */size."""
    status, fields, body = get(server, "/f.bin", {"Range": range_value})
    assert status == 416
    assert fields["Content-Range"] == "bytes */100000"
    assert body == b""


@pytest.mark.parametrize("range_value", ["bytes=0-0", "bytes=0-", "bytes=-1"])
def test_every_range_of_an_empty_file_is_416(fault_server: FaultServer, range_value: str) -> None:
    """A 0-byte file answers every byte range 416 with bytes */0."""
    fault_server.add_file("/empty", b"")
    status, fields, _ = get(fault_server, "/empty", {"Range": range_value})
    assert status == 416
    assert fields["Content-Range"] == "bytes */0"


@pytest.mark.parametrize(
    "range_value",
    ["bytes=0-1,5-6", "bytes=5-1", "bytes=abc", "items=0-1", "bytes 0-1", "bytes=+1-2", "bytes=1"],
)
def test_multi_range_or_bad_syntax_is_ignored(
    server: FaultServer, data: bytes, range_value: str
) -> None:
    """Several ranges or a syntax error make the server ignore Range: 200 with the full body."""
    status, fields, body = get(server, "/f.bin", {"Range": range_value})
    assert (status, body) == (200, data)
    assert "Content-Range" not in fields


def test_if_range_controls_the_range(server: FaultServer, data: bytes) -> None:
    """If-Range with the current strong ETag or Last-Modified keeps the range; others get 200."""
    _, fields, _ = get(server, "/f.bin", method="HEAD")
    matching = [fields["ETag"], fields["Last-Modified"]]
    failing = ['"other"', "W/" + fields["ETag"], "Sun, 06 Nov 1994 08:49:37 GMT"]
    for validator in matching:
        status, _, body = get(server, "/f.bin", {"Range": "bytes=0-9", "If-Range": validator})
        assert (status, body) == (206, data[:10])
    for validator in failing:
        status, _, body = get(server, "/f.bin", {"Range": "bytes=0-9", "If-Range": validator})
        assert (status, body) == (200, data)


def test_keep_alive_reuses_one_connection(server: FaultServer, data: bytes) -> None:
    """Sequential requests on one HTTP/1.1 connection are served on one connection_id."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    for first in (0, 10):
        conn.request("GET", "/f.bin", headers={"Range": f"bytes={first}-{first + 9}"})
        assert conn.getresponse().read() == data[first : first + 10]
    conn.close()
    assert [r.connection_id for r in server.requests] == [0, 0]


@pytest.mark.parametrize(
    "request_line", [b"GET /f.bin HTTP/1.1\r\nConnection: close", b"GET /f.bin HTTP/1.0"]
)
def test_close_requests_end_the_connection(
    server: FaultServer, data: bytes, request_line: bytes
) -> None:
    """Connection: close and HTTP/1.0 get one response, then the server closes."""
    raw = raw_exchange(server, request_line + b"\r\nHost: x\r\n\r\n")
    status_line, fields, body = split_response(raw)
    assert status_line == "HTTP/1.1 200 OK"
    assert fields["connection"] == "close"
    assert body == data


def test_unknown_path_404_and_other_methods_405(server: FaultServer) -> None:
    """An unknown path is 404; a method other than GET and HEAD is 405 with Allow."""
    assert get(server, "/missing")[0] == 404
    status, fields, _ = get(server, "/f.bin", method="POST")
    assert status == 405
    assert fields["Allow"] == "GET, HEAD"


def test_garbage_request_is_400(server: FaultServer) -> None:
    """An unparsable request line gets 400 and the connection is closed."""
    status_line, _, _ = split_response(raw_exchange(server, b"NOT A REQUEST LINE\r\n\r\n"))
    assert status_line.startswith("HTTP/1.1 400 ")


def test_validator_options_of_add_file(fault_server: FaultServer) -> None:
    """etag/last_modified None omit the fields; an explicit weak ETag is sent and never matches."""
    fault_server.add_file("/g", b"abc", etag=None, last_modified=None, content_type="text/plain")
    fault_server.add_file("/w", b"abc", etag='W/"weak"')
    _, fields, _ = get(fault_server, "/g")
    assert "ETag" not in fields and "Last-Modified" not in fields
    assert fields["Content-Type"] == "text/plain"
    status, fields, _ = get(fault_server, "/w", {"Range": "bytes=0-0", "If-Range": 'W/"weak"'})
    assert (status, fields["ETag"]) == (200, 'W/"weak"')


def test_replace_file_changes_content_and_validators(server: FaultServer, data: bytes) -> None:
    """replace_file serves new bytes, a new ETag and a later Last-Modified; old If-Range fails."""
    _, old, _ = get(server, "/f.bin", method="HEAD")
    server.replace_file("/f.bin", data[::-1])
    status, new, body = get(server, "/f.bin", {"Range": "bytes=0-9", "If-Range": old["ETag"]})
    assert (status, body) == (200, data[::-1])
    assert new["ETag"] != old["ETag"]
    assert new["Last-Modified"] != old["Last-Modified"]


@pytest.mark.parametrize("location", ["/f.bin", "ABSOLUTE"])
def test_redirect(server: FaultServer, location: str) -> None:
    """add_redirect answers with its status and the Location exactly as given."""
    target = server.url("/f.bin") if location == "ABSOLUTE" else location
    server.add_redirect("/old", target, status=301)
    status, fields, _ = get(server, "/old")
    assert (status, fields["Location"]) == (301, target)


def test_request_log_records_what_was_received(server: FaultServer) -> None:
    """The log holds method, path, raw target, headers in order, connection, status, bytes."""
    get(server, "/f.bin?x=1", {"Range": "bytes=0-99", "X-Test": "a"})
    get(server, "/nope", method="HEAD")
    first, second = server.requests
    assert isinstance(first, RequestRecord)
    assert (first.method, first.path, first.target) == ("GET", "/f.bin", "/f.bin?x=1")
    assert [name for name, _ in first.headers][-2:] == ["Range", "X-Test"]
    assert first.header("x-test") == "a" and first.range == "bytes=0-99"
    assert (first.status, first.body_bytes_sent, first.connection_id) == (206, 100, 0)
    assert (second.method, second.status, second.body_bytes_sent) == ("HEAD", 404, 0)
    assert second.connection_id == 1 and second.range is None
    assert first.started_s <= second.started_s <= time.monotonic()


def test_bytes_sent_counts_bodies_and_clear_log_resets(server: FaultServer, data: bytes) -> None:
    """bytes_sent is the sum of body bytes written; clear_log empties the log and the count."""
    get(server, "/f.bin")
    get(server, "/f.bin", {"Range": "bytes=0-999"})
    get(server, "/f.bin", method="HEAD")
    assert server.bytes_sent == len(data) + 1000
    assert sum(r.body_bytes_sent for r in server.requests) == server.bytes_sent
    server.clear_log()
    assert (server.requests, server.bytes_sent) == ([], 0)


def test_large_file_is_fast(fault_server: FaultServer, make_data: MakeData) -> None:
    """64 MiB go out intact well above 100 MB/s on loopback (≈2 GB/s is typical)."""
    big = make_data(64 * 1024 * 1024)
    fault_server.add_file("/big", big)
    started = time.perf_counter()
    raw = raw_exchange(fault_server, b"GET /big HTTP/1.1\r\nConnection: close\r\n\r\n")
    elapsed = time.perf_counter() - started
    assert hashlib.sha256(split_response(raw)[2]).digest() == hashlib.sha256(big).digest()
    assert len(big) / elapsed > 100e6


@given(size=st.integers(1, 10_000), first=st.integers(0, 20_000), length=st.integers(1, 20_000))
def test_range_decision_stays_inside_the_file(size: int, first: int, length: int) -> None:
    """Every satisfiable int-range maps to bytes inside the file, starting where asked."""
    decision = decide_range(f"bytes={first}-{first + length - 1}", size)
    if first >= size:
        assert decision.kind is RangeKind.UNSATISFIABLE
    else:
        assert decision.kind is RangeKind.PARTIAL
        assert decision.first == first
        assert decision.last == min(first + length, size) - 1


# -- faults ----------------------------------------------------------------------------------


def test_ignore_range_answers_200_full(server: FaultServer, data: bytes) -> None:
    """ignore_range answers a ranged GET with 200 and the whole body."""
    server.set_faults("/f.bin", Faults(ignore_range=True))
    status, fields, body = get(server, "/f.bin", {"Range": "bytes=10-19"})
    assert (status, body) == (200, data)
    assert "Content-Range" not in fields


def test_content_range_lies_about_start_and_total(server: FaultServer, data: bytes) -> None:
    """content_range_start_delta and _total change only the header, never the body."""
    server.set_faults("/f.bin", Faults(content_range_start_delta=1, content_range_total=5))
    status, fields, body = get(server, "/f.bin", {"Range": "bytes=10-19"})
    assert (status, body) == (206, data[10:20])
    assert fields["Content-Range"] == "bytes 11-20/5"


def test_extra_headers_are_added(server: FaultServer) -> None:
    """extra_headers are appended to the response, even a duplicate Content-Range."""
    extra = (("Content-Encoding", "gzip"), ("Content-Range", "bytes 0-0/1"))
    server.set_faults("/f.bin", Faults(extra_headers=extra))
    _, fields, _ = get(server, "/f.bin", {"Range": "bytes=0-9"})
    assert fields["Content-Encoding"] == "gzip"
    assert fields.get_all("Content-Range") == ["bytes 0-9/100000", "bytes 0-0/1"]


def test_change_etag_after(server: FaultServer, data: bytes) -> None:
    """After N answered requests the validators change while the body stays the same."""
    server.set_faults("/f.bin", Faults(change_etag_after=1))
    _, before, body_before = get(server, "/f.bin")
    status, after, body_after = get(server, "/f.bin", {"Range": "bytes=0-9"})
    assert after["ETag"] != before["ETag"]
    assert after["Last-Modified"] != before["Last-Modified"]
    assert (body_before, status, body_after) == (data, 206, data[:10])
    status, _, _ = get(server, "/f.bin", {"Range": "bytes=0-9", "If-Range": before["ETag"]})
    assert status == 200


def test_truncate_closes_cleanly_after_n_bytes(server: FaultServer) -> None:
    """truncate_after sends the full header, N body bytes, then a clean FIN."""
    server.set_faults("/f.bin", Faults(truncate_after=1000))
    _, fields, body = split_response(raw_exchange(server, b"GET /f.bin HTTP/1.1\r\n\r\n"))
    assert (fields["content-length"], len(body)) == ("100000", 1000)
    with pytest.raises(http.client.IncompleteRead):
        get(server, "/f.bin")
    assert [r.body_bytes_sent for r in server.requests] == [1000, 1000]


def test_reset_after_gives_connection_reset(server: FaultServer, data: bytes) -> None:
    """reset_after sends N body bytes, then RST: the client sees ConnectionResetError."""
    server.set_faults("/f.bin", Faults(reset_after=1000))
    received = bytearray()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /f.bin HTTP/1.1\r\n\r\n")
        with pytest.raises(ConnectionResetError):
            while chunk := sock.recv(65536):
                received += chunk
    assert len(received.partition(b"\r\n\r\n")[2]) <= 1000
    assert server.requests[0].body_bytes_sent == 1000


def test_stall_holds_the_body_and_stop_is_prompt(server: FaultServer) -> None:
    """stall_after sends N bytes then nothing; stop() still returns within about a second."""
    server.set_faults("/f.bin", Faults(stall_after=500, stall_s=30))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /f.bin HTTP/1.1\r\n\r\n")
        received = b""
        while len(received.partition(b"\r\n\r\n")[2]) < 500:
            received += sock.recv(65536)
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(65536)
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 1.5
    assert server.requests[0].body_bytes_sent == 500


def test_stall_then_rest_of_body(server: FaultServer, data: bytes) -> None:
    """After a short stall the rest of the body follows."""
    server.set_faults("/f.bin", Faults(stall_after=10, stall_s=0.2))
    started = time.monotonic()
    assert get(server, "/f.bin")[2] == data
    assert time.monotonic() - started >= 0.2


def test_no_content_length_ends_with_close(server: FaultServer, data: bytes) -> None:
    """no_content_length answers 200 (Range ignored) without a length, ended by closing."""
    server.set_faults("/f.bin", Faults(no_content_length=True))
    request = b"GET /f.bin HTTP/1.1\r\nRange: bytes=0-9\r\n\r\n"
    status_line, fields, body = split_response(raw_exchange(server, request))
    assert status_line == "HTTP/1.1 200 OK"
    assert "content-length" not in fields
    assert body == data


def test_chunked_body(server: FaultServer, data: bytes) -> None:
    """chunked answers 200 (Range ignored) with Transfer-Encoding: chunked and the full body."""
    server.set_faults("/f.bin", Faults(chunked=True))
    status, fields, body = get(server, "/f.bin", {"Range": "bytes=0-9"})
    assert (status, fields["Transfer-Encoding"], body) == (200, "chunked", data)
    assert "Content-Length" not in fields


def test_status_with_retry_after(server: FaultServer) -> None:
    """status and retry_after replace the answer with an error page and Retry-After."""
    server.set_faults("/f.bin", Faults(status=503, retry_after="2"))
    status, fields, body = get(server, "/f.bin", {"Range": "bytes=0-9"})
    assert (status, fields["Retry-After"], body) == (503, "2", b"error page\n")


def test_head_status_affects_only_head(server: FaultServer, data: bytes) -> None:
    """head_status changes HEAD's status; GET stays honest."""
    server.set_faults("/f.bin", Faults(head_status=405))
    assert get(server, "/f.bin", method="HEAD")[0] == 405
    assert get(server, "/f.bin")[:3:2] == (200, data)


def _read_for(server: FaultServer, seconds: float) -> int:
    """Body bytes received in the given time on one GET."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /f.bin HTTP/1.1\r\n\r\n")
        deadline = time.monotonic() + seconds
        received = b""
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                received += sock.recv(65536)
            except TimeoutError:
                break
    return len(received.partition(b"\r\n\r\n")[2])


def test_throttle_rate_over_one_second(server: FaultServer) -> None:
    """throttle_bytes_per_s paces the body to within about 10% over a second."""
    server.set_faults("/f.bin", Faults(throttle_bytes_per_s=50_000))
    assert 45_000 <= _read_for(server, 1.0) <= 55_000


def test_throttle_for_connection(server: FaultServer, data: bytes) -> None:
    """throttle_for_connection sets each connection's rate; None falls back to the plain rate."""

    def rate(connection_id: int) -> float | None:
        return 100_000 if connection_id == 0 else None

    server.set_faults("/f.bin", Faults(throttle_for_connection=rate, throttle_bytes_per_s=1e9))
    timings = []
    for _ in range(2):
        started = time.monotonic()
        assert get(server, "/f.bin")[2] == data
        timings.append(time.monotonic() - started)
    assert timings[0] >= 0.8
    assert timings[1] < 0.3


def test_times_limits_the_faults(server: FaultServer) -> None:
    """times=N applies the faults to the first N requests only."""
    server.set_faults("/f.bin", Faults(status=503, times=2))
    assert [get(server, "/f.bin")[0] for _ in range(3)] == [503, 503, 200]


def test_when_selects_requests_and_times_counts_matches(server: FaultServer) -> None:
    """when picks the requests the faults apply to; times counts only those."""
    faults = Faults(status=500, times=1, when=lambda request: request.range is not None)
    server.set_faults("/f.bin", faults)
    ranged = {"Range": "bytes=0-0"}
    statuses = [get(server, "/f.bin")[0], get(server, "/f.bin", ranged)[0]]
    statuses += [get(server, "/f.bin", ranged)[0]]
    assert statuses == [200, 500, 206]


def test_faults_can_be_reset_to_honest(server: FaultServer) -> None:
    """set_faults(path, Faults()) makes the path honest again."""
    server.set_faults("/f.bin", Faults(status=500))
    server.set_faults("/f.bin", Faults())
    assert get(server, "/f.bin")[0] == 200


# -- connection cap --------------------------------------------------------------------------


def _open_kept_connections(server: FaultServer, count: int) -> list[http.client.HTTPConnection]:
    """``count`` keep-alive connections, each having completed one request."""
    conns = []
    for _ in range(count):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("HEAD", "/f.bin")
        assert conn.getresponse().status == 200
        conns.append(conn)
    return conns


def test_over_cap_close(server: FaultServer) -> None:
    """Over max_connections a connection is closed without an answer; peak stays at the cap."""
    server.max_connections = 2
    kept = _open_kept_connections(server, 2)
    with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
        get(server, "/f.bin")
    assert (server.peak_connections, server.rejected_connections) == (2, 1)
    kept[0].close()  # a freed slot is usable at once
    assert get(server, "/f.bin")[0] == 200
    for conn in kept:
        conn.close()
    assert server.peak_connections == 2


def test_over_cap_503(server: FaultServer) -> None:
    """With over_cap="503" a connection over the cap gets 503 + Retry-After: 1, then a close."""
    server.max_connections = 1
    server.over_cap = "503"
    kept = _open_kept_connections(server, 1)
    status_line, fields, _ = split_response(raw_exchange(server, b"GET /f.bin HTTP/1.1\r\n\r\n"))
    assert status_line.startswith("HTTP/1.1 503 ")
    assert (fields["retry-after"], fields["connection"]) == ("1", "close")
    assert [(r.connection_id, r.status) for r in server.requests] == [(0, 200), (1, 503)]
    assert server.peak_connections == 1
    kept[0].close()


def test_peak_connections_counts_simultaneous(server: FaultServer) -> None:
    """peak_connections is the most connections open at once, without a cap."""
    kept = _open_kept_connections(server, 3)
    assert (server.peak_connections, server.open_connections) == (3, 3)
    for conn in kept:
        conn.close()


def test_stop_is_prompt_mid_throttle(fault_server: FaultServer, data: bytes) -> None:
    """stop() returns within about a second while a throttled body is being sent."""
    fault_server.add_file("/f.bin", data)
    fault_server.set_faults("/f.bin", Faults(throttle_bytes_per_s=1000))
    errors: list[BaseException] = []

    def slow_get() -> None:
        try:
            get(fault_server, "/f.bin")
        except BaseException as error:  # the client sees the connection end early
            errors.append(error)

    client = threading.Thread(target=slow_get)
    client.start()
    time.sleep(0.2)
    started = time.monotonic()
    fault_server.stop()
    assert time.monotonic() - started < 1.5
    client.join(5)
    assert errors and not client.is_alive()


# -- standalone entry point ------------------------------------------------------------------


def test_main_serves_a_file_and_stops_on_sigterm() -> None:
    """python -m tests.server prints url and sha256, serves that file, and exits on SIGTERM."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.server", "--size", "1M", "--seed", "3"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()
        digest = proc.stdout.readline().split()
        assert (url[0], digest[0]) == ("url", "sha256")
        port = int(url[1].rsplit(":", 1)[1].split("/")[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/file.bin")
        body = conn.getresponse().read()
        conn.close()
        assert len(body) == 1024 * 1024
        assert hashlib.sha256(body).hexdigest() == digest[1]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
