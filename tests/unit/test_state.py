"""Resume state (strict decoding, atomic saves, no secrets) and the owner lock."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import itertools
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import segdl.disk.lock
from segdl.core.errors import LocalFileError, OutputLocked, StateInvalid
from segdl.core.models import ByteRange
from segdl.disk import kernel
from segdl.disk.lock import OwnerLock
from segdl.disk.paths import OutputPaths
from segdl.disk.resume import Checkpointer
from segdl.disk.state import (
    MAX_STATE_BYTES,
    DownloadState,
    decode_state,
    encode_state,
    load_state,
    merge_ranges,
    redact_url,
    remove_state,
    save_state,
    url_digest,
)
from segdl.disk.storage import PartFile

SECRET_URL = "https://user:secret@example.com/dir/file.iso?sig=TOKEN&x=1#frag"
SAMPLE = DownloadState(
    url_digest=url_digest(SECRET_URL),
    url_display=redact_url(SECRET_URL),
    final_url_display=redact_url("https://cdn.example.net/file.iso?X-Amz-Signature=TOKEN"),
    size_bytes=1000,
    etag='"abc"',
    last_modified="Tue, 01 Oct 2024 10:00:00 GMT",
    done=(ByteRange(0, 100), ByteRange(200, 300)),
    checksum="sha256=" + "ab" * 32,
    owner="host:boot:1:0123456789abcdef",
)


_DROP = object()


def _canonical(obj: object) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _forge(payload_changes: dict[str, Any] | None = None, **doc_changes: Any) -> bytes:
    """A state file with a correct checksum whose content is changed as given."""
    doc = json.loads(encode_state(SAMPLE))
    doc["payload"].update(payload_changes or {})
    doc["payload"] = {k: v for k, v in doc["payload"].items() if v is not _DROP}
    doc["sha256"] = hashlib.sha256(_canonical(doc["payload"]).encode()).hexdigest()
    doc.update(doc_changes)
    return (_canonical(doc) + "\n").encode()


def _why(data: bytes) -> str:
    with pytest.raises(StateInvalid) as caught:
        decode_state(data, "s")
    return caught.value.why


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _plant_lock(final: Path, **record: Any) -> Path:
    lock = OwnerLock(OutputPaths.of(final))  # only for our host, boot id and pid
    doc = {"host": lock.host, "boot_id": lock.boot_id, "pid": lock.pid, "token": "other"}
    doc |= {"created": time.time()} | record
    lock.path.write_text(json.dumps(doc))
    return lock.path


# --- URLs and ranges ------------------------------------------------------------------


def test_paths_sit_beside_the_output(tmp_path: Path) -> None:
    """State and lock are named after the output, in the same directory."""
    assert OutputPaths.of(tmp_path / "a.iso").state == tmp_path / "a.iso.segdl-state"
    assert OutputPaths.of(tmp_path / "a.iso").lock == tmp_path / "a.iso.segdl-lock"


def test_url_digest_matches_only_the_same_url() -> None:
    """The digest is the SHA-256 of the exact URL: same URL same digest, any change differs."""
    assert url_digest(SECRET_URL) == hashlib.sha256(SECRET_URL.encode()).hexdigest()
    assert url_digest(SECRET_URL) != url_digest(SECRET_URL.replace("TOKEN", "TOKEM"))


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (SECRET_URL, "https://example.com/dir/file.iso"),
        ("https://u@h:8443/p", "https://h:8443/p"),
        ("https://u:p@ss@h/a@b?c@d", "https://h/a@b"),
        ("http://h?q=1", "http://h"),
        ("http://h#f", "http://h"),
        ("https://[::1]:8/x/y", "https://[::1]:8/x/y"),
    ],
)
def test_redact_url_drops_userinfo_query_and_fragment(url: str, shown: str) -> None:
    """Display URLs keep scheme, host, port and path, never userinfo, query or fragment."""
    assert redact_url(url) == shown


@given(st.text())
def test_redact_url_is_idempotent_and_leaves_no_query(url: str) -> None:
    """Redacting twice changes nothing, and no '?' or '#' survives."""
    once = redact_url(url)
    assert redact_url(once) == once
    assert "?" not in once and "#" not in once


_ranges = st.lists(
    st.tuples(st.integers(0, 200), st.integers(0, 40)).map(lambda t: ByteRange(t[0], t[0] + t[1]))
)


@given(_ranges)
def test_merge_ranges_keeps_exactly_the_same_bytes(ranges: list[ByteRange]) -> None:
    """Merged ranges are sorted, non-empty, apart by at least one byte, and cover the same bytes."""
    merged = merge_ranges(ranges)
    assert all(r.length > 0 for r in merged)
    assert all(a.end < b.start for a, b in itertools.pairwise(merged))
    covered = {i for r in ranges for i in range(r.start, r.end)}
    assert {i for r in merged for i in range(r.start, r.end)} == covered


@given(_ranges, st.integers(0, 300))
def test_missing_is_the_exact_complement(ranges: list[ByteRange], size: int) -> None:
    """done and missing() partition [0, size): every byte in exactly one of them."""
    done = merge_ranges(ByteRange(r.start, min(r.end, size)) for r in ranges if r.start < size)
    state = dataclasses.replace(SAMPLE, size_bytes=size, done=done)
    gaps = state.missing()
    assert tuple(gaps) == merge_ranges(gaps)  # sorted, non-empty, separated
    marks = [0] * size
    for r in [*gaps, *done]:
        for i in range(r.start, r.end):
            marks[i] += 1
    assert marks == [1] * size
    assert state.done_bytes + sum(g.length for g in gaps) == size


# --- encoding -----------------------------------------------------------------------


_text = st.text(max_size=30)


@given(
    _ranges,
    st.integers(0, 300),
    _text.map(redact_url),
    _text.filter(lambda e: not e.startswith("W/")) | st.none(),
    _text | st.none(),
    _text,
)
def test_round_trip(
    ranges: list[ByteRange],
    extra: int,
    shown: str,
    etag: str | None,
    modified: str | None,
    owner: str,
) -> None:
    """decode(encode(s)) == s for every valid state, and encoding is deterministic."""
    done = merge_ranges(ranges)
    size = (done[-1].end if done else 0) + extra
    state = DownloadState(url_digest("u"), shown, shown, size, etag, modified, done, owner=owner)
    data = encode_state(state)
    assert decode_state(data) == state
    assert encode_state(dataclasses.replace(state)) == data


def test_complete_state_round_trips() -> None:
    """A complete state (every byte done) encodes and decodes, also for an empty file."""
    for size in (0, 5):
        done = (ByteRange(0, size),) if size else ()
        state = dataclasses.replace(SAMPLE, size_bytes=size, done=done, complete=True)
        assert decode_state(encode_state(state)) == state


def test_encoding_is_the_documented_format() -> None:
    """One JSON line: format, version 1, payload, and the SHA-256 of the canonical payload."""
    data = encode_state(SAMPLE)
    doc = json.loads(data)
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert (doc["format"], doc["version"]) == ("segdl-state", 1)
    assert doc["payload"]["done"] == [[0, 100], [200, 300]]
    assert doc["sha256"] == hashlib.sha256(_canonical(doc["payload"]).encode()).hexdigest()


def test_no_credential_is_ever_encoded() -> None:
    """Neither the password nor the signed-URL token reaches the state bytes."""
    data = encode_state(SAMPLE)
    assert b"secret" not in data and b"TOKEN" not in data and b"user" not in data


def test_unredacted_urls_cannot_be_put_in_a_state() -> None:
    """Constructing a state with a raw URL fails, so no caller can store a secret by mistake."""
    with pytest.raises(ValueError, match="redacted"):
        dataclasses.replace(SAMPLE, url_display=SECRET_URL)
    with pytest.raises(ValueError, match="weak"):
        dataclasses.replace(SAMPLE, etag='W/"abc"')


# --- strict decoding ----------------------------------------------------------------


def test_every_truncation_is_rejected() -> None:
    """Every proper prefix of a valid state file is StateInvalid (including the empty file)."""
    data = encode_state(SAMPLE)
    for n in range(len(data)):
        _why(data[:n])


def test_every_flipped_byte_is_rejected() -> None:
    """Changing any one byte anywhere in the file makes it StateInvalid."""
    data = encode_state(SAMPLE)
    for i in range(len(data)):
        for mask in (0x01, 0x20, 0x80):
            damaged = bytearray(data)
            damaged[i] ^= mask
            _why(bytes(damaged))


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[]", "not a segdl state file"),
        (b'{"format":"other","version":1}', "not a segdl state file"),
        (b'{"name":"package.json","version":"1.0"}', "not a segdl state file"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (_forge(version=2), "unsupported version 2"),
        (_forge(version=True), "unsupported version True"),
        (_forge(format="segdl-stat"), "not a segdl state file"),
        (_forge(extra=1), "unexpected top-level fields"),
        (_forge(sha256="0" * 64), "checksum mismatch"),
        (_forge(payload=[]), "payload is not an object"),
        (_forge({"size_bytes": True}), "size_bytes is not int"),
        (_forge({"size_bytes": 1000.0}), "size_bytes is not int"),
        (_forge({"size_bytes": "1000"}), "size_bytes is not int"),
        (_forge({"size_bytes": -1}), "out of range"),
        (_forge({"size_bytes": 2**63}), "out of range"),
        (_forge({"complete": 0}), "complete is not bool"),
        (_forge({"etag": 5}), "etag is not str or null"),
        (_forge({"etag": 'W/"x"'}), "weak ETag"),
        (_forge({"url_display": SECRET_URL}), "not redacted"),
        (_forge({"url_digest": "ABC"}), "not a SHA-256"),
        (_forge({"done": [[0, True]]}), "integer pairs"),
        (_forge({"done": [[0, 1, 2]]}), "integer pairs"),
        (_forge({"done": [[5, 2]]}), "invalid byte range"),
        (_forge({"done": [[0, 10], [5, 20]]}), "overlaps"),
        (_forge({"done": [[0, 10], [10, 20]]}), "touches"),
        (_forge({"done": [[50, 60], [0, 10]]}), "precedes"),
        (_forge({"done": [[3, 3]]}), "empty"),
        (_forge({"done": [[900, 1001]]}), "beyond size"),
        (_forge({"done": [[0, 999]], "complete": True}), "complete with bytes missing"),
        (_forge({"owner": None}), "owner is not str"),
        (_forge({"extra": 1}), "['extra'] missing or unexpected"),
        (_forge({"owner": _DROP}), "['owner'] missing or unexpected"),
        (encode_state(SAMPLE).replace(b'"format"', b' "format"'), "not in canonical form"),
        (encode_state(SAMPLE)[:-1], "not in canonical form"),
        (b'{"format":"segdl-state","format":"segdl-state"}', "duplicate key"),
    ],
)
def test_hostile_state_files_are_rejected(data: bytes, why: str) -> None:
    """Foreign, mistyped (bools as ints too), out-of-range or inconsistent files are refused."""
    assert why in _why(data)


def test_forged_sample_itself_is_valid() -> None:
    """The forging helper without changes yields the valid encoding (so the cases above test
    what they say)."""
    assert _forge() == encode_state(SAMPLE)


# --- files --------------------------------------------------------------------------


def test_save_then_load(tmp_path: Path) -> None:
    """A saved state loads back equal, private (0600), with no temporary file left."""
    path = OutputPaths.of(tmp_path / "out").state
    save_state(path, SAMPLE)
    save_state(path, dataclasses.replace(SAMPLE, done=(ByteRange(0, 1000),), complete=True))
    loaded = load_state(path)
    assert loaded is not None and loaded.complete
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_failed_save_keeps_the_old_state_and_leaves_no_temp(tmp_path: Path) -> None:
    """If the rename fails, the previous state is intact and the temporary file is gone."""
    path = OutputPaths.of(tmp_path / "out").state
    save_state(path, SAMPLE)
    before = path.read_bytes()

    def failing_replace(source: Path, target: Path) -> None:
        raise OSError(28, "No space left on device")

    newer = dataclasses.replace(SAMPLE, done=(ByteRange(0, 500),))
    with pytest.raises(LocalFileError, match="No space left"):
        save_state(path, newer, replace=failing_replace)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_missing_state_is_none_and_removal_is_idempotent(tmp_path: Path) -> None:
    """No state file means no state; removing twice is fine."""
    path = OutputPaths.of(tmp_path / "out").state
    assert load_state(path) is None
    save_state(path, SAMPLE)
    remove_state(path)
    remove_state(path)
    assert load_state(path) is None


def test_planted_symlink_is_not_followed(tmp_path: Path) -> None:
    """A symlink at the state path is StateInvalid, and its target is neither read nor changed."""
    target = tmp_path / "valuable"
    target.write_bytes(encode_state(SAMPLE))
    path = OutputPaths.of(tmp_path / "out").state
    path.symlink_to(target)
    with pytest.raises(StateInvalid, match="symlink"):
        load_state(path)
    assert target.read_bytes() == encode_state(SAMPLE)


def test_fifo_and_directory_are_not_regular_files(tmp_path: Path) -> None:
    """A FIFO (which must not block the reader) or a directory at the state path is refused."""
    fifo = OutputPaths.of(tmp_path / "a").state
    os.mkfifo(fifo)
    directory = OutputPaths.of(tmp_path / "b").state
    directory.mkdir()
    for path in (fifo, directory):
        with pytest.raises(StateInvalid, match="not a regular file"):
            load_state(path)


def test_huge_state_file_is_rejected(tmp_path: Path) -> None:
    """A state file over 1 MiB is refused without being decoded."""
    path = OutputPaths.of(tmp_path / "out").state
    path.write_bytes(b" " * (MAX_STATE_BYTES + 1))
    with pytest.raises(StateInvalid, match="larger than 1 MiB"):
        load_state(path)


def test_corrupt_file_on_disk_is_state_invalid(tmp_path: Path) -> None:
    """load_state reports a damaged file as StateInvalid naming the path."""
    path = OutputPaths.of(tmp_path / "out").state
    path.write_bytes(encode_state(SAMPLE)[:50])
    with pytest.raises(StateInvalid) as caught:
        load_state(path)
    assert caught.value.path == str(path)


# --- the owner lock -----------------------------------------------------------------


def test_acquire_writes_owner_record_and_release_removes_it(tmp_path: Path) -> None:
    """The lock file holds host, boot id, pid, token and time; release removes it, twice is ok."""
    lock = OwnerLock(OutputPaths.of(tmp_path / "out"))
    with lock:
        record = json.loads(lock.path.read_text())
        assert record["token"] == lock.token and record["pid"] == os.getpid()
        assert record["host"] == socket.gethostname() and isinstance(record["created"], float)
        assert lock.still_held()
    assert not lock.path.exists()
    lock.release()
    assert not lock.still_held()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_tokens_are_unique_and_name_the_owner(tmp_path: Path) -> None:
    """Each OwnerLock has its own token, carrying host, boot id and pid."""
    a, b = OwnerLock(OutputPaths.of(tmp_path / "out")), OwnerLock(OutputPaths.of(tmp_path / "out"))
    assert a.token != b.token
    assert a.token.startswith(f"{socket.gethostname()}:{a.boot_id}:{os.getpid()}:")
    assert len(a.token.rsplit(":", 1)[1]) == 16


def test_second_lock_in_same_process_is_refused(tmp_path: Path) -> None:
    """While one OwnerLock holds the output, another (even in this process) gets OutputLocked."""
    with OwnerLock(OutputPaths.of(tmp_path / "out")):
        with pytest.raises(OutputLocked) as caught:
            OwnerLock(OutputPaths.of(tmp_path / "out")).acquire()
        assert f"pid {os.getpid()} on this host" in caught.value.owner
        assert caught.value.path == str(tmp_path / "out")
    with OwnerLock(OutputPaths.of(tmp_path / "out")):
        pass


def test_stale_lock_of_dead_pid_is_taken_over(tmp_path: Path) -> None:
    """A lock from this host and boot whose pid is dead is replaced by ours."""
    _plant_lock(tmp_path / "out", pid=_dead_pid())
    with OwnerLock(OutputPaths.of(tmp_path / "out")) as lock:
        assert lock.still_held()


def test_lock_from_another_host_is_refused(tmp_path: Path) -> None:
    """Another host's lock is never judged stale; the message tells how to clear it by hand."""
    planted = _plant_lock(tmp_path / "out", host="elsewhere.example", pid=_dead_pid())
    with pytest.raises(OutputLocked) as caught:
        OwnerLock(OutputPaths.of(tmp_path / "out")).acquire()
    assert "host elsewhere.example" in caught.value.owner
    assert f"remove {planted} by hand" in caught.value.owner
    assert json.loads(planted.read_text())["token"] == "other"


def test_lock_from_before_a_reboot_is_taken_over(tmp_path: Path) -> None:
    """On this host, a lock with another boot id belongs to a process the reboot ended."""
    if not OwnerLock(OutputPaths.of(tmp_path / "out")).boot_id:
        pytest.skip("no boot id on this system")
    _plant_lock(tmp_path / "out", boot_id="00000000-0000-0000-0000-000000000000")
    with OwnerLock(OutputPaths.of(tmp_path / "out")) as lock:
        assert lock.still_held()


def test_unparseable_lock_is_taken_over_only_when_old(tmp_path: Path) -> None:
    """Garbage at the lock path is respected for 10 s (it may be mid-creation), then replaced."""
    path = OutputPaths.of(tmp_path / "out").lock
    path.write_bytes(b"")
    with pytest.raises(OutputLocked, match="no owner record"):
        OwnerLock(OutputPaths.of(tmp_path / "out")).acquire()
    old = time.time() - 60
    os.utime(path, (old, old))
    with OwnerLock(OutputPaths.of(tmp_path / "out")) as lock:
        assert lock.still_held()


def test_release_keeps_a_lock_that_is_no_longer_ours(tmp_path: Path) -> None:
    """If the lock file was replaced by another owner, release leaves it in place."""
    lock = OwnerLock(OutputPaths.of(tmp_path / "out"))
    lock.acquire()
    lock.path.unlink()
    planted = _plant_lock(tmp_path / "out")
    assert not lock.still_held()
    lock.release()
    assert json.loads(planted.read_text())["token"] == "other"


def test_wait_succeeds_when_the_holder_releases(tmp_path: Path) -> None:
    """acquire(wait_s=...) polls until the holder lets go, then takes the lock."""
    holder = OwnerLock(OutputPaths.of(tmp_path / "out"))
    holder.acquire()
    timer = threading.Timer(0.2, holder.release)
    timer.start()
    waiter = OwnerLock(OutputPaths.of(tmp_path / "out"))
    started = time.monotonic()
    waiter.acquire(wait_s=10, poll_s=0.02)
    timer.join()
    assert 0.15 < time.monotonic() - started < 5
    assert waiter.still_held() and not holder.still_held()
    waiter.release()


def test_wait_gives_up_at_the_deadline(tmp_path: Path) -> None:
    """With a fake clock, acquire sleeps in poll steps up to wait_s and then raises."""
    now = [100.0]
    sleeps: list[float] = []

    def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    with OwnerLock(OutputPaths.of(tmp_path / "out")), pytest.raises(OutputLocked):
        OwnerLock(OutputPaths.of(tmp_path / "out")).acquire(
            wait_s=1.0, poll_s=0.3, sleep=fake_sleep, clock=lambda: now[0]
        )
    assert sleeps == pytest.approx([0.3, 0.3, 0.3, 0.1])


def test_symlink_at_lock_path_is_not_followed(tmp_path: Path) -> None:
    """A symlink planted at the lock path is refused; its target is never written."""
    target = tmp_path / "victim"
    target.write_bytes(b"precious")
    OutputPaths.of(tmp_path / "out").lock.symlink_to(target)
    with pytest.raises(OutputLocked, match="symlink"):
        OwnerLock(OutputPaths.of(tmp_path / "out")).acquire()
    assert target.read_bytes() == b"precious"
    assert OutputPaths.of(tmp_path / "out").lock.is_symlink()


def test_racing_takers_of_a_stale_lock_yield_one_owner(tmp_path: Path) -> None:
    """Many lockers taking over one stale lock at once: exactly one ends up holding it."""
    _plant_lock(tmp_path / "out", pid=_dead_pid())
    locks = [OwnerLock(OutputPaths.of(tmp_path / "out")) for _ in range(16)]
    barrier = threading.Barrier(len(locks))
    won: list[OwnerLock] = []

    def take(lock: OwnerLock) -> None:
        barrier.wait()
        try:
            lock.acquire()
        except OutputLocked:
            return
        won.append(lock)

    threads = [threading.Thread(target=take, args=(lock,)) for lock in locks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1 and won[0].still_held()
    assert sum(lock.still_held() for lock in locks) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.segdl-lock"]


def test_lock_works_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where link() is refused (exFAT, some SMB), locking, take-over and release still work."""

    def no_link(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    _plant_lock(tmp_path / "out", pid=_dead_pid())
    with OwnerLock(OutputPaths.of(tmp_path / "out")) as lock:
        assert lock.still_held()
        with pytest.raises(OutputLocked):
            OwnerLock(OutputPaths.of(tmp_path / "out")).acquire()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# --- the checkpointer ---------------------------------------------------------------


def test_checkpointer_starts_its_thread_only_when_a_save_is_due(tmp_path: Path) -> None:
    """Entering starts nothing; ticks start the saving thread once a save is due (256 KiB
    written, or a second passed with bytes to save), never within 0.1 s of the start, and
    that thread then saves what is written."""
    final = tmp_path / "out"
    now = [100.0]
    written: list[ByteRange] = []
    template = dataclasses.replace(SAMPLE, size_bytes=8 << 20, done=())
    with OwnerLock(OutputPaths.of(final)) as lock:
        part = PartFile(OutputPaths.of(final), overwrite=False)
        try:
            part.allocate(8 << 20)

            def checkpoint_threads() -> int:
                return sum(t.name == "segdl-checkpoint" for t in threading.enumerate())

            with Checkpointer(
                OutputPaths.of(final), part, template, lambda: list(written), lock, lambda: now[0]
            ) as saver:
                saver.tick()
                written.append(ByteRange(0, 1 << 20))  # a MiB, but 0.05 s in: not yet due
                now[0] += 0.05
                saver.tick()
                assert checkpoint_threads() == 0 and not saver.saved
                now[0] += 0.1  # 0.15 s in: due
                saver.tick()
                assert checkpoint_threads() == 1
                deadline = time.monotonic() + 5.0
                while not saver.saved and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert saver.saved
                state = load_state(OutputPaths.of(final).state)
                assert state is not None and state.done == (ByteRange(0, 1 << 20),)
            assert checkpoint_threads() == 0
        finally:
            part.close()


def test_the_saving_thread_starts_writeback_between_saves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between saves the saving thread asks the kernel to start writing the .part back
    (sync_file_range, no wait), so the sync before the rename has little left to do."""
    calls: list[tuple[int, ...]] = []

    def sync_file_range(*args: int) -> int:
        calls.append(args)
        return 0

    monkeypatch.setitem(kernel._libc_functions, "sync_file_range", sync_file_range)
    final = tmp_path / "out"
    now = [100.0]
    written = [ByteRange(0, 2 << 20)]
    template = dataclasses.replace(SAMPLE, size_bytes=8 << 20, done=())
    with OwnerLock(OutputPaths.of(final)) as lock:
        part = PartFile(OutputPaths.of(final), overwrite=False)
        try:
            part.allocate(8 << 20)
            with Checkpointer(
                OutputPaths.of(final), part, template, lambda: list(written), lock, lambda: now[0]
            ) as saver:
                now[0] += 0.5
                saver.tick()  # 2 MiB written: due, the thread starts
                deadline = time.monotonic() + 5.0
                while not calls and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert saver.saved
                assert calls and calls[0] == (part.fileno, 0, 0, 2)  # SYNC_FILE_RANGE_WRITE
        finally:
            part.close()


def test_a_lock_our_link_created_is_not_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """link() succeeding is proof of ownership (only its failures can be wrong, on NFS): the
    lock is held without a read; a name already taken is still read to say who holds it."""
    reads: list[Path] = []
    real_read = segdl.disk.lock._read_lock

    def counting_read(path: Path) -> object:
        reads.append(path)
        return real_read(path)

    monkeypatch.setattr(segdl.disk.lock, "_read_lock", counting_read)
    with OwnerLock(OutputPaths.of(tmp_path / "out")) as lock:
        assert reads == []
        assert lock.still_held()
        with pytest.raises(OutputLocked):
            OwnerLock(OutputPaths.of(tmp_path / "out")).acquire()
        assert lock.path in reads
    assert not lock.path.exists()


def test_the_first_save_needs_no_more_than_later_ones(tmp_path: Path) -> None:
    """256 KiB (this file's threshold) 0.1 s in make the first save due; 128 KiB do not until
    a second has passed."""
    final = tmp_path / "out"
    now = [100.0]
    written: list[ByteRange] = []
    template = dataclasses.replace(SAMPLE, size_bytes=8 << 20, done=())
    with OwnerLock(OutputPaths.of(final)) as lock:
        part = PartFile(OutputPaths.of(final), overwrite=False)
        try:
            saver = Checkpointer(
                OutputPaths.of(final), part, template, lambda: list(written), lock, lambda: now[0]
            )
            written.append(ByteRange(0, 1 << 17))
            now[0] += 0.5
            assert not saver._due()
            written[-1] = ByteRange(0, 1 << 18)
            assert saver._due()
            written[-1] = ByteRange(0, 1 << 17)
            now[0] += 0.5
            assert saver._due()
        finally:
            part.close()
