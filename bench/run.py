"""Benchmark segdl against aria2c, axel and curl on loopback nginx: ``python -m bench.run``.

Every scenario runs every tool `--repeat` times, interleaved (tool A, B, C, A, B, C, ...) so
drift hits all tools alike; the report shows medians.  Data lives in a temp dir that is deleted
at the end; outputs go to the same filesystem and are deleted after each run.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `tests.nginx` lives beside `bench`
    sys.path.insert(0, str(REPO))

from bench.many import measure_many  # noqa: E402
from bench.measure import Measurement, measure, rotated  # noqa: E402
from bench.report import Row, render_notes, render_table  # noqa: E402
from bench.scenarios import GiB, Scenario, build_scenarios, format_size  # noqa: E402
from bench.shaper import Shaper  # noqa: E402
from bench.targets import (  # noqa: E402
    Extras,
    interpreter_argv,
    measure_big,
    measure_disk_s_per_gib,
    measure_startup_s,
    render_targets,
)
from bench.tools import TOOLS, Tool, probe_version  # noqa: E402
from tests.nginx import Nginx, nginx_binary, write_random_file  # noqa: E402

_SPACE_MARGIN_BYTES = 512 << 20
EXTRAS = ("many", "startup", "big")
_LOG_SETTLE_POLLS = 20


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """What every run shares: where outputs go, the child environment, repeats, timeout."""

    out_dir: Path
    env: dict[str, str]
    repeat: int
    timeout_s: float


def _csv(choices: Sequence[str], none_ok: bool = False) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        if none_ok and text.strip() == "none":
            return []
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}: got {text!r}")
        return names

    return parse


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    p.add_argument(
        "--scenarios",
        type=_csv(list(build_scenarios(False))),
        default=list(build_scenarios(False)),
        help="comma list, default all",
    )
    p.add_argument(
        "--tools", type=_csv(list(TOOLS)), default=list(TOOLS), help="comma list, default all"
    )
    p.add_argument(
        "--repeat", type=_positive_int, help="runs per tool and scenario (default 3, quick 1)"
    )
    p.add_argument("--quick", action="store_true", help="small files, 1 repeat: a smoke run")
    p.add_argument("--timeout", type=float, help="seconds per run (default 300, quick 60)")
    p.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="where the temp data dir goes (needs space for files + one output)",
    )
    p.add_argument("--out", type=Path, help="also write the report to this file")
    p.add_argument(
        "--extras",
        type=_csv(list(EXTRAS), none_ok=True),
        default=list(EXTRAS),
        help="rows beyond the scenarios: many (small files), startup, big (default all; none)",
    )
    p.add_argument("--big-size", type=_size, help="the big file (default 5G, quick 64M)")
    p.add_argument("--many-files", type=_positive_int, help="default 400, quick 40")
    return p.parse_args(argv)


def _size(text: str) -> int:
    from segdl.core.options import parse_size

    return parse_size(text)


def child_env() -> dict[str, str]:
    """The environment for every tool: segdl importable from src/ even if not installed."""
    env = dict(os.environ)
    src = str(REPO / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


def _check_space(workdir: Path, sizes: set[int]) -> None:
    need = sum(sizes) + max(sizes) + _SPACE_MARGIN_BYTES
    free = shutil.disk_usage(workdir).free
    if free < need:
        raise SystemExit(f"{workdir}: {free >> 20} MiB free, need {need >> 20} MiB")


@contextmanager
def _origin(nginx: Nginx, scenario: Scenario, name: str) -> Iterator[str]:
    """The URL of `name` for this scenario: nginx directly, or a fresh shaper in front."""
    if scenario.shaper is None:
        yield nginx.url(name)
        return
    with Shaper(("127.0.0.1", nginx.port), scenario.shaper) as shaper:
        yield shaper.url(name)


def run_scenario(
    scenario: Scenario,
    tools: Sequence[Tool],
    nginx: Nginx,
    sha256: str,
    plan: Plan,
    ca: Path | None = None,
) -> dict[str, Row]:
    """All runs of every tool in one scenario, interleaved; rows by tool name. `ca`: the CA
    bundle the tools are told to trust (https scenarios)."""
    name = f"data-{scenario.size_bytes}.bin"
    out = plan.out_dir / name
    runs: dict[str, list[Measurement]] = {t.name: [] for t in tools}
    if scenario.shaper is None:  # disk-bound: one untimed round first, see bench/README.md
        for tool in tools:
            with _origin(nginx, scenario, name) as url:
                measure(tool.build_argv(url, out, ca), out, sha256, scenario.size_bytes,
                        plan.env, plan.timeout_s)  # fmt: skip
    for round_ in range(plan.repeat):
        for tool in rotated(tools, round_):
            skip = len(nginx.access_log())
            with _origin(nginx, scenario, name) as url:
                m = measure(tool.build_argv(url, out, ca), out, sha256, scenario.size_bytes,
                            plan.env, plan.timeout_s)  # fmt: skip
            m = _with_server_view(m, nginx, skip)
            runs[tool.name].append(m)
            status = f"{m.wall_s:.2f} s" if m.ok else f"FAIL {m.error}"
            print(f"  {scenario.name:9} {tool.name:7} {status}", file=sys.stderr, flush=True)
    return {t.name: Row(scenario, t.name, tuple(runs[t.name])) for t in tools}


def _with_server_view(m: Measurement, nginx: Nginx, skip: int) -> Measurement:
    """Add what nginx logged for this run: connections, requests, body bytes sent."""
    entries = nginx.access_log()[skip:]
    # nginx logs a request when it is done with it, which may trail the client's exit a little.
    for _ in range(_LOG_SETTLE_POLLS):
        time.sleep(0.05)
        again = nginx.access_log()[skip:]
        if len(again) == len(entries):
            break
        entries = again
    return dataclasses.replace(
        m,
        server_connections=len({e["connection"] for e in entries}),
        server_requests=len(entries),
        server_bytes=sum(e["body_bytes_sent"] for e in entries),
    )


def _nginx_version() -> str:
    done = subprocess.run([str(nginx_binary()), "-v"], capture_output=True, text=True)
    return (done.stderr or done.stdout).strip().removeprefix("nginx version: ")


def _header(args: argparse.Namespace, versions: dict[str, str]) -> str:
    command = "python -m bench.run " + shlex.join(args.argv)
    lines = [
        "# segdl benchmark",
        "",
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- command: `{command.strip()}`",
        f"- machine: {platform.system()} {platform.release()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {_nginx_version()}",
        f"- tools: {'; '.join(f'{k}: {v}' for k, v in versions.items())}",
        f"- {args.repeat} run(s) per cell, interleaved; wall and CPU are medians, peak RSS the max",
        "- the page cache is not dropped between runs (that needs privileges a benchmark should"
        " not assume): nginx serves the source from memory after its first read; the data is"
        " `sync`ed once generated, and outputs are deleted and `sync`ed after every run; after"
        " an output of 256 MiB or more the next run waits 3 s (see bench/README.md)",
    ]
    return "\n".join(lines)


def _probe_tools(
    names: Sequence[str], env: dict[str, str]
) -> tuple[dict[str, Tool], dict[str, str], dict[str, str]]:
    """(usable tools, version lines, why each unusable tool cannot run)."""
    usable: dict[str, Tool] = {}
    versions: dict[str, str] = {}
    missing: dict[str, str] = {}
    for name in names:
        version, why = probe_version(TOOLS[name], env)
        if why is None:
            usable[name] = TOOLS[name]
        else:
            missing[name] = why
        versions[name] = version or "missing"
    return usable, versions, missing


def _make_ca(directory: Path) -> tuple[Path, tuple[Path, Path]]:
    """A throwaway CA and a certificate for 127.0.0.1 it signed (trustme, as the TLS tests
    use): the CA bundle, and the server's (chain, key) PEM files."""
    import trustme

    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    bundle, chain, key = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca.cert_pem.write_to_path(str(bundle))
    server.private_key_pem.write_to_path(str(key))
    for i, pem in enumerate(server.cert_chain_pems):
        pem.write_to_path(str(chain), append=i > 0)
    return bundle, (chain, key)


def run(args: argparse.Namespace) -> int:
    """Generate data, start nginx, run everything, print the report; 1 if any run failed.

    A missing tool is reported in its rows but does not fail the run.
    """
    scenarios = [build_scenarios(args.quick)[n] for n in args.scenarios]
    env = child_env()
    tools, versions, missing = _probe_tools(args.tools, env)
    big_size = args.big_size if "big" in args.extras else 0
    sizes = {s.size_bytes for s in scenarios} | ({big_size} if big_size else set())
    _check_space(args.workdir, sizes)
    rows: list[Row] = []
    big = None
    disk = None
    with ExitStack() as stack:
        data_dir = Path(tempfile.mkdtemp(prefix="segdl-bench-", dir=args.workdir))
        stack.callback(shutil.rmtree, data_dir, True)
        plan = Plan(data_dir / "out", env, args.repeat, args.timeout)
        www = data_dir / "www"
        www.mkdir()
        print(f"generating {', '.join(format_size(s) for s in sorted(sizes))} in {www}",
              file=sys.stderr, flush=True)  # fmt: skip
        digests = {s: write_random_file(www / f"data-{s}.bin", s, seed=s) for s in sizes}
        # Written back before any timing starts: gigabytes still being flushed would slow
        # whichever runs come first, for every tool.
        os.sync()
        nginx = stack.enter_context(Nginx(www))
        ca, https = None, None
        if any(sc.tls for sc in scenarios):
            ca, chain_and_key = _make_ca(data_dir)
            https = stack.enter_context(Nginx(www, tls=chain_and_key))
        for sc in scenarios:
            origin = https if sc.tls and https is not None else nginx
            measured = run_scenario(sc, list(tools.values()), origin, digests[sc.size_bytes],
                                    plan, ca if sc.tls else None)  # fmt: skip
            rows += [measured.get(n) or Row(sc, n, not_run=missing[n]) for n in args.tools]
        if big_size and "segdl" in tools:
            name = f"data-{big_size}.bin"
            big = [measure_big(nginx.url(name), plan.out_dir / name, digests[big_size],
                               big_size, env, args.timeout)
                   for _ in range(args.repeat + 1)][1:]  # fmt: skip
            raw_size = next((s.size_bytes for s in scenarios if s.name == "raw"), GiB)
            disk = (measure_disk_s_per_gib(raw_size, plan.out_dir),
                    measure_disk_s_per_gib(big_size, plan.out_dir))  # fmt: skip
    startup_s = measure_startup_s(env) if "startup" in args.extras else None
    shaped = any(sc.shaper is not None for sc in scenarios)
    interpreter_s = measure_startup_s(env, argv=interpreter_argv()) if shaped else None
    many = None
    if "many" in args.extras:
        many_tools: list[str] = [t for t in ("segdl", "aria2c") if t in tools]
        if not args.quick and importlib.util.find_spec("parfive") is not None:
            many_tools.append("parfive")
        many = measure_many(args.many_files, 256 * 1024, args.repeat, many_tools, env,
                            args.workdir)  # fmt: skip
    extras = Extras(startup_s, big, big_size, many, disk, interpreter_s)
    parts = [_header(args, versions), "## Targets (issue 7)", render_targets(rows, extras),
             "## Scenarios", render_table(rows), render_notes(rows, scenarios)]  # fmt: skip
    if many is not None:
        parts += ["## Many small files", many.render()]
    report = "\n\n".join(parts) + "\n"
    print(report)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
    failed = any(r.failure is not None and r.not_run is None for r in rows)
    failed = failed or (big is not None and not all(m.ok for m in big))
    failed = failed or bool(many and many.errors)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m bench.run``."""
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(raw)
    args.argv = raw
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.timeout is None:
        args.timeout = 60.0 if args.quick else 300.0
    if args.big_size is None:
        args.big_size = 64 << 20 if args.quick else 5 << 30
    if args.many_files is None:
        args.many_files = 40 if args.quick else 400
    _compile_segdl()
    return run(args)


def _compile_segdl() -> None:
    """Byte-compile the segdl the tools run (this checkout's ``src/``, first on their
    ``PYTHONPATH``: see :func:`child_env`) once, as ``pip install`` does: run with
    PYTHONDONTWRITEBYTECODE (set on this machine) it would otherwise recompile every module on
    every run and time the compiler, not the downloader."""
    import compileall

    compileall.compile_dir(str(REPO / "src" / "segdl"), quiet=1)


if __name__ == "__main__":
    sys.exit(main())
