"""Owner locks of a machine the cluster lost: which hosts count as dead, which locks go."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from segdl.cluster.locks import dead_hosts, directories_of, owner_host, take_over
from segdl.run.inputs import Job


def _lock(path: Path, host: str) -> bytes:
    raw = json.dumps(
        {"host": host, "boot_id": "b", "pid": 4242, "token": f"{host}:b:4242:x", "created": 1.0}
    ).encode()
    path.write_bytes(raw)
    return raw


def test_dead_hosts_are_dead_nodes_no_live_node_shares() -> None:
    """A host counts as dead only if every node Ray knows on it is dead."""
    nodes = [
        {"NodeManagerHostname": "a", "Alive": True},
        {"NodeManagerHostname": "b", "Alive": False},
        {"NodeManagerHostname": "c", "Alive": False},
        {"NodeManagerHostname": "c", "Alive": True},  # c still runs a node: not dead
        {"NodeManagerHostname": "", "Alive": False},
        {"Alive": False},
    ]
    assert dead_hosts(nodes) == frozenset({"b"})
    assert dead_hosts([]) == frozenset()


def test_owner_host_reads_only_records() -> None:
    """The host of a lock record; nothing for what is not one."""
    assert owner_host(b'{"host": "n1", "pid": 3}') == "n1"
    for raw in (b"", b"[]", b'{"host": 3}', b'{"host": ""}', b"\xff", b"[" * 100_000):
        assert owner_host(raw) is None


def test_only_dead_hosts_locks_are_taken_over(tmp_path: Path) -> None:
    """Locks of a dead host go (the files beside them stay); a live host's, this host's, an
    unknown host's, a symlink and anything that is not a lock stay."""
    dead_lock = tmp_path / "big.bin.segdl-lock"
    _lock(dead_lock, "deadbox")
    (tmp_path / "big.bin.part").write_bytes(b"partial")
    kept = {
        tmp_path / "a.bin.segdl-lock": "livebox",
        tmp_path / "b.bin.segdl-lock": socket.gethostname(),
        tmp_path / "c.bin.segdl-lock": "stranger",
    }
    for path, host in kept.items():
        _lock(path, host)
    target = tmp_path / "elsewhere.json"
    _lock(target, "deadbox")
    os.symlink(target, tmp_path / "d.bin.segdl-lock")
    (tmp_path / "e.bin.segdl-lock").write_bytes(b"not json")
    removed = take_over([tmp_path, tmp_path / "missing"], frozenset({"deadbox"}))
    assert removed == [dead_lock]
    assert not dead_lock.exists() and (tmp_path / "big.bin.part").exists()
    assert all(path.exists() for path in kept)
    assert (tmp_path / "d.bin.segdl-lock").is_symlink() and target.exists()
    assert take_over([tmp_path], frozenset()) == []


def test_a_shards_directories(tmp_path: Path) -> None:
    """dest, each dir= inside it (absolute ones as they are), and the directory of out=."""
    jobs = [
        Job(("http://h/a",)),
        Job(("http://h/b",), {"directory": "sub"}),
        Job(("http://h/c",), {"dest": "x/y.bin"}),
        Job(("http://h/d",), {"directory": str(tmp_path / "abs"), "dest": "z.bin"}),
    ]
    assert directories_of(jobs, tmp_path) == [
        tmp_path,
        tmp_path / "sub",
        tmp_path / "x",
        tmp_path / "abs",
    ]
