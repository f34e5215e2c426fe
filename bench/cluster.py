"""The cluster runner's costs: ``python -m bench.cluster`` (needs segdl[cluster]).

1. Ray's overhead: N x 16 KiB files from a local nginx, ``segdl -i`` alone against
   ``segdl.cluster.run`` on a Ray node of this machine already running (what a cluster's
   users pay per run; one shard task at a time, and one per CPU), alternated over a few
   rounds (medians), and once ``segdl -i --ray`` (a local Ray started for the run, as a user
   without a cluster gets it). Every file's sha256 is checked.
2. The host actor alone: slots granted per second by the one actor of a run, to callers in
   other processes (Ray tasks) calling it as a worker's gate does, in batches of each size
   of ``--lease-batch`` (a gate asks for 4, doubling up to 256 while demand outruns it).
3. Scale, simulated: 100 fake workers (threads, each with its own LeasedGate and heartbeat)
   x 1 host behind a cap, each "request" holding its connection for a fixed time: the peak
   of connections held at once must stay at the cap and throughput be the cap's share.

Prints a markdown table with the targets of issue 24 beside the figures.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray on loopback

from segdl.cluster.gate import LeasedGate, LocalLeases
from segdl.cluster.leases import LeaseBook
from tests.nginx import Nginx

SIZE = 16 * 1024
ALONE = "segdl -i"


def _files(root: Path, count: int) -> dict[str, str]:
    digests = {}
    rand = random.Random(0)
    for n in range(count):
        data = rand.randbytes(SIZE)
        name = f"f{n:05d}.bin"
        (root / name).write_bytes(data)
        digests[name] = hashlib.sha256(data).hexdigest()
    return digests


def _check(out: Path, digests: dict[str, str]) -> bool:
    return all(
        hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
        for name, digest in digests.items()
    )


def _timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def overhead(
    count: int, jobs: int, shard_size: int, rounds: int, where: str | None
) -> dict[str, list[float]]:
    """Walls of the same list run alone and on a running Ray node of this machine (its
    CPUs, as ``ray start`` makes it), ``rounds`` times, each round's order the reverse of
    the last one's (a drift of the machine's speed then weighs on both sides alike), fresh
    destinations each; and once, ``segdl -i --ray`` starting its own Ray. Everything is
    written under ``where`` (a tmpfs by default: the comparison is about Ray's costs, and
    this machine's disk made single runs vary by 2x)."""
    import ray

    import segdl.cluster

    walls: dict[str, list[float]] = {}
    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="segdl-cluster-bench-", dir=where) as tmp:
        root = Path(tmp) / "www"
        root.mkdir()
        digests = _files(root, count)
        with Nginx(root) as nginx:
            listing = Path(tmp) / "urls.txt"
            listing.write_text("".join(nginx.url(name) + "\n" for name in digests))
            base = [sys.executable, "-m", "segdl", "-q", "-j", str(jobs), "-i", str(listing)]
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
            try:
                ray.get(ray.remote(lambda: None).remote())  # a worker is up
                sides = [None, *sorted({1, cpus})]  # None: segdl -i alone
                for round_ in range(rounds):
                    for at_once in sides if round_ % 2 == 0 else sides[::-1]:
                        out = Path(tmp) / f"out{round_}-{at_once}"
                        if at_once is None:
                            name, wall = ALONE, _timed([*base, "-d", str(out)])
                        else:
                            name = f"cluster.run, Ray running (1 node), {at_once} shard(s) at once"
                            started = time.perf_counter()
                            report = segdl.cluster.run(
                                listing, out, shard_size=shard_size, parallel=jobs,
                                task_cpus=cpus / at_once,
                            )  # fmt: skip
                            wall = time.perf_counter() - started
                            assert report.totals.done == count, f"{name}: {report.totals}"
                        walls.setdefault(name, []).append(wall)
                        assert _check(out, digests), f"{name}: a file differs"
                        shutil.rmtree(out)
            finally:
                ray.shutdown()
            out = Path(tmp) / "ray-cli"
            ray_cli = [*base, "-d", str(out), "--ray", "--shard-size", str(shard_size)]
            walls["segdl -i --ray (starts and stops its Ray)"] = [_timed(ray_cli)]
            assert _check(out, digests), "segdl --ray: a file differs"
    return walls


def lease_rate(callers: int, batches: list[int], seconds: float) -> list[tuple[int, float, float]]:
    """(batch, slots granted per second, actor calls per second) for each batch size, with
    ``callers`` Ray tasks calling the actor as a worker's gate does: an acquire waited for,
    its release sent without waiting (as :class:`segdl.cluster.actor.RayLeases` does)."""
    import ray

    from segdl.cluster.actor import start_book

    ray.init(num_cpus=callers, include_dashboard=False, log_to_driver=False)
    results = []
    try:

        @ray.remote(num_cpus=1)
        def caller(book: Any, name: str, batch: int, seconds: float) -> int:
            granted = 0
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                view = ray.get(book.acquire.remote(name, "h:80", batch, 0.0))
                granted += view.granted
                book.release.remote(name, "h:80", view.granted)
            ray.get(book.held.remote("h:80"))  # the releases sent are all answered
            return granted

        for batch in batches:
            book = start_book(callers * batch, ttl_s=30.0, max_pause_s=300.0, rate_per_s=None)
            ray.get([caller.remote(book, f"warm{n}", batch, 0.5) for n in range(callers)])
            before = ray.get(book.snapshot.remote())["calls"]
            started = time.perf_counter()
            granted = sum(
                ray.get([caller.remote(book, f"w{n}", batch, seconds) for n in range(callers)])
            )
            elapsed = time.perf_counter() - started
            calls = ray.get(book.snapshot.remote())["calls"] - before
            results.append((batch, granted / elapsed, calls / elapsed))
            ray.kill(book)
    finally:
        ray.shutdown()
    return results


def simulate(workers: int, cap: int, hold_s: float, seconds: float) -> dict[str, float]:
    """Fake workers behind one host's cap: peak held at once, throughput vs the cap's share."""
    service = LocalLeases(LeaseBook(cap, ttl_s=5.0))
    lock = threading.Lock()
    state = {"open": 0, "peak": 0}
    counts = [0] * workers
    stop = threading.Event()

    def work(index: int, gate: LeasedGate) -> None:
        while not stop.is_set():
            if not gate.connect("h:80", 0.5):
                continue
            with lock:
                state["open"] += 1
                state["peak"] = max(state["peak"], state["open"])
            time.sleep(hold_s)  # the connection carries one file
            with lock:
                state["open"] -= 1
            counts[index] += 1
            gate.disconnected("h:80")

    gates = [LeasedGate(service, lease_batch=2, tick_s=0.5) for _ in range(workers)]
    threads = [threading.Thread(target=work, args=(n, g)) for n, g in enumerate(gates)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # warm-up
    before, started = sum(counts), time.perf_counter()
    time.sleep(seconds)
    done, elapsed = sum(counts) - before, time.perf_counter() - started
    stop.set()
    for thread in threads:
        thread.join()
    for gate in gates:
        gate.close()
    ideal = cap / hold_s
    active = sorted(counts)
    return {
        "peak": state["peak"],
        "rate": done / elapsed,
        "ideal": ideal,
        "min_share": active[0] / max(1, statistics.mean(active)),
        "served": sum(1 for c in active if c) / workers,
        "calls_per_s": service.calls / (elapsed + 1.0),
    }


def _overhead_rows(walls: dict[str, list[float]], what: str) -> list[str]:
    """A row per side: its median wall and ratio to the lone run's median, and the ratios
    paired by round (each Ray run over the lone run of its own round), median and range."""
    alone = walls[ALONE]
    rows = []
    for name, runs in walls.items():
        wall, each = statistics.median(runs), ", ".join(f"{run:.2f}" for run in runs)
        if name == ALONE:
            rows.append(f"| {what}: {name} (runs {each} s) | {wall:.2f} s (1.00x) | - | - |")
            continue
        ratio = wall / statistics.median(alone)
        paired = sorted(run / lone for run, lone in zip(runs, alone, strict=False))
        pairs = (
            f"; paired by round {statistics.median(paired):.2f}x ({paired[0]:.2f}-{paired[-1]:.2f})"
            if len(runs) == len(alone)
            else ""
        )
        met = "yes" if ratio <= 1.2 else "no"
        rows.append(
            f"| {what}: {name} (runs {each} s{pairs}) | {wall:.2f} s ({ratio:.2f}x) "
            f"| <= 1.2x | {met} |"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__)
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--shard-size", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--callers", type=int, default=2)
    parser.add_argument("--lease-batch", default="4,16,64,256", help="sizes, comma-separated")
    parser.add_argument("--workers", type=int, default=100)
    parser.add_argument("--cap", type=int, default=16)
    parser.add_argument("--hold-ms", type=float, default=20.0)
    parser.add_argument(
        "--where",
        default="/dev/shm" if os.path.isdir("/dev/shm") else None,
        help="directory for the served files and both sides' output (default: /dev/shm, a "
        "tmpfs, so the disk's noise stays out of Ray's overhead; give a disk's directory to "
        "include it)",
    )
    parser.add_argument("--skip", choices=["overhead", "leases", "simulation"], action="append")
    args = parser.parse_args(argv)
    skip = set(args.skip or ())
    rows = ["| measure | figure | target | met |", "|---|---|---|---|"]
    if "overhead" not in skip:
        walls = overhead(args.files, args.jobs, args.shard_size, args.rounds, args.where)
        rows.extend(_overhead_rows(walls, f"{args.files} x 16 KiB, nginx, -j {args.jobs}"))
    if "leases" not in skip:
        batches = [int(size) for size in args.lease_batch.split(",")]
        for batch, rate, calls in lease_rate(args.callers, batches, 3.0):
            rows.append(
                f"| host actor alone: slots granted/s ({args.callers} callers, batches of "
                f"{batch}; {calls:.0f} calls/s) | {rate:,.0f} | >= 20,000 | "
                f"{'yes' if rate >= 20_000 else 'no'} |"
            )
    if "simulation" not in skip:
        sim = simulate(args.workers, args.cap, args.hold_ms / 1000, 8.0)
        share = sim["rate"] / sim["ideal"]
        rows.append(
            f"| {args.workers} fake workers x 1 host, cap {args.cap}, {args.hold_ms:.0f} ms a "
            f"file: peak held | {sim['peak']:.0f} | <= {args.cap} | "
            f"{'yes' if sim['peak'] <= args.cap else 'no'} |"
        )
        rows.append(
            f"| same, over 8 s: files/s vs the cap's share ({sim['ideal']:.0f}/s); "
            f"{sim['served']:.0%} of workers served, the least {sim['min_share']:.2f} of the "
            f"mean; {sim['calls_per_s']:.0f} book calls/s | "
            f"{sim['rate']:.0f}/s ({share:.2f}x) | ~1.0x | {'yes' if share >= 0.9 else 'no'} |"
        )
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
