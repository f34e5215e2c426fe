"""The engine against the fault server: fallbacks, response checks, short bodies, stealing."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import segdl
from segdl.core.progress import NoticeKind
from tests.events import Recorder
from tests.server import FaultServer
from tests.server.faults import Faults
from tests.server.records import RequestRecord

KIB = 1024
MIB = 1024 * KIB
MakeData = Callable[..., bytes]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def not_first(record: RequestRecord) -> bool:
    """Every request but the first contact (``Range: bytes=0-``)."""
    return record.range != "bytes=0-"


@pytest.mark.parametrize("size", [0, 1, MIB + 1, 5 * MIB + 12345])
@pytest.mark.parametrize("connections", [1, 4, 8])
def test_honest_server_gives_identical_file(
    fault_server: FaultServer,
    make_data: MakeData,
    tmp_path: Path,
    body_path: str,
    size: int,
    connections: int,
) -> None:
    """Any size, any connection count: the file is byte-identical and only at its name."""
    data = make_data(size)
    fault_server.add_file("/f.bin", data)
    out = tmp_path / "f.bin"
    result = segdl.download(
        fault_server.url("/f.bin"), out, connections=connections, min_split_bytes=256 * KIB
    )
    assert out.read_bytes() == data
    assert result.size_bytes == size
    assert not (tmp_path / "f.bin.part").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_first_contact_is_one_ranged_get_and_no_head(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """The first request is GET Range: bytes=0- with identity encoding; HEAD is never sent."""
    data = make_data(4 * MIB)
    fault_server.add_file("/f.bin", data)
    result = segdl.download(fault_server.url("/f.bin"), tmp_path / "o", connections=4)
    first = fault_server.requests[0]
    assert (first.method, first.range) == ("GET", "bytes=0-")
    assert first.header("Accept-Encoding") == "identity"
    assert first.header("User-Agent") == f"segdl/{segdl.__version__}"
    assert all(r.method == "GET" for r in fault_server.requests)
    ranges = sorted(r.range or "" for r in fault_server.requests[1:])
    assert ranges == ["bytes=1048576-2097151", "bytes=2097152-3145727", "bytes=3145728-4194303"]
    assert result.ranged and 2 <= result.connections_used <= 4
    # The first connection kept streaming its first MiB; the others sent each byte once.
    later = [r for r in fault_server.requests if not_first(r)]
    assert sum(r.body_bytes_sent for r in later) == 3 * MIB


def test_server_refusing_head_does_not_matter(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """A server answering HEAD with 405 is downloaded normally (HEAD is never needed)."""
    data = make_data(3 * MIB)
    fault_server.add_file("/f.bin", data)
    fault_server.set_faults("/f.bin", Faults(head_status=405))
    result = segdl.download(fault_server.url("/f.bin"), tmp_path / "o", connections=3)
    assert (tmp_path / "o").read_bytes() == data and result.ranged


def test_200_to_first_range_means_one_stream(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """A server that ignores Range gets exactly one plain stream, and a correct file."""
    data = make_data(3 * MIB + 7)
    fault_server.add_file("/f.bin", data)
    fault_server.set_faults("/f.bin", Faults(ignore_range=True))
    events = Recorder()
    result = segdl.download(
        fault_server.url("/f.bin"), tmp_path / "o", connections=8, progress=events
    )
    assert (tmp_path / "o").read_bytes() == data
    assert not result.ranged and result.connections_used == 1
    assert len(fault_server.requests) == 1
    assert events.notices(NoticeKind.FALLBACK_SINGLE_STREAM)


def test_200_to_a_later_range_switches_to_one_stream(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """A 200 answering a later range is never written at an offset: one stream instead."""
    data = make_data(6 * MIB)
    fault_server.add_file("/f.bin", data)
    fault_server.set_faults("/f.bin", Faults(ignore_range=True, when=not_first))
    result = segdl.download(fault_server.url("/f.bin"), tmp_path / "o", connections=6)
    assert (tmp_path / "o").read_bytes() == data
    assert not result.ranged
    plain = [r for r in fault_server.requests if r.range is None]
    assert len(plain) == 1 and plain[0].status == 200


@pytest.mark.parametrize(
    "faults",
    [Faults(no_content_length=True), Faults(chunked=True)],
    ids=["no-content-length", "chunked"],
)
def test_unknown_length_bodies(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path, faults: Faults
) -> None:
    """Bodies without a length (close-delimited or chunked) still give the exact file."""
    data = make_data(2 * MIB + 3)
    fault_server.add_file("/f.bin", data)
    fault_server.set_faults("/f.bin", Faults(ignore_range=True, **_fields(faults)))
    result = segdl.download(fault_server.url("/f.bin"), tmp_path / "o", connections=4)
    assert (tmp_path / "o").read_bytes() == data
    assert result.size_bytes == len(data) and not result.ranged


@pytest.mark.parametrize(
    "faults",
    [
        Faults(content_range_start_delta=1, when=not_first),
        Faults(content_range_start_delta=-1, when=not_first),
        Faults(content_range_total=6 * MIB + 1, when=not_first),
        Faults(extra_headers=(("Content-Encoding", "gzip"),), when=not_first),
    ],
    ids=["start+1", "start-1", "wrong-total", "content-encoding"],
)
def test_unbelievable_range_responses_are_never_written(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path, faults: Faults
) -> None:
    """A 206 for other bytes, another size or encoded bytes is refused; one stream instead."""
    data = make_data(6 * MIB)
    fault_server.add_file("/f.bin", data)
    fault_server.set_faults("/f.bin", faults)
    events = Recorder()
    result = segdl.download(
        fault_server.url("/f.bin"), tmp_path / "o", connections=6, progress=events
    )
    assert (tmp_path / "o").read_bytes() == data
    assert not result.ranged
    assert events.notices(NoticeKind.FALLBACK_SINGLE_STREAM)


@pytest.mark.parametrize(
    "faults",
    [
        Faults(content_range_start_delta=5),
        Faults(extra_headers=(("Content-Encoding", "gzip"),), when=lambda r: r.range is not None),
    ],
    ids=["first-contact-wrong-start", "first-contact-encoded"],
)
def test_unbelievable_first_contact_falls_back_to_plain_get(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path, faults: Faults
) -> None:
    """If even the first 206 cannot be believed, a plain GET without Range is used."""
    data = make_data(2 * MIB)
    fault_server.add_file("/f.bin", data)
    fault_server.set_faults("/f.bin", faults)
    result = segdl.download(fault_server.url("/f.bin"), tmp_path / "o", connections=4)
    assert (tmp_path / "o").read_bytes() == data and not result.ranged
    assert [r.range for r in fault_server.requests] == ["bytes=0-", None]


def test_changed_etag_starts_over_and_never_mixes_versions(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """A range answered for another ETag drops everything fetched and starts over."""
    data = make_data(4 * MIB)
    fault_server.add_file("/f.bin", data)
    fault_server.set_faults("/f.bin", Faults(change_etag_after=1))
    events = Recorder()
    segdl.download(fault_server.url("/f.bin"), tmp_path / "o", connections=4, progress=events)
    assert (tmp_path / "o").read_bytes() == data
    assert events.notices(NoticeKind.REMOTE_CHANGED)
    assert [r.range for r in fault_server.requests].count("bytes=0-") == 2


def test_a_file_that_keeps_changing_fails_cleanly(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """If every attempt sees another version, the download stops with RemoteChanged."""
    fault_server.add_file("/f.bin", make_data(4 * MIB))
    swaps = iter(range(1000))

    def new_version(record: RequestRecord) -> bool:
        if record.range != "bytes=0-":
            fault_server.replace_file("/f.bin", make_data(4 * MIB, seed=next(swaps)))
        return False

    fault_server.set_faults("/f.bin", Faults(when=new_version))
    with pytest.raises(segdl.RemoteChanged):
        segdl.download(fault_server.url("/f.bin"), tmp_path / "o", connections=4)
    assert not (tmp_path / "o").exists()


def test_short_bodies_return_their_remainder_to_the_plan(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path, body_path: str
) -> None:
    """Truncated and reset ranges are resumed from the last byte received, not refetched."""
    data = make_data(4 * MIB)
    fault_server.add_file("/f.bin", data)
    fault_server.set_faults("/f.bin", Faults(truncate_after=300_000, times=3, when=not_first))
    result = segdl.download(fault_server.url("/f.bin"), tmp_path / "o", connections=4)
    assert (tmp_path / "o").read_bytes() == data and result.ranged
    resumed = [r.range for r in fault_server.requests if r.range and "-" in r.range]
    starts = {int(r.split("=")[1].split("-")[0]) for r in resumed if r}
    assert any(start % MIB == 300_000 for start in starts), resumed
    # The bounded ranges (all but the open-ended first contact) sent every byte once.
    later = [r for r in fault_server.requests if not_first(r)]
    assert sum(r.body_bytes_sent for r in later) == len(data) - MIB


def test_connection_resets_are_survived(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path, body_path: str
) -> None:
    """Resets in the middle of bodies cost a retry, not the download."""
    data = make_data(4 * MIB)
    fault_server.add_file("/f.bin", data)
    fault_server.set_faults("/f.bin", Faults(reset_after=100_000, times=4, when=not_first))
    segdl.download(fault_server.url("/f.bin"), tmp_path / "o", connections=4)
    assert (tmp_path / "o").read_bytes() == data


def test_error_status_fails_fast_without_output(fault_server: FaultServer, tmp_path: Path) -> None:
    """A 404 raises HTTPStatusError after one request; no file, no .part is left."""
    with pytest.raises(segdl.HTTPStatusError) as info:
        segdl.download(fault_server.url("/missing"), tmp_path / "o")
    assert info.value.status == 404
    deadline = time.monotonic() + 2  # the server logs a response once it has fully ended
    while not fault_server.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(fault_server.requests) == 1
    assert list(tmp_path.iterdir()) == []


def test_redirect_target_is_used_for_every_range(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """After a redirect, ranges go to the final URL; the name comes from the original URL."""
    data = make_data(3 * MIB)
    fault_server.add_file("/real/data.bin", data)
    fault_server.add_redirect("/get/latest.bin", "/real/data.bin")
    segdl.download(fault_server.url("/get/latest.bin"), directory=tmp_path, connections=3)
    assert (tmp_path / "latest.bin").read_bytes() == data
    assert [r.path for r in fault_server.requests].count("/get/latest.bin") == 1


def test_redirect_loop_is_an_error(fault_server: FaultServer, tmp_path: Path) -> None:
    """A redirect loop ends with TooManyRedirects, not a hang."""
    fault_server.add_redirect("/a", "/b")
    fault_server.add_redirect("/b", "/a")
    with pytest.raises(segdl.TooManyRedirects):
        segdl.download(fault_server.url("/a"), tmp_path / "o")


def test_existing_output_is_never_clobbered(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """Without overwrite, an existing file is refused before any request; with it, replaced."""
    fault_server.add_file("/f.bin", make_data(1000))
    out = tmp_path / "f.bin"
    out.write_bytes(b"precious")
    with pytest.raises(segdl.OutputExists):
        segdl.download(fault_server.url("/f.bin"), out)
    assert out.read_bytes() == b"precious"
    assert fault_server.requests == []
    segdl.download(fault_server.url("/f.bin"), out, overwrite=True)
    assert out.read_bytes() == make_data(1000)


def test_cancel_stops_promptly_and_keeps_nothing_at_the_name(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path, body_path: str
) -> None:
    """Setting the cancel event stops every connection within a second, even stalled ones."""
    fault_server.add_file("/f.bin", make_data(8 * MIB))
    fault_server.set_faults("/f.bin", Faults(stall_after=1000, stall_s=30))
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(segdl.Cancelled):
        segdl.download(fault_server.url("/f.bin"), tmp_path / "o", connections=4, cancel=cancel)
    assert time.monotonic() - started < 2.0
    assert not (tmp_path / "o").exists()


def test_one_slow_connection_is_stolen_from(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """With one connection of 8 at 1/20 speed, work stealing ends within 1.3x the ideal.

    Static splitting would take 20x longer for that connection's share.
    """
    rate = 3 * MIB
    slow_rate = rate / 20
    # Large enough against the 1 MiB minimum split that the end game's granularity
    # (pieces of 1-2 MiB) is a small part of the whole.
    size = 48 * MIB
    data = make_data(size)
    fault_server.add_file("/f.bin", data)
    # Connection 1 is the second one opened: one of the 8 initial ranges.
    fault_server.set_faults(
        "/f.bin",
        Faults(
            throttle_bytes_per_s=rate,
            throttle_for_connection=lambda cid: slow_rate if cid == 1 else None,
        ),
    )
    result = segdl.download(fault_server.url("/f.bin"), tmp_path / "o", connections=8)
    ideal_s = size / (7 * rate + slow_rate)
    assert (tmp_path / "o").read_bytes() == data
    assert result.elapsed_s <= 1.3 * ideal_s, (result.elapsed_s, ideal_s)


def _fields(faults: Faults) -> dict[str, object]:
    return {"no_content_length": faults.no_content_length, "chunked": faults.chunked}
