"""Coverage-guided fuzzing of segdl's parsers of server input with atheris (libFuzzer).

    pip install -e '.[fuzz]'          # atheris (a wheel on Linux x86-64, CPython 3.11)
    python -m bench.fuzz --minutes 2 [--target head ...] [--json PATH]

The targets are those of tests/fuzzing.py (the hypothesis tests in tests/unit/test_fuzz.py run
the same ones briefly in the suite): each may raise only the error its parser documents.
Each target runs in a child process for ``--minutes`` (libFuzzer's ``-max_total_time``), with
a corpus seeded from HTTP-like bytes; a crash (any other exception) stops that target and
leaves its input as ``crash-*`` in the work directory. The report gives, per target, the time,
the runs libFuzzer made, its coverage (edges) and the crashes found.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_SEEDS = [
    b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/10\r\nContent-Length: 10\r\n"
    b'ETag: "x"\r\n\r\n',
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"bytes 0-1023/4096",
    b"4096\x004096",
    b"attachment; filename*=UTF-8''%C3%A9t%C3%A9.tar.gz; filename=\"a.bin\"",
    b"sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:\x00SHA-256=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\x00",
    b"120",
    b"Wed, 21 Oct 2015 07:28:00 GMT",
    b'{"format":"segdl-state","version":1,"sha256":"00","payload":{}}',
    b"http://a/f\thttp://b/f\n  out=x.bin\n  connections=4\n# c\n",
    b"http://user:pw@proxy:3128\x00.example.org,10.0.0.0/8,*\x00www.example.org:80",
]


def _child(name: str, seconds: int, work: Path) -> dict[str, object]:
    corpus = work / f"corpus-{name}"
    corpus.mkdir(exist_ok=True)
    for number, seed in enumerate(_SEEDS):
        (corpus / f"seed{number}").write_bytes(seed)
    argv = [
        sys.executable,
        "-m",
        "bench.fuzz",
        "--child",
        name,
        f"-max_total_time={seconds}",
        "-max_len=2048",
        "-timeout=10",
        "-rss_limit_mb=1024",
        f"-artifact_prefix={work}/crash-{name}-",
        str(corpus),
    ]
    began = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, errors="replace", check=False)
    elapsed_s = time.monotonic() - began
    log = done.stderr
    runs = re.findall(r"#(\d+)\s+(?:DONE|pulse|NEW|REDUCE|INITED)", log)
    edges = re.findall(r"cov: (\d+)", log)
    crashes = sorted(str(p.name) for p in work.glob(f"crash-{name}-*"))
    return {
        "target": name,
        "seconds": round(elapsed_s, 1),
        "runs": int(runs[-1]) if runs else 0,
        "edges": int(edges[-1]) if edges else 0,
        "crashes": len(crashes),
        "crash_files": crashes,
        "exit_code": done.returncode,
        "last_error": _last_error(log) if done.returncode else None,
    }


def _last_error(log: str) -> str:
    lines = [line for line in log.splitlines() if "Error" in line or "Exception" in line]
    return lines[-1][:300] if lines else log[-300:]


def _run_child(name: str, libfuzzer_args: list[str]) -> None:
    import atheris

    with atheris.instrument_imports():
        from tests import fuzzing
    target = {t.name: t for t in fuzzing.TARGETS}[name]

    def one_input(data: bytes) -> None:
        fuzzing.check(target, data)

    atheris.Setup([sys.argv[0], *libfuzzer_args], one_input)
    atheris.Fuzz()


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        _run_child(sys.argv[2], sys.argv[3:])
        return
    from tests.fuzzing import TARGETS

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=1.0, help="per target")
    parser.add_argument("--target", action="append", choices=[t.name for t in TARGETS])
    parser.add_argument("--work", type=Path, default=None, help="corpora and crashes (kept)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    names = args.target or [t.name for t in TARGETS]
    work = args.work or Path(tempfile.mkdtemp(prefix="segdl-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for name in names:
        result = _child(name, max(1, int(args.minutes * 60)), work)
        print(json.dumps(result), file=sys.stderr, flush=True)
        results.append(result)
    report = {"work": str(work), "minutes_per_target": args.minutes, "targets": results}
    text = json.dumps(report, indent=1)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    sys.exit(1 if any(r["crashes"] for r in results) else 0)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
