"""Small files over https take the lean path too: verified as on the full path (a certificate
from an unknown CA, or for another name, is refused and reported as a TLS error), pipelined
on few connections, and safe when the server closes mid-pipeline."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trustme

from segdl.run.batch import Outcome, download_many
from tests.cli_child import main_in_child
from tests.nginx import Nginx
from tests.server import FaultServer

MakeData = Callable[..., bytes]
KIB = 1024


def _tls_files(tmp_path: Path, count: int) -> tuple[Path, dict[str, bytes]]:
    www = tmp_path / "www"
    www.mkdir()
    data = {f"n{n:03d}.bin": os.urandom(1 + 61 * n) for n in range(count)}
    for name, body in data.items():
        (www / name).write_bytes(body)
    return www, data


def _nginx_tls(ca: trustme.CA, tmp_path: Path, *names: str) -> tuple[Path, Path]:
    cert = ca.issue_cert(*names)
    chain, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    key.write_bytes(cert.private_key_pem.bytes())
    return chain, key


def _lean_cli(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """``main(argv)`` in a process of its own; prints its exit code and whether urllib3 (the
    full path's transport) was ever imported."""
    return main_in_child(argv, shown="'urllib3' in sys.modules")


_Batch = tuple[subprocess.CompletedProcess[str], dict[str, bytes], Path, list[Any]]


def _batch(ca: trustme.CA, ca_bundle: str, tmp_path: Path, count: int, jobs: int,
           keepalive_requests: int = 10000) -> _Batch:  # fmt: skip
    """``count`` small files from nginx over TLS, by ``segdl -q -j JOBS --ca-bundle``: the
    run, the files' bytes, where they went, and nginx's access log."""
    www, data = _tls_files(tmp_path, count)
    listing = tmp_path / "list.txt"
    out = tmp_path / "out"
    tls = _nginx_tls(ca, tmp_path, "127.0.0.1")
    with Nginx(www, tls=tls, keepalive_requests=keepalive_requests) as nginx:
        listing.write_text("".join(f"https://127.0.0.1:{nginx.port}/{n}\n" for n in data))
        argv = ["-q", "-j", str(jobs), "-x", "1", "--ca-bundle", ca_bundle, "-d", str(out),
                "-i", str(listing)]  # fmt: skip
        done = _lean_cli(argv)
        log: list[Any] = list(nginx.access_log())
    assert done.stdout.split() == ["0", "False"], done.stderr[-2000:]
    for name, body in data.items():
        assert (out / name).read_bytes() == body
    return done, data, out, log


def test_https_small_files_come_whole_on_few_verified_connections(
    ca: trustme.CA, ca_bundle: str, tmp_path: Path
) -> None:
    """nginx over TLS serves 300 small files to a batch of 4 (the CA given by --ca-bundle):
    every byte right on at most 4 connections, each reused for many files; urllib3 is never
    imported (no file went the full way); nothing is left in the directory but the files
    and the journal."""
    _, data, out, log = _batch(ca, ca_bundle, tmp_path, 300, jobs=4)
    assert sorted(p.name for p in out.iterdir()) == sorted([*data, ".segdl-journal"])
    assert len({entry["connection"] for entry in log}) <= 4 and len(log) == 300


def test_a_certificate_for_another_name_or_from_an_unknown_ca_is_refused(
    ca: trustme.CA, ca_bundle: str, tmp_path: Path
) -> None:
    """The lean path checks as the full path does: a certificate for another host name, or
    one the trusted CAs did not sign, is refused (exit 5, a TLS error per file) and no file
    is written; the lean path gives up on that server at its first refusal instead of
    handshaking once per file."""
    www, data = _tls_files(tmp_path, 40)
    listing = tmp_path / "list.txt"
    with Nginx(www, tls=_nginx_tls(ca, tmp_path, "other.test")) as nginx:
        listing.write_text("".join(f"https://127.0.0.1:{nginx.port}/{n}\n" for n in data))
        out = tmp_path / "wrong-name"
        argv = ["-q", "-j", "4", "-x", "1", "--retries", "0", "-i", str(listing)]
        wrong_name = _lean_cli([*argv, "--ca-bundle", ca_bundle, "-d", str(out)])
        unknown_ca = _lean_cli([*argv, "-d", str(tmp_path / "unknown")])
        log = nginx.access_log()
    for done in (wrong_name, unknown_ca):
        assert done.stdout.split()[0] == "5", done.stderr[-2000:]
        assert "certificate" in done.stderr
    assert "other.test" in wrong_name.stderr or "mismatch" in wrong_name.stderr
    assert not [p for p in out.iterdir() if p.name.endswith(".bin")]
    assert log == []  # no request ever went out over a connection that was not verified


def test_insecure_https_goes_the_full_way(ca: trustme.CA, tmp_path: Path) -> None:
    """--insecure: the lean path does not take the files (they go the full way, which gives
    its warning, see test_tls) and every file is right."""
    www, data = _tls_files(tmp_path, 10)
    listing = tmp_path / "list.txt"
    out = tmp_path / "out"
    with Nginx(www, tls=_nginx_tls(ca, tmp_path, "127.0.0.1")) as nginx:
        listing.write_text("".join(f"https://127.0.0.1:{nginx.port}/{n}\n" for n in data))
        done = _lean_cli(["-q", "-j", "2", "--insecure", "-d", str(out), "-i", str(listing)])
    assert done.stdout.split() == ["0", "True"], done.stderr[-2000:]
    for name, body in data.items():
        assert (out / name).read_bytes() == body


def test_an_answer_that_comes_with_the_end_of_the_tls_session_is_kept(
    ca: trustme.CA, ca_bundle: str, tmp_path: Path
) -> None:
    """nginx ends each connection after 3 answers: the third says Connection: close and
    comes with the end of the TLS session (close_notify). That answer is kept, the rest go
    on new connections: every file once, none asked twice, none left to the full path."""
    _, _, _, log = _batch(ca, ca_bundle, tmp_path, 60, jobs=2, keepalive_requests=3)
    assert len(log) == 60 and len({entry["connection"] for entry in log}) >= 20
    # Each new connection resumes the session of the last one to end (a full handshake
    # per 3 files otherwise): only the first two, opened together, start afresh.
    fresh = {entry["connection"] for entry in log if not entry["tls_resumed"]}
    assert len(fresh) <= 4, fresh


def test_over_tls_a_server_closing_mid_pipeline_loses_no_file(
    tls_server: FaultServer, ca_bundle: str, make_data: MakeData, tmp_path: Path
) -> None:
    """The fault server over TLS, closing after 3 answers: the requests it owed are asked
    again on a new verified connection and every file is right; several requests went
    ahead of their answers."""
    count = 20
    for n in range(count):
        tls_server.add_file(f"/f{n}.bin", make_data(3 * KIB + 97 * n, seed=n))
    tls_server.max_requests_per_connection = 3
    urls = [tls_server.url(f"/f{n}.bin") for n in range(count)]
    report = download_many(urls, parallel=2, directory=tmp_path, ca_bundle=ca_bundle)
    assert report.ok and report.count(Outcome.DONE) == count, report.failures
    for n in range(count):
        assert (tmp_path / f"f{n}.bin").read_bytes() == make_data(3 * KIB + 97 * n, seed=n)
    assert tls_server.deepest_pipeline >= 2
