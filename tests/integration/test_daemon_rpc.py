"""segdl daemon over JSON-RPC: the queue survives kill -9, the scheduler keeps its limits, and
every unsafe request is refused with a JSON-RPC error."""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.daemon import SECRET, Daemon, RpcFailed
from tests.server import Faults, FaultServer


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    with Daemon(tmp_path / "root", tmp_path / "state", "-j", "2") as running:
        yield running


def _refused(answer: dict[str, object], text: str) -> None:
    error = answer.get("error")
    assert isinstance(error, dict), answer
    assert text in str(error.get("message")), error


def _nothing_outside(tmp_path: Path, root: Path) -> None:
    """Only the root, the state directory and the test's own files exist under tmp_path."""
    names = {p.name for p in tmp_path.iterdir()}
    assert names <= {"root", "state", "outside"}, names


def test_calls_without_the_token_or_with_a_wrong_one_are_refused(daemon: Daemon) -> None:
    """No token, a wrong token, a token in only one call of a multicall: each refused."""
    _refused(daemon.raw("aria2.getGlobalStat", token=False), "Unauthorized")
    body = {"jsonrpc": "2.0", "id": 1, "method": "aria2.getGlobalStat", "params": ["token:no"]}
    _refused(daemon.post(json.dumps(body).encode())[1], "Unauthorized")
    calls = [
        {"methodName": "aria2.addUri", "params": [["http://127.0.0.1:9/x"]]},
        {"methodName": "aria2.getGlobalStat", "params": [f"token:{SECRET}"]},
    ]
    answer = daemon.raw("system.multicall", calls, token=False)["result"]
    assert answer[0] == {"code": 1, "message": "Unauthorized"}
    assert answer[1][0]["numWaiting"] == "0"  # the unauthorized addUri added nothing
    methods = daemon.raw("system.listMethods", token=False)["result"]
    assert "aria2.addUri" in methods and "system.multicall" in methods


def test_foreign_origin_host_and_oversized_requests_are_refused(daemon: Daemon) -> None:
    """A page elsewhere (Origin), a rebound name (Host) and a 3 MB body: JSON-RPC errors."""
    body = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "aria2.getGlobalStat", "params": [f"token:{SECRET}"]}
    ).encode()
    status, answer = daemon.post(body, {"Origin": "http://evil.example"})
    assert status == 403
    _refused(answer, "Origin")
    status, answer = daemon.post(body, {"Host": f"evil.example:{daemon.port}"})
    assert status == 403
    _refused(answer, "Host")
    status, answer = daemon.post(b" " * (3 << 20))
    assert status == 413
    _refused(answer, "larger than the limit")
    status, answer = daemon.post(body, {"Origin": f"http://127.0.0.1:{daemon.port}"})
    assert status == 200 and "result" in answer
    request = urllib.request.Request(daemon.url, data=body)
    with urllib.request.urlopen(request) as answered:
        assert "Access-Control-Allow-Origin" not in answered.headers


def test_websocket_from_another_origin_is_refused(daemon: Daemon) -> None:
    """A WebSocket handshake carrying a foreign Origin never gets to speak JSON-RPC."""
    import asyncio

    import aiohttp

    async def attempt(origin: str) -> int:
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(daemon.url, headers={"Origin": origin}) as ws:
                    await ws.send_str(json.dumps({"id": 1, "method": "system.listMethods"}))
                    reply = await ws.receive_json(timeout=5)
                    return 101 if "result" in reply else 0
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status

    assert asyncio.run(attempt("http://evil.example")) == 403
    assert asyncio.run(attempt(f"http://127.0.0.1:{daemon.port}")) == 101


def test_dir_and_out_cannot_leave_the_root(daemon: Daemon, tmp_path: Path) -> None:
    """dir=/etc, dir=.., out=../../x, out absolute, and a symlink in the root pointing out:
    each refused, and no file appears outside the root."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (daemon.root / "link").symlink_to(outside)
    url = "http://127.0.0.1:9/f"
    for options, text in [
        ({"dir": "/etc"}, "outside the download root"),
        ({"dir": ".."}, "'..'"),
        ({"out": "../../x"}, "'..'"),
        ({"out": "/tmp/x"}, "relative"),
        ({"dir": "link"}, "outside the download root"),
        ({"out": "link/x"}, "outside the download root"),
        ({"dir": str(daemon.root / "link")}, "outside the download root"),
    ]:
        _refused(daemon.raw("aria2.addUri", [url], options), text)
    (daemon.root / "planted").symlink_to(outside / "victim")
    _refused(daemon.raw("aria2.addUri", [url], {"out": "planted"}), "symlink")
    gid = daemon.call("aria2.addUri", [url], {"pause": "true"})
    _refused(daemon.raw("aria2.changeOption", gid, {"dir": "/etc"}), "outside")
    assert list(outside.iterdir()) == []
    assert daemon.call("aria2.getGlobalStat")["numWaiting"] == "1"
    _nothing_outside(tmp_path, daemon.root)


def test_existing_files_are_not_overwritten_unless_allowed(
    daemon: Daemon, fault_server: FaultServer, make_data: Callable[..., bytes]
) -> None:
    """An existing out gets a renamed sibling (aria2's auto-file-renaming); with
    auto-file-renaming=false it fails; allow-overwrite=true replaces it."""
    data = make_data(200_000)
    fault_server.add_file("/f.bin", data)
    (daemon.root / "f.bin").write_bytes(b"mine")
    url = fault_server.url("/f.bin")
    first = daemon.call("aria2.addUri", [url], {"out": "f.bin"})
    assert daemon.wait_status(first, {"complete", "error"})["status"] == "complete"
    assert (daemon.root / "f.bin").read_bytes() == b"mine"
    assert (daemon.root / "f.1.bin").read_bytes() == data
    refused = daemon.call("aria2.addUri", [url], {"out": "f.bin", "auto-file-renaming": "false"})
    status = daemon.wait_status(refused, {"complete", "error"})
    assert status["status"] == "error" and status["errorCode"] == "13"
    assert (daemon.root / "f.bin").read_bytes() == b"mine"
    allowed = daemon.call("aria2.addUri", [url], {"out": "f.bin", "allow-overwrite": "true"})
    assert daemon.wait_status(allowed, {"complete", "error"})["status"] == "complete"
    assert (daemon.root / "f.bin").read_bytes() == data


def test_queue_survives_kill_9_with_status_position_and_options(
    tmp_path: Path, fault_server: FaultServer, make_data: Callable[..., bytes]
) -> None:
    """After kill -9, a restarted daemon shows every item with its status, position, options
    and history; a paused partial download resumes from its bytes, not from zero."""
    data = make_data(4 << 20)
    fault_server.add_file("/big.bin", data)
    fault_server.set_faults("/big.bin", Faults(throttle_bytes_per_s=1 << 20))
    root, state = tmp_path / "root", tmp_path / "state"
    with Daemon(root, state, "-j", "1") as first:
        big = first.call("aria2.addUri", [fault_server.url("/big.bin")], {"split": "2"})
        queued = [
            first.call(
                "aria2.addUri", [f"http://127.0.0.1:9/q{n}"], {"out": f"q{n}", "pause": "true"}
            )
            for n in range(5)
        ]
        first.call("aria2.changePosition", queued[4], 0, "POS_SET")
        first.call("aria2.changeOption", queued[1], {"max-download-limit": "100K"})
        deadline = time.monotonic() + 20
        while int(first.call("aria2.tellStatus", big)["completedLength"]) < (2 << 20):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        first.call("aria2.pause", big)
        time.sleep(1.5)  # its state is saved as it stops
        first.kill()
    sent_before = fault_server.bytes_sent
    with Daemon(root, state, "-j", "1") as second:
        waiting = second.call("aria2.tellWaiting", 0, 100, ["gid", "status"])
        assert [w["gid"] for w in waiting] == [big, queued[4], *queued[:4]]
        assert {w["status"] for w in waiting} == {"paused"}
        assert second.call("aria2.getOption", queued[1])["max-download-limit"] == "100K"
        assert second.call("aria2.getOption", queued[3])["out"] == "q3"
        notices = second.call("segdl.tellDetail", big)["notices"]
        assert [n["kind"] for n in notices][:2] == ["started", "paused"]
        second.call("aria2.unpause", big)
        assert second.wait_status(big, {"complete", "error"}, 30)["status"] == "complete"
    assert hashlib.sha256((root / "big.bin").read_bytes()).digest() == hashlib.sha256(data).digest()
    assert fault_server.bytes_sent - sent_before < len(data) * 0.75


def test_jobs_and_the_global_limit_change_live(
    daemon: Daemon, fault_server: FaultServer, make_data: Callable[..., bytes]
) -> None:
    """At most -j downloads run; raising max-concurrent-downloads starts more at once; the
    overall limit set while they run slows them to it."""
    data = make_data(3 << 20)
    for n in range(4):
        fault_server.add_file(f"/f{n}.bin", data)
        fault_server.set_faults(f"/f{n}.bin", Faults(throttle_bytes_per_s=256 * 1024))
    gids = [daemon.call("aria2.addUri", [fault_server.url(f"/f{n}.bin")]) for n in range(4)]
    time.sleep(0.3)
    stat = daemon.call("aria2.getGlobalStat")
    assert (stat["numActive"], stat["numWaiting"]) == ("2", "2")
    daemon.call("aria2.changeGlobalOption", {"max-concurrent-downloads": "4"})
    assert daemon.call("aria2.getGlobalStat")["numActive"] == "4"
    daemon.call("aria2.changeGlobalOption", {"max-overall-download-limit": "200K"})
    time.sleep(1.0)
    before = sum(int(daemon.call("aria2.tellStatus", g)["completedLength"]) for g in gids)
    time.sleep(3.0)
    after = sum(int(daemon.call("aria2.tellStatus", g)["completedLength"]) for g in gids)
    assert (after - before) / 3.0 < 200 * 1024 * 1.5
    daemon.call("aria2.changeGlobalOption", {"max-overall-download-limit": "0"})
    for gid in gids:
        assert daemon.wait_status(gid, {"complete", "error"}, 60)["status"] == "complete"
    for n in range(4):
        assert (daemon.root / f"f{n}.bin").read_bytes() == data


def test_notifications_arrive_over_the_websocket(
    daemon: Daemon, fault_server: FaultServer, make_data: Callable[..., bytes]
) -> None:
    """A WebSocket client hears onDownloadStart, onDownloadPause and onDownloadComplete."""
    import asyncio

    import aiohttp

    fault_server.add_file("/n.bin", make_data(300_000))

    async def run() -> list[str]:
        heard: list[str] = []
        async with aiohttp.ClientSession() as session, session.ws_connect(daemon.url) as ws:

            async def call(method: str, *params: object) -> object:
                await ws.send_str(
                    json.dumps(
                        {
                            "jsonrpc": "2.0",
                            "id": method,
                            "method": method,
                            "params": [f"token:{SECRET}", *params],
                        }
                    )
                )
                while True:
                    message = await ws.receive_json(timeout=10)
                    if "method" in message:
                        heard.append(message["method"])
                    elif message.get("id") == method:
                        return message["result"]

            gid = await call("aria2.addUri", [fault_server.url("/n.bin")], {"pause": "true"})
            await call("aria2.unpause", gid)
            while "aria2.onDownloadComplete" not in heard:
                message = await ws.receive_json(timeout=10)
                heard.append(message.get("method", ""))
            return heard

    heard = asyncio.run(run())
    assert heard.index("aria2.onDownloadStart") < heard.index("aria2.onDownloadComplete")


def test_secret_is_generated_into_a_private_file(tmp_path: Path) -> None:
    """Without --rpc-secret a secret is made on first start, 0600, and then required."""
    daemon = Daemon(tmp_path / "root", tmp_path / "state", secret="")
    with daemon:
        path = tmp_path / "state" / "rpc-secret"
        assert os.stat(path).st_mode & 0o777 == 0o600
        daemon.secret = path.read_text().strip()
        assert len(daemon.secret) >= 32
        assert daemon.call("aria2.getGlobalStat")["numActive"] == "0"
        daemon.secret = "guess"
        with pytest.raises(RpcFailed):
            daemon.call("aria2.getGlobalStat")


def test_listening_beyond_loopback_needs_an_explicit_flag(tmp_path: Path) -> None:
    """--rpc-listen 0.0.0.0 is refused (exit 2, one line) unless --rpc-allow-remote."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "segdl", "daemon", "--dir", str(tmp_path)]
    command += ["--state-dir", str(tmp_path / "state"), "--rpc-listen", "0.0.0.0:0"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "segdl: error: --rpc-listen 0.0.0.0: not a loopback address; add --rpc-allow-remote "
        "to mean it"
    ]


def test_a_large_multicall_is_read_whole_and_cached_answers_follow_changes(
    daemon: Daemon,
) -> None:
    """2,000 addUri in one multicall (a body arriving in many reads) all land, in order;
    tellWaiting's cached answers change as soon as an item does."""
    calls = [
        {
            "methodName": "aria2.addUri",
            "params": [f"token:{SECRET}", [f"http://127.0.0.1:9/f{n}"], {"pause": "true"}],
        }
        for n in range(2000)
    ]
    gids = [answer[0] for answer in daemon.raw("system.multicall", calls, token=False)["result"]]
    assert len(set(gids)) == 2000
    listed = daemon.call("aria2.tellWaiting", 0, 3000)
    assert [item["gid"] for item in listed] == gids
    assert daemon.call("aria2.tellWaiting", 0, 1)[0]["files"][0]["uris"][0]["uri"].endswith("/f0")
    daemon.call("aria2.changeOption", gids[0], {"dir": "sub"})
    daemon.call("aria2.changeUri", gids[1], 1, [], ["http://127.0.0.1:9/mirror"])
    first, second = daemon.call("aria2.tellWaiting", 0, 2)
    assert first["dir"] == str((daemon.root / "sub").resolve())
    assert [u["uri"] for u in second["files"][0]["uris"]][-1] == "http://127.0.0.1:9/mirror"
    daemon.call("aria2.unpause", gids[2])
    assert daemon.call("aria2.tellStatus", gids[2], ["status"])["status"] != "paused"
