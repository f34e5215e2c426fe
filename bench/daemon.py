"""segdl daemon beside ``aria2c --enable-rpc`` on the same JSON-RPC calls (issue 23's targets).

Both run on loopback with a secret, each with its own directory. Measured, in this order:

- ``getGlobalStat`` over HTTP: the round trip of one POST on a kept-alive connection, p50 and
  p90 of ``--calls`` calls after a warm-up;
- ``--queued`` ``addUri`` (paused, so nothing downloads) in one ``system.multicall``: the
  wall time of that one request;
- ``tellWaiting(0, 1000)`` (every key) with those items queued: p50 of 20 calls;
- the resident memory (``VmRSS``) of each daemon process with them queued;
- a ``--size`` file (default 1 GiB) from a private nginx through segdl daemon (``addUri``
  until ``tellStatus`` says complete, polled every 20 ms) and through the command line
  (``python -m segdl -x N``, its start-up included), ``--repeat`` times alternating, medians
  compared; aria2c's own time for the same file beside them.

Run it alone on the machine (other work adds noise)::

    flock -x /tmp/segdl-cpu.lock python -m bench.daemon            # about a minute
    python -m bench.daemon --quick                                 # a smoke run, seconds
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.run import child_env
from bench.shaper import parse_size
from tests.daemon import Aria2c, Daemon, RpcProcess
from tests.nginx import Nginx, write_random_file


class Rpc:
    """JSON-RPC over one kept-alive HTTP connection (as a polling front-end holds one)."""

    def __init__(self, process: RpcProcess) -> None:
        self.token = f"token:{process.secret}"
        self.connection = http.client.HTTPConnection("127.0.0.1", process.port, timeout=120)

    def call(self, method: str, *params: Any) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                           "params": [self.token, *params]})  # fmt: skip
        self.connection.request("POST", "/jsonrpc", body, {"Content-Type": "application/json"})
        answer = json.loads(self.connection.getresponse().read())
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    def multicall(self, calls: list[tuple[str, list[Any]]]) -> Any:
        entries = [{"methodName": m, "params": [self.token, *p]} for m, p in calls]
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "system.multicall",
                           "params": [entries]})  # fmt: skip
        self.connection.request("POST", "/jsonrpc", body, {"Content-Type": "application/json"})
        answer = json.loads(self.connection.getresponse().read())
        if "error" in answer:
            raise RuntimeError(f"system.multicall: {answer['error']}")
        return answer["result"]


def timed(function: Callable[[], object], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return samples


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def rpc_figures(process: RpcProcess, calls: int, queued: int) -> dict[str, float]:
    rpc = Rpc(process)
    timed(lambda: rpc.call("aria2.getGlobalStat"), 50)  # warm-up
    stat = sorted(timed(lambda: rpc.call("aria2.getGlobalStat"), calls))
    adds = [("aria2.addUri", [[f"http://127.0.0.1:9/queued/{n:05d}.bin"], {"pause": "true"}])
            for n in range(queued)]  # fmt: skip
    started = time.perf_counter()
    answers = rpc.multicall(adds)
    multicall_s = time.perf_counter() - started
    if sum(1 for a in answers if isinstance(a, list)) != queued:
        raise RuntimeError(f"multicall added fewer than {queued}: {answers[:3]}")
    waiting = timed(lambda: rpc.call("aria2.tellWaiting", 0, 1000), 20)
    assert process.process is not None
    return {
        "stat_p50_s": statistics.median(stat),
        "stat_p90_s": stat[int(len(stat) * 0.9)],
        "multicall_s": multicall_s,
        "tell_waiting_p50_s": statistics.median(waiting),
        "rss_bytes": float(rss_bytes(process.process.pid)),
    }


def daemon_download(daemon: Daemon, url: str, connections: int) -> float:
    rpc = Rpc(daemon)
    started = time.perf_counter()
    gid = rpc.call("aria2.addUri", [url], {"split": str(connections), "allow-overwrite": "true"})
    while True:
        status = rpc.call("aria2.tellStatus", gid, ["status", "errorMessage"])
        if status["status"] == "complete":
            elapsed = time.perf_counter() - started
            rpc.call("aria2.removeDownloadResult", gid)
            return elapsed
        if status["status"] == "error":
            raise RuntimeError(f"daemon download failed: {status}")
        time.sleep(0.02)


def cli_download(url: str, out: Path, connections: int) -> float:
    command = [sys.executable, "-m", "segdl", "-q", "-x", str(connections), "--overwrite"]
    started = time.perf_counter()
    subprocess.run([*command, "-o", str(out), url], check=True, env=child_env(), timeout=600)
    return time.perf_counter() - started


def aria2c_download(url: str, out: Path, connections: int) -> float:
    command = ["aria2c", "-q", "--allow-overwrite=true", "--file-allocation=falloc",
               f"-x{connections}", f"-s{connections}", "-k1M", "--no-conf",
               f"--dir={out.parent}", f"--out={out.name}", url]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True, timeout=600)
    return time.perf_counter() - started


def download_figures(args: argparse.Namespace, scratch: Path) -> dict[str, float]:
    served = scratch / "served"
    served.mkdir()
    write_random_file(served / "big.bin", args.size, seed=7)
    figures: dict[str, list[float]] = {"daemon": [], "cli": [], "aria2c": []}
    with Nginx(served) as nginx, Daemon(scratch / "droot", scratch / "dstate") as daemon:
        url = nginx.url("big.bin")
        out = scratch / "cli" / "big.bin"
        out.parent.mkdir()
        for round_ in range(args.repeat + 1):  # the first round is untimed: caches settle
            runs = {
                "daemon": lambda: daemon_download(daemon, url, args.connections),
                "cli": lambda: cli_download(url, out, args.connections),
                "aria2c": lambda: aria2c_download(url, out, args.connections),
            }
            for name, run in runs.items():
                out.unlink(missing_ok=True)  # no tool pays for freeing the last one's file
                subprocess.run(["sync"], check=True)
                elapsed = run()
                subprocess.run(["sync"], check=True)
                if round_:
                    figures[name].append(elapsed)
            if (daemon.root / "big.bin").stat().st_size != args.size:
                raise RuntimeError("the daemon's file has the wrong size")
            (daemon.root / "big.bin").unlink()
    return {name: statistics.median(values) for name, values in figures.items()}


def report(ours: dict[str, float], theirs: dict[str, float], dl: dict[str, float],
           args: argparse.Namespace) -> str:  # fmt: skip
    ms = 1000.0
    rows = [
        ("getGlobalStat round trip, p50 (p90)",
         f"{ours['stat_p50_s'] * ms:.2f} ms ({ours['stat_p90_s'] * ms:.2f})",
         f"{theirs['stat_p50_s'] * ms:.2f} ms ({theirs['stat_p90_s'] * ms:.2f})",
         "<= aria2c's", ours["stat_p50_s"] <= theirs["stat_p50_s"]),
        (f"tellWaiting(0, 1000) with {args.queued:,} queued, p50",
         f"{ours['tell_waiting_p50_s'] * ms:.1f} ms", f"{theirs['tell_waiting_p50_s'] * ms:.1f} ms",
         "<= 20 ms and <= aria2c's",
         ours["tell_waiting_p50_s"] <= min(0.020, theirs["tell_waiting_p50_s"])),
        (f"{args.queued:,} addUri in one system.multicall", f"{ours['multicall_s']:.2f} s",
         f"{theirs['multicall_s']:.2f} s", "<= 2 s", ours["multicall_s"] <= 2.0),
        (f"daemon RSS with {args.queued:,} queued", f"{ours['rss_bytes'] / 2**20:.0f} MiB",
         f"{theirs['rss_bytes'] / 2**20:.0f} MiB", "<= 100 MB", ours["rss_bytes"] <= 100e6),
        (f"{args.size / 2**20:,.0f} MiB through the daemon vs the CLI (-x {args.connections})",
         f"{dl['daemon']:.2f} s vs {dl['cli']:.2f} s = {dl['daemon'] / dl['cli']:.3f}x",
         f"{dl['aria2c']:.2f} s (aria2c -x{args.connections})", "<= 1.05x",
         dl["daemon"] <= 1.05 * dl["cli"]),
    ]  # fmt: skip
    lines = ["| measure | segdl daemon | aria2c --enable-rpc | target | met |",
             "|---|---|---|---|---|"]  # fmt: skip
    for name, mine, other, target, met in rows:
        lines.append(f"| {name} | {mine} | {other} | {target} | {'yes' if met else 'NO'} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.daemon", description=__doc__)
    parser.add_argument("--queued", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--size", type=parse_size, default=1 << 30, help="default 1 GiB")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1000 queued, 32 MiB, 1 run")
    args = parser.parse_args(argv)
    if args.quick:
        args.queued, args.calls, args.size, args.repeat = 1000, 100, 32 << 20, 1
    if shutil.which("aria2c") is None:
        sys.stderr.write("bench.daemon: aria2c is missing (apt-get install aria2)\n")
        return 2
    with tempfile.TemporaryDirectory(prefix="segdl-bench-daemon-") as name:
        scratch = Path(name)
        with Daemon(scratch / "root", scratch / "state") as daemon:
            ours = rpc_figures(daemon, args.calls, args.queued)
        with Aria2c(scratch / "aria2", "--max-download-result=20000") as aria2c:
            theirs = rpc_figures(aria2c, args.calls, args.queued)
        dl = download_figures(args, scratch)
    print(report(ours, theirs, dl, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
