"""The same RPC calls against Debian's ``aria2c --enable-rpc`` and against segdl daemon: every
answer has the same keys and the same value types, except the differences listed (and
explained) in ``KNOWN``."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.daemon import Aria2c, Daemon, RpcProcess
from tests.server import Faults, FaultServer

# Differences between the two, each with its reason. A difference not listed fails the test.
KNOWN = {
    # aria2 answers with its whole option table (BitTorrent, FTP, Metalink, ...); segdl with
    # the options it reads, and those set on the item: a subset of aria2's names, all strings.
    "aria2.getOption": "subset",
    "aria2.getGlobalOption": "subset",
}


def shape(value: Any) -> Any:
    """The value with every leaf replaced by its type's name: what a client relies on."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in sorted(value.items())}
    if isinstance(value, list):
        shapes: list[Any] = []
        for item in value:
            if shape(item) not in shapes:
                shapes.append(shape(item))
        return shapes
    return type(value).__name__


def _wait(process: RpcProcess, gid: str, wanted: set[str]) -> None:
    deadline = time.monotonic() + 30
    while process.call("aria2.tellStatus", gid, ["status"])["status"] not in wanted:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _session(process: RpcProcess, server: FaultServer) -> dict[str, Any]:
    """One fixed series of calls; every answer kept under a label."""
    answers: dict[str, Any] = {}

    def call(label: str, method: str, *params: Any, token: bool = True) -> Any:
        answer = process.raw(method, *params, token=token)
        answers[label] = answer
        return answer.get("result")

    done = call("addUri", "aria2.addUri", [server.url("/small.bin")], {"split": "2"})
    _wait(process, done, {"complete"})
    slow = call("addUri active", "aria2.addUri", [server.url("/slow.bin")])
    _wait(process, slow, {"active"})
    deadline = time.monotonic() + 10
    while process.call("aria2.tellStatus", slow, ["connections"])["connections"] == "0":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    call("tellStatus active", "aria2.tellStatus", slow)
    call("getServers active", "aria2.getServers", slow)
    call("tellActive", "aria2.tellActive", ["gid", "status", "totalLength"])
    call("forceRemove", "aria2.forceRemove", slow)
    waiting = call("addUri paused", "aria2.addUri", [server.url("/small.bin")], {"pause": "true"})
    failed = call("addUri 404", "aria2.addUri", [server.url("/missing.bin")])
    _wait(process, failed, {"error"})
    call("tellStatus complete", "aria2.tellStatus", done)
    call("tellStatus paused", "aria2.tellStatus", waiting)
    call("tellStatus error", "aria2.tellStatus", failed, ["gid", "status", "errorCode"])
    call("tellStatus keys", "aria2.tellStatus", done, ["gid", "files", "bitfield"])
    call("getFiles", "aria2.getFiles", done)
    call("getUris", "aria2.getUris", waiting)
    call("getServers stopped", "aria2.getServers", done)
    call("aria2.getOption", "aria2.getOption", waiting)
    call("changeOption", "aria2.changeOption", waiting, {"max-download-limit": "10K"})
    call("changePosition", "aria2.changePosition", waiting, 0, "POS_SET")
    call("tellWaiting", "aria2.tellWaiting", 0, 10)
    call("tellStopped", "aria2.tellStopped", 0, 10, ["gid", "status"])
    call("getGlobalStat", "aria2.getGlobalStat")
    call("getVersion", "aria2.getVersion")
    call("getSessionInfo", "aria2.getSessionInfo")
    call("aria2.getGlobalOption", "aria2.getGlobalOption")
    call("changeGlobalOption", "aria2.changeGlobalOption", {"max-concurrent-downloads": "3"})
    call("pause paused", "aria2.pause", waiting)
    call("unpause", "aria2.unpause", waiting)
    call("pauseAll", "aria2.pauseAll")
    call("unpauseAll", "aria2.unpauseAll")
    call("removeDownloadResult", "aria2.removeDownloadResult", done)
    call("purgeDownloadResult", "aria2.purgeDownloadResult")
    call("bad gid", "aria2.tellStatus", "zzzz")
    call("no token", "aria2.getGlobalStat", token=False)
    call("no method", "aria2.noSuchMethod")
    call("listNotifications", "system.listNotifications", token=False)
    calls = [
        {"methodName": "aria2.getGlobalStat", "params": [f"token:{process.secret}"]},
        {"methodName": "aria2.getGlobalStat", "params": []},
    ]
    call("multicall", "system.multicall", calls, token=False)
    answers["listMethods"] = process.raw("system.listMethods", token=False)["result"]
    return answers


def _serve(server: FaultServer, make_data: Callable[..., bytes]) -> None:
    server.add_file("/small.bin", make_data(3_000_000))
    server.add_file("/slow.bin", make_data(4 << 20, seed=3))
    server.set_faults("/slow.bin", Faults(throttle_bytes_per_s=256 * 1024))


def test_answers_match_aria2c_in_keys_and_value_types(
    tmp_path: Path, fault_server: FaultServer, make_data: Callable[..., bytes]
) -> None:
    """Every answer of the session has aria2c's keys and value types (numbers as strings,
    16-hex GIDs), the method list is aria2's but BitTorrent/Metalink plus segdl's own."""
    _serve(fault_server, make_data)
    with Aria2c(tmp_path / "aria2") as aria2c:
        theirs = _session(aria2c, fault_server)
    with Daemon(tmp_path / "root", tmp_path / "state") as daemon:
        ours = _session(daemon, fault_server)
    their_methods, our_methods = set(theirs.pop("listMethods")), set(ours.pop("listMethods"))
    assert their_methods - our_methods == {
        "aria2.addTorrent",
        "aria2.addMetalink",
        "aria2.getPeers",
    }
    assert our_methods - their_methods == {"segdl.retry", "segdl.tellDetail"}
    differing = {}
    for label, answer in theirs.items():
        if KNOWN.get(label) == "subset":
            assert set(ours[label]["result"]) <= set(answer["result"]), label
            assert {type(v) for v in ours[label]["result"].values()} == {str}, label
        elif shape(ours[label]) != shape(answer):
            differing[label] = (shape(answer), shape(ours[label]))
    assert differing == {}
    gid = ours["addUri"]["result"]
    assert len(gid) == 16 and int(gid, 16) >= 0
