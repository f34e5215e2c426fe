"""segdl.cluster on a local Ray cluster of 3 nodes (ray.cluster_utils.Cluster) against the
fault server: exact reports, the cap and pauses held cluster-wide, a lost node, reruns.

One cluster serves every test of the module: starting Ray costs seconds per node.
"""

from __future__ import annotations

import os

# Ray's own traffic on loopback too (by default it uses the machine's address on Linux).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

import hashlib
import io
import json
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
from ray.cluster_utils import Cluster

from segdl.cli.main import main
from segdl.cluster import RunProgress, run
from segdl.disk.journal import JOURNAL_NAME
from segdl.run.batch import download_many
from segdl.run.shards import MARKER_DIR
from tests.server import FaultServer
from tests.server.faults import Faults

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A head and two more nodes of one CPU each, this process connected as the driver."""
    nodes = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False},
    )
    for _ in range(2):
        nodes.add_node(num_cpus=1)
    nodes.wait_for_nodes(timeout=120)  # a loaded machine starts raylets slowly
    assert nodes.address.startswith("127.0.0.1:")
    ray.init(address=nodes.address, include_dashboard=False, log_to_driver=False)
    try:
        yield nodes
    finally:
        ray.shutdown()
        nodes.shutdown()


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer() as fault_server:
        yield fault_server


def _serve(
    server: FaultServer, count: int, *, prefix: str = "f", size: int | None = None
) -> dict[str, bytes]:
    files = {}
    for n in range(count):
        length = size if size is not None else 512 + (n * 97) % 3500
        files[f"/{prefix}{n:05d}.bin"] = random.Random(f"{prefix}{n}").randbytes(length)
    for path, data in files.items():
        server.add_file(path, data)
    return files


def _same(dest: Path, files: dict[str, bytes]) -> bool:
    for path, data in files.items():
        got = (dest / path.lstrip("/")).read_bytes()
        if hashlib.sha256(got).digest() != hashlib.sha256(data).digest():
            return False
    return True


def _leftovers(dest: Path) -> list[str]:
    """Anything beside the files: parts, states, locks (markers and the journal of finished
    files are expected)."""
    return sorted(
        p.name
        for p in dest.iterdir()
        if p.is_file() and not p.name.endswith(".bin") and p.name != JOURNAL_NAME
    )


def test_3000_files_over_3_nodes_exact(
    cluster: Cluster, server: FaultServer, tmp_path: Path
) -> None:
    """3,000 files over 3 nodes: every file sha256-identical, the report the exact sum (done,
    bytes, nothing failed), every node took part, the cap of 8 held at the server."""
    files = _serve(server, 3000)
    listing = tmp_path / "urls.txt"
    listing.write_text("".join(server.url(path) + "\n" for path in files))
    seen: list[RunProgress] = []
    report = run(
        listing,
        tmp_path / "out",
        shard_size=100,
        parallel=4,
        max_connections_per_host=8,
        on_progress=seen.append,
    )
    totals = report.totals
    assert (totals.shards, totals.items, totals.done, totals.skipped) == (30, 3000, 3000, 0)
    assert totals.failed == {} and report.ok
    assert totals.bytes == sum(map(len, files.values()))
    assert _same(tmp_path / "out", files)
    assert _leftovers(tmp_path / "out") == []
    assert len(report.nodes_used) == 3
    assert server.peak_connections <= 8
    assert len([r for r in server.requests if r.status in (200, 206)]) == 3000
    assert seen and seen[-1].done == 3000 and seen[-1].files == 3000


def test_cap_is_the_clusters_total(cluster: Cluster, server: FaultServer, tmp_path: Path) -> None:
    """--max-connections-per-host 8 with 3 workers x 4 files at once (12 wanted): the server
    never sees more than 8 connections at once, and it does see 8."""
    files = _serve(server, 180, size=32 * 1024)
    for path in files:  # 0.25 s a file: connections overlap, the cap is contested
        server.set_faults(path, Faults(throttle_bytes_per_s=128 * 1024))
    report = run(
        [server.url(path) for path in files],
        tmp_path,
        shard_size=20,
        parallel=4,
        max_connections_per_host=8,
    )
    assert report.totals.done == 180 and report.ok
    assert server.peak_connections == 8
    assert _same(tmp_path, files)


def test_retry_after_pauses_the_whole_cluster(cluster: Cluster, tmp_path: Path) -> None:
    """One host answers a 429 with Retry-After: 2: no worker sends to it from 0.25 s after
    (requests already on their way) until the 2 s are over, then they do; every file of both
    hosts arrives."""
    with FaultServer() as paused, FaultServer() as other:
        slow = _serve(paused, 150, prefix="p")
        fast = _serve(other, 300, prefix="o")
        counter = {"n": 0}
        lock = threading.Lock()

        def thirtieth(record: object) -> bool:
            with lock:
                counter["n"] += 1
                return counter["n"] == 30

        for path in slow:
            paused.set_faults(path, Faults(status=429, retry_after="2", when=thirtieth))
        lines = [paused.url(p) for p in slow] + [other.url(p) for p in fast]
        random.Random(1).shuffle(lines)
        report = run(lines, tmp_path, shard_size=50, parallel=4, max_connections_per_host=8)
        records = paused.requests
    assert report.totals.done == 450 and report.ok
    refused = [r for r in records if r.status == 429]
    assert len(refused) == 1
    t0 = refused[0].started_s
    during = [round(r.started_s - t0, 3) for r in records if t0 + 0.25 < r.started_s < t0 + 2.0]
    assert during == []
    assert any(r.started_s >= t0 + 2.0 for r in records)
    assert _same(tmp_path, {**slow, **fast})


def test_a_node_removed_mid_run(cluster: Cluster, server: FaultServer, tmp_path: Path) -> None:
    """A fourth node is removed while it runs a shard: its shard finishes elsewhere, nothing
    is missing, nothing counted twice, no partial file at a final name."""
    doomed = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes(timeout=120)
    files = _serve(server, 400, size=16 * 1024)
    for path in files:
        server.set_faults(path, Faults(throttle_bytes_per_s=64 * 1024))
    removed = threading.Event()
    busy_since: list[float] = []

    def remove_when_all_busy(progress: RunProgress) -> None:
        # Once all four work, a while later: the doomed node's shard, its only one (four of
        # 100 files, about 6 s of requests each, which begin up to a second after it shows up
        # on a loaded machine), has finished some of its files (committed every 0.25 s).
        if removed.is_set() or progress.workers < 4 or progress.done <= 20:
            return
        if not busy_since:
            busy_since.append(time.monotonic())
        elif time.monotonic() - busy_since[0] >= 1.5:
            removed.set()
            cluster.remove_node(doomed)  # kills its raylet and its workers at once

    lines = [server.url(path) for path in files]
    report = run(
        lines,
        tmp_path,
        shard_size=100,
        parallel=4,
        max_connections_per_host=64,
        lease_ttl_s=3.0,
        on_progress=remove_when_all_busy,
    )
    assert removed.is_set()
    assert doomed.node_id in report.nodes_used
    totals = report.totals
    assert totals.items == 400 and totals.done + totals.skipped == 400
    assert totals.failed == {} and report.shards_lost == 0
    assert totals.skipped > 0  # the retried shard found what its lost attempt had finished
    assert _same(tmp_path, files)
    assert _leftovers(tmp_path) == []


def test_rerun_sends_nothing_for_complete_shards(
    cluster: Cluster, server: FaultServer, tmp_path: Path
) -> None:
    """After a finished run, a rerun sends no request at all; with one file and its shard's
    marker removed, only that file is asked for."""
    files = _serve(server, 300)
    lines: list[str] = []
    for path in files:
        lines += [server.url(path), f"  out={path.lstrip('/')}"]
    first = run(lines, tmp_path, shard_size=50, parallel=4)
    assert first.totals.done == 300
    server.clear_log()
    again = run(lines, tmp_path, shard_size=50, parallel=4)
    assert server.requests == []
    assert (again.totals.done, again.totals.skipped, again.shards_from_markers) == (0, 300, 6)
    (tmp_path / "f00123.bin").unlink()
    markers = sorted((tmp_path / MARKER_DIR).iterdir())
    markers[2].unlink()  # files 100-149
    third = run(lines, tmp_path, shard_size=50, parallel=4)
    assert [r.path for r in server.requests] == ["/f00123.bin"]
    assert (third.totals.done, third.totals.skipped, third.shards_from_markers) == (1, 299, 5)
    assert _same(tmp_path, files)


def test_a_destination_a_plain_batch_filled_is_not_asked_again(
    cluster: Cluster, server: FaultServer, tmp_path: Path
) -> None:
    """Files a batch without Ray finished in the destination (its journal, no markers) are
    skipped by the run's shards without a request: the journal is read when it was there
    before the run."""
    files = _serve(server, 40, prefix="p")
    urls = [server.url(path) for path in files]
    assert download_many(urls, directory=tmp_path, parallel=4).ok
    server.clear_log()
    report = run(urls, tmp_path, shard_size=10, parallel=4)
    assert server.requests == []
    assert (report.totals.done, report.totals.skipped, report.totals.failed) == (0, 40, {})


def test_cli_ray_with_json_and_plain_progress(
    cluster: Cluster, server: FaultServer, tmp_path: Path
) -> None:
    """`segdl -i LIST -d DEST --ray` runs on the cluster this process is connected to:
    JSON progress lines and an exact Summary on stdout, exit 0; plain progress and the summary
    line on stderr; a missing -d or an empty list is a usage error (exit 2)."""
    files = _serve(server, 200)
    listing = tmp_path / "urls.txt"
    listing.write_text("".join(server.url(path) + "\n" for path in files))
    stdout, stderr = io.StringIO(), io.StringIO()
    argv = ["-i", str(listing), "-d", str(tmp_path / "a"), "--ray", "--shard-size", "50"]
    code = main([*argv, "--progress", "json"], stdout=stdout, stderr=stderr)
    records = [json.loads(line) for line in stdout.getvalue().splitlines()]
    assert code == 0, stderr.getvalue()
    assert {r["event"] for r in records[:-1]} == {"ClusterProgress"}
    summary = records[-1]
    assert summary["event"] == "Summary" and summary["exit_code"] == 0
    assert (summary["done"], summary["failed"], summary["shards"]) == (200, 0, 4)
    assert summary["bytes"] == sum(map(len, files.values()))
    stdout, stderr = io.StringIO(), io.StringIO()
    argv[3] = str(tmp_path / "b")
    code = main([*argv, "--progress", "plain"], stdout=stdout, stderr=stderr)
    assert code == 0
    last = stderr.getvalue().splitlines()[-1]
    assert last.startswith("segdl: 200 done, 0 skipped, 0 failed;")
    assert "4 shards (0 complete before, 0 lost)" in last
    code = main(["-i", str(listing), "--ray"], stdout=io.StringIO(), stderr=stderr)
    assert code == 2 and "needs -d DIR" in stderr.getvalue()
    (tmp_path / "empty.txt").write_text("# nothing here\n")
    argv = ["-i", str(tmp_path / "empty.txt"), "-d", str(tmp_path / "c"), "--ray"]
    code = main(argv, stdout=io.StringIO(), stderr=stderr)
    assert code == 2 and "no URL in" in stderr.getvalue()


def test_rate_per_host_holds_across_workers(
    cluster: Cluster, server: FaultServer, tmp_path: Path
) -> None:
    """With a request rate of 40/s for the host, 3 workers together keep to it."""
    files = _serve(server, 80)
    started = time.monotonic()
    report = run(
        [server.url(p) for p in files], tmp_path, shard_size=20, parallel=4, rate_per_host=40.0
    )
    assert report.totals.done == 80
    stamps = sorted(r.started_s for r in server.requests)
    span = stamps[-1] - stamps[0]
    assert span >= (80 - 5) / 40 * 0.9  # the burst, then the rate
    assert time.monotonic() - started >= span
