"""The daemon's pure parts: path confinement, aria2 options, answer structs, the store."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from segdl.core.options import DEFAULTS, DownloadOptions, IfExists
from segdl.daemon import ariaopts, render
from segdl.daemon.confine import confined_dir, confined_output
from segdl.daemon.errors import RpcError
from segdl.daemon.lists import Lists
from segdl.daemon.methods import _window
from segdl.daemon.model import Item, Live, Status, is_gid, new_gid, web_uri
from segdl.daemon.store import Batch, Store, row_of
from segdl.run.ratelimit import TokenBucket

MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("directory", "out"),
    [
        ("/etc", None),
        ("..", None),
        ("a/../..", None),
        (None, "../../x"),
        (None, "/etc/passwd"),
        (None, "a/../../x"),
        ("", None),
        (None, ""),
    ],
)
def test_paths_leaving_the_root_are_refused(
    tmp_path: Path, directory: str | None, out: str | None
) -> None:
    """Absolute paths elsewhere, '..' anywhere and empty names never make a path."""
    with pytest.raises(RpcError):
        place = confined_dir(tmp_path, directory)
        if out is not None:
            confined_output(tmp_path, place, out)


def test_symlinks_out_of_the_root_are_not_followed(tmp_path: Path) -> None:
    """A directory symlink pointing out, or a symlink at the output name, is refused."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "out").symlink_to(outside)
    (root / "f").symlink_to(root / "g")
    with pytest.raises(RpcError, match="outside"):
        confined_dir(root, "out/sub")
    with pytest.raises(RpcError, match="outside"):
        confined_output(root, root, "out/x")
    with pytest.raises(RpcError, match="symlink"):
        confined_output(root, root, "f")
    assert confined_output(root, confined_dir(root, "sub"), "a/b.bin") == root / "sub/a/b.bin"
    assert confined_dir(root, str(root / "x")) == root / "x"


def test_aria2_options_map_to_download_options() -> None:
    """split/max-connection-per-server, header, limits, overwrite rules and tries map as aria2
    means them; a value that is not a number, or one segdl refuses, fails the call."""
    defaults = ariaopts.defaults("/r", 5, 8, "0")
    options = ariaopts.download_options(
        {
            "split": "16",
            "header": ["X-A: 1", "User-Agent: ua"],
            "max-download-limit": "500K",
            "allow-overwrite": "true",
            "max-tries": "0",
            "checksum": "sha-256=ab",
        },
        defaults,
    )
    assert options.connections == 16
    assert options.headers == {"X-A": "1"} and options.user_agent == "ua"
    assert options.limit_rate_bytes_per_s == 500 * 1024
    assert options.if_exists is IfExists.OVERWRITE
    assert options.retries == 1_000_000 and options.checksum == "sha-256=ab"
    plain = ariaopts.download_options({}, defaults)
    assert plain.connections == 8 and plain.if_exists is IfExists.RENAME
    assert plain.limit_rate_bytes_per_s is None
    refusing = ariaopts.download_options({"auto-file-renaming": "false"}, defaults)
    assert refusing.if_exists is IfExists.ERROR
    base = DownloadOptions(max_connections_per_host=3, preconnect=False)
    on_base = ariaopts.download_options({"split": "2"}, defaults, base)
    assert on_base.max_connections_per_host == 3 and not on_base.preconnect
    for bad in (
        {"split": "x"},
        {"max-download-limit": "fast"},
        {"header": "nocolon"},
        {"allow-overwrite": "yes"},
        {"header": "Range: bytes=0-"},
    ):
        with pytest.raises(RpcError):
            ariaopts.download_options(bad, defaults)
    assert ariaopts.normalized({"split": 4, "pause": True}) == {"split": "4", "pause": "true"}
    with pytest.raises(RpcError):
        ariaopts.normalized({"split": {"a": 1}})


def test_a_fresh_daemon_s_defaults_are_the_options_defaults() -> None:
    """The global options a fresh daemon reports give a download the library's defaults,
    but for aria2's own: a taken output name is renamed."""
    plain = ariaopts.download_options({}, ariaopts.defaults("/r", 5, DEFAULTS.connections, "0"))
    assert plain == replace(
        DEFAULTS, if_exists=IfExists.RENAME, min_split_bytes=plain.min_split_bytes
    )
    assert plain.min_split_bytes == DEFAULTS.min_split_bytes


def test_bitfield_counts_only_whole_pieces() -> None:
    """aria2's bitfield: highest bit first, a piece set only when all of it is done, the
    short last piece set when the file's end is done."""
    assert render.bitfield(3 * MIB, [(0, 3 * MIB)]) == "e0"
    assert render.bitfield(3 * MIB, [(0, MIB + 5)]) == "80"
    assert render.bitfield(3 * MIB, [(MIB - 1, 3 * MIB)]) == "60"
    assert render.bitfield(9 * MIB + 1, [(8 * MIB, 9 * MIB + 1)]) == "00c0"
    assert render.bitfield(MIB // 2, []) == "00"


def _item(gid: str, **fields: object) -> Item:
    base: dict[str, object] = {
        "uris": ["http://h/f"],
        "options": {"out": "f"},
        "status": Status.WAITING,
        "position": 1.0,
        "directory": "/r",
    }
    base.update(fields)
    return Item(gid=gid, **base)  # type: ignore[arg-type]


def test_status_struct_has_aria2_keys_and_string_values() -> None:
    """tellStatus: strings everywhere, errorCode only once stopped, keys filtered on ask."""
    item = _item("0123456789abcdef", live=Live(done_bytes=5, size_bytes=10))
    struct = render.status(item)
    assert "errorCode" not in struct and struct["bitfield"] == "00"
    assert all(isinstance(v, str) for k, v in struct.items() if k != "files")
    assert struct["files"][0]["path"] == "/r/f"
    assert render.status(item, ["gid", "status"]) == {"gid": item.gid, "status": "waiting"}
    item.status = Status.COMPLETE
    assert render.status(item)["errorCode"] == "0"
    assert render.status(item)["completedLength"] == "10"


def test_waiting_windows_follow_aria2_offsets() -> None:
    """tellWaiting's offset/num, negative offsets counting back from the end."""
    gids = ["a", "b", "c"]
    assert _window(gids, 0, 1) == ["a"]
    assert _window(gids, 1, 2) == ["b", "c"]
    assert _window(gids, -1, 2) == ["c", "b"]
    assert _window(gids, -5, 2) == [] and _window(gids, 0, 0) == []


def test_gids_are_16_hex_digits_and_unique() -> None:
    """New GIDs never collide with taken ones and have aria2's form."""
    taken: set[str] = set()
    for _ in range(1000):
        gid = new_gid(taken)
        assert is_gid(gid) and gid not in taken
        taken.add(gid)


def test_store_round_trips_items_history_and_settings(tmp_path: Path) -> None:
    """What was committed is what loads: items with status, position, options; history; and
    deleting an item deletes its history."""
    store = Store(tmp_path / "q.sqlite3")
    one = _item("1" * 16, options={"out": "x", "header": ["A: b"]}, live=Live(done_bytes=7))
    two = _item("2" * 16, status=Status.PAUSED, position=0.5)
    store.write(
        Batch(
            puts=[row_of(one), row_of(two)],
            notes=[(one.gid, 1.0, "k", "m")],
            settings={"global": "{}"},
        )
    )
    items, notes, settings = store.load()
    assert [i.gid for i in items] == [two.gid, one.gid]
    assert items[1].options == {"out": "x", "header": ["A: b"]}
    assert items[1].live.done_bytes == 7 and items[0].status is Status.PAUSED
    assert notes == [(one.gid, 1.0, "k", "m")] and settings == {"global": "{}"}
    store.write(Batch(deletes=[one.gid]))
    items, notes, _ = store.load()
    assert [i.gid for i in items] == [two.gid] and notes == []
    assert (tmp_path / "q.sqlite3").stat().st_mode & 0o777 == 0o600
    store.close()


def test_a_bucket_takes_a_new_rate_live() -> None:
    """set_rate changes the wait a consumer pays from then on."""
    now = [0.0]
    slept: list[float] = []
    bucket = TokenBucket(1000, burst_s=0.0, clock=lambda: now[0], sleep=slept.append)
    bucket.consume(1000)
    bucket.set_rate(4000)
    now[0] = 1.0
    bucket.consume(4000)
    assert slept == [1.0, 1.0]
    with pytest.raises(ValueError):
        bucket.set_rate(0)


def test_spliced_answers_are_the_json_they_stand_for() -> None:
    """Cached pieces spliced into an answer give the same JSON as encoding it whole, and a
    string that looks like a placeholder is left alone."""
    import json

    from segdl.daemon.rpc import Raw, _Splicer, encode

    splicer = _Splicer()
    pieces = [{"gid": "a", "n": ["1", {"x": 'q"'}]}, {"gid": "b"}]
    answer = {"result": [Raw(encode(p)) for p in pieces] + ["segdl-raw-0"]}
    assert json.loads(splicer.dumps(answer)) == {"result": [*pieces, "segdl-raw-0"]}
    assert splicer.dumps({"plain": 1}) == '{"plain":1}'


@pytest.mark.parametrize(
    ("current", "pos", "how", "target"),
    [
        (3, 0, "POS_SET", 0),
        (3, -1, "POS_CUR", 2),
        (3, 1, "POS_CUR", 4),
        (0, -5, "POS_CUR", 0),
        (2, 0, "POS_END", 9),
        (2, -2, "POS_END", 7),
        (2, 40, "POS_SET", 9),
        (2, 5, "POS_END", 9),
    ],
)
def test_change_position_targets_follow_aria2(
    current: int, pos: int, how: str, target: int
) -> None:
    """changePosition relative to the start, the item itself or the end, clamped to the queue."""
    from segdl.daemon.order import target_index

    assert target_index(current, 10, pos, how) == target


def test_insert_positions_and_the_order_after_a_restart() -> None:
    """An insert at either end needs no renumbering, one in between does; after a restart the
    running downloads come first, then the queue, each by position; stopped ones are not in it."""
    from segdl.daemon.order import position_between, restored

    assert position_between(None, None) == 0.0
    assert position_between(4.0, None) == 5.0 and position_between(None, -2.0) == -3.0
    assert position_between(1.0, 2.0) is None
    with pytest.raises(RpcError):
        from segdl.daemon.order import target_index

        target_index(0, 3, 1, "SIDEWAYS")
    items = [
        _item("a" * 16, status=Status.WAITING, position=0.0),
        _item("b" * 16, status=Status.ACTIVE, position=5.0),
        _item("c" * 16, status=Status.PAUSED, position=-1.0),
        _item("d" * 16, status=Status.COMPLETE, position=-9.0),
        _item("e" * 16, status=Status.ACTIVE, position=2.0),
    ]
    assert [i.gid[0] for i in restored(items)] == ["e", "b", "c", "a"]


def test_the_journal_hands_over_each_change_once() -> None:
    """take() returns what changed since the last take (rows as they are then), and a
    deleted item is not also written."""
    from segdl.daemon.journal import Journal

    journal = Journal()
    item = _item("f" * 16)
    journal.changed(item)
    item.position = 7.0
    journal.note(item.gid, 1.0, "k", "m")
    journal.notify("aria2.onDownloadStart", item.gid)
    batch, notifications = journal.take()
    assert [row[2] for row in batch.puts] == [7.0] and batch.notes == [(item.gid, 1.0, "k", "m")]
    assert notifications == [("aria2.onDownloadStart", item.gid)]
    assert not journal.take()[0]
    journal.changed(item)
    journal.deleted(item.gid)
    batch, _ = journal.take()
    assert batch.puts == [] and batch.deletes == [item.gid]


def _queued(gid: str, status: Status = Status.WAITING, position: float = 0.0) -> Item:
    return Item(gid=gid, uris=["http://h/f"], options={}, status=status, position=position,
                directory="/r")  # fmt: skip


def test_lists_keep_the_queue_order_and_each_item_in_one_list() -> None:
    """Inserting at the front, moving, starting and stopping keep each item in exactly one
    list, the queue ordered by position, and stopped ones numbered in the order they stopped."""
    lists = Lists()
    a, b, c = (_queued(g.ljust(16, "0")) for g in ("a", "b", "c"))
    for item in (a, b):
        assert lists.add(item, len(lists.queue)) == []
    lists.add(c, 0)
    assert lists.queue == [c.gid, a.gid, b.gid]
    assert sorted(lists.queue, key=lambda g: lists.items[g].position) == lists.queue
    target, _ = lists.move(b, 0, "POS_SET")
    assert target == 0 and lists.queue == [b.gid, c.gid, a.gid]
    assert lists.next_waiting(running={b.gid}) is c
    lists.activate(c)
    lists.stop(c, Status.COMPLETE)
    lists.stop(a, Status.ERROR)
    assert lists.queue == [b.gid] and lists.active == [] and lists.stopped == [c.gid, a.gid]
    assert (c.stopped_seq, a.stopped_seq) == (1, 2)
    assert lists.find("a") is a
    with pytest.raises(RpcError, match="not in the waiting queue"):
        lists.move(a, 0, "POS_SET")
    lists.forget(a)
    assert a.gid not in lists.items and lists.stopped == [c.gid]


def test_restored_lists_put_running_items_first_and_renumber() -> None:
    """After a restart the ones that were running lead the queue, then waiting and paused
    ones in their order; a stopped one keeps its stop number for the next to follow."""
    lists = Lists()
    waiting = _queued("1" * 16, position=5.0)
    paused = _queued("2" * 16, Status.PAUSED, position=7.0)
    running = _queued("3" * 16, Status.ACTIVE, position=9.0)
    done = _queued("4" * 16, Status.COMPLETE)
    done.stopped_seq = 4
    renumbered = lists.restore([waiting, paused, running, done])
    assert lists.queue == [running.gid, waiting.gid, paused.gid]
    assert {i.gid for i in renumbered} == {running.gid, waiting.gid, paused.gid}
    assert running.status is Status.WAITING and paused.status is Status.PAUSED
    lists.stop(waiting, Status.REMOVED)
    assert waiting.stopped_seq == 5 and lists.stopped == [done.gid, waiting.gid]


def test_a_download_takes_only_http_uris_that_parse() -> None:
    """addUri/changeUri take what download() takes: http(s), parsed, no scheme guessed."""
    assert web_uri("http://h/f") and web_uri("HTTPS://h/f")
    for uri in ("ftp://h/f", "h/f", "http://[::1/f", 7, None):
        assert not web_uri(uri)
