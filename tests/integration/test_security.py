"""Security and identity against the fault server: names, symlinks, credentials across
redirects, netrc, cookies, and secrets kept out of messages and state."""

from __future__ import annotations

import base64
import io
import json
import os
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

import segdl
from segdl.cli.exitcodes import ExitCode
from segdl.cli.main import main
from tests.server import FaultServer
from tests.server.faults import Faults

MIB = 1024 * 1024
MakeData = Callable[..., bytes]
BASIC_U_P = "Basic " + base64.b64encode(b"u:p").decode()


@pytest.fixture
def other_server() -> Iterator[FaultServer]:
    """A second origin: same host, another port."""
    with FaultServer() as server:
        yield server


def run_cli(*argv: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=stdout, stderr=stderr)
    return code, stdout.getvalue(), stderr.getvalue()


def credential_headers(server: FaultServer) -> set[str]:
    return {
        f"{name}: {value}"
        for r in server.requests
        for name, value in r.headers
        if name.lower() in ("authorization", "cookie", "proxy-authorization")
    }


@pytest.mark.parametrize("trusted", [False, True], ids=["default", "location-trusted"])
def test_credentials_never_follow_a_redirect_to_another_origin(
    fault_server: FaultServer,
    other_server: FaultServer,
    make_data: MakeData,
    tmp_path: Path,
    trusted: bool,
) -> None:
    """Authorization and Cookie reach the first origin only, on every range request."""
    data = make_data(4 * MIB)
    other_server.add_file("/data.bin", data)
    fault_server.add_redirect("/start.bin", other_server.url("/data.bin"))
    segdl.download(
        fault_server.url("/start.bin"),
        tmp_path / "o",
        connections=4,
        user="u:p",
        headers={"Cookie": "session=s3cr3t"},
        location_trusted=trusted,
    )
    assert (tmp_path / "o").read_bytes() == data
    assert credential_headers(fault_server) == {
        f"Authorization: {BASIC_U_P}",
        "Cookie: session=s3cr3t",
    }
    ranged = [r for r in other_server.requests if r.range]
    assert len(ranged) >= 4
    if trusted:
        assert all(r.header("Authorization") == BASIC_U_P for r in other_server.requests)
    else:
        assert credential_headers(other_server) == set()


def test_localhost_is_another_origin_than_127_0_0_1(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """Same port, other host name: still another origin, so no credentials."""
    data = make_data(2 * MIB)
    fault_server.add_file("/data.bin", data)
    target = f"http://localhost:{fault_server.port}/data.bin"
    fault_server.add_redirect("/start.bin", target)
    url = f"http://u:p@127.0.0.1:{fault_server.port}/start.bin"  # credentials in the URL
    segdl.download(url, tmp_path / "o", connections=2)
    assert (tmp_path / "o").read_bytes() == data
    first, *rest = fault_server.requests
    assert first.path == "/start.bin" and first.header("Authorization") == BASIC_U_P
    assert rest and all(r.header("Authorization") is None for r in rest)
    assert all((r.header("Host") or "").startswith("localhost") for r in rest)


def test_netrc_is_used_and_a_readable_one_refused(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """A private netrc gives Basic credentials; one others can read is refused (exit 3)."""
    fault_server.add_file("/f.bin", make_data(1000))
    netrc_path = tmp_path / "netrc"
    netrc_path.write_text("machine 127.0.0.1 login u password p\n")
    netrc_path.chmod(0o600)
    code, _, err = run_cli("-q", "--netrc-file", str(netrc_path), "-o", str(tmp_path / "a"),
                           fault_server.url("/f.bin"))  # fmt: skip
    assert code == ExitCode.OK, err
    assert fault_server.requests[0].header("Authorization") == BASIC_U_P
    netrc_path.chmod(0o644)
    code, _, err = run_cli("-q", "--netrc-file", str(netrc_path), "-o", str(tmp_path / "b"),
                           fault_server.url("/f.bin"))  # fmt: skip
    assert code == ExitCode.FILE_IO and "readable by others" in err


def test_cookie_file_follows_domain_and_path_rules(
    fault_server: FaultServer, other_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """Cookies go where their domain and path match, and nowhere else."""
    data = make_data(1000)
    fault_server.add_file("/app/f.bin", data)
    fault_server.add_file("/other/f.bin", data)
    jar = tmp_path / "cookies.txt"
    jar.write_text(
        "# Netscape HTTP Cookie File\n"
        "127.0.0.1\tFALSE\t/app\tFALSE\t0\tsid\tabc\n"
        ".example.org\tTRUE\t/\tFALSE\t0\tforeign\tzzz\n"
    )
    segdl.download(fault_server.url("/app/f.bin"), tmp_path / "a", cookies_file=jar)
    segdl.download(fault_server.url("/other/f.bin"), tmp_path / "b", cookies_file=jar)
    by_path = {r.path: r.header("Cookie") for r in fault_server.requests}
    assert by_path == {"/app/f.bin": "sid=abc", "/other/f.bin": None}


def test_secrets_stay_out_of_messages_json_and_state(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """Passwords and signed-URL tokens appear in no error, no JSON event, no state file."""
    fault_server.add_file("/f.bin", make_data(4 * MIB))
    fault_server.set_faults("/f.bin", Faults(throttle_bytes_per_s=MIB))
    url = f"http://user:hunter2@127.0.0.1:{fault_server.port}/missing?sig=TOKEN123"
    code, out, err = run_cli("--progress", "json", "-o", str(tmp_path / "o"), url)
    assert code == ExitCode.SERVER_ERROR
    for text in (out, err):
        assert "hunter2" not in text and "TOKEN123" not in text
    assert "404" in err
    # And in a resume state: stop a download half way and read what was saved.
    cancel = threading.Event()
    threading.Timer(0.6, cancel.set).start()
    good = f"http://user:hunter2@127.0.0.1:{fault_server.port}/f.bin?sig=TOKEN123"
    with pytest.raises(segdl.Cancelled):
        segdl.download(good, tmp_path / "p", connections=2, cancel=cancel)
    saved = (tmp_path / "p.segdl-state").read_text()
    assert "hunter2" not in saved and "TOKEN123" not in saved
    json.loads(saved)


@pytest.mark.parametrize(
    ("disposition", "expected"),
    [
        ('attachment; filename="../../escape.txt"', "escape.txt"),
        ("attachment; filename=/etc/passwd", "passwd"),
        ('attachment; filename="..\\\\x.txt"', "x.txt"),
        ("attachment; filename*=UTF-8''na%C3%AFve%20r%C3%A9sum%C3%A9.txt", "naïve résumé.txt"),
        ('attachment; filename="CON"', "_CON"),
        ('attachment; filename=".bashrc"', "bashrc"),
    ],
)
def test_server_chosen_names_stay_inside_the_directory(
    fault_server: FaultServer, tmp_path: Path, disposition: str, expected: str
) -> None:
    """Content-Disposition names the file, sanitised; nothing lands outside the directory."""
    fault_server.add_file("/get", b"payload")
    fault_server.set_faults("/get", Faults(extra_headers=(("Content-Disposition", disposition),)))
    target = tmp_path / "downloads"
    target.mkdir()
    result = segdl.download(fault_server.url("/get"), directory=target)
    assert result.path == target / expected
    assert result.path.read_bytes() == b"payload"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [expected]


def test_name_never_comes_from_a_redirect_target(fault_server: FaultServer, tmp_path: Path) -> None:
    """wget CVE-2016-4971: a redirect to /evil/.bashrc still saves as the asked name."""
    fault_server.add_file("/evil/.bashrc", b"payload")
    fault_server.add_redirect("/release.tar.gz", "/evil/.bashrc")
    result = segdl.download(fault_server.url("/release.tar.gz"), directory=tmp_path)
    assert result.path == tmp_path / "release.tar.gz"


@pytest.mark.parametrize("planted", ["output", "part"])
def test_planted_symlink_is_refused(
    fault_server: FaultServer, tmp_path: Path, planted: str
) -> None:
    """A symlink at the output or .part path is never followed: its target is untouched."""
    fault_server.add_file("/f.bin", b"payload")
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    out = tmp_path / "f.bin"
    (out if planted == "output" else tmp_path / "f.bin.part").symlink_to(victim)
    with pytest.raises((segdl.OutputExists, segdl.LocalFileError)):
        segdl.download(fault_server.url("/f.bin"), out)
    assert victim.read_bytes() == b"keep me"


def test_if_exists_skip_and_rename(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """skip leaves the file and asks nothing; rename writes name.1.ext; both rerun safely."""
    data = make_data(3000)
    fault_server.add_file("/a.tar.gz", data)
    (tmp_path / "a.tar.gz").write_bytes(b"old")
    result = segdl.download(fault_server.url("/a.tar.gz"), directory=tmp_path, if_exists="skip")
    assert result.skipped and (tmp_path / "a.tar.gz").read_bytes() == b"old"
    renamed = segdl.download(fault_server.url("/a.tar.gz"), directory=tmp_path, if_exists="rename")
    assert renamed.path == tmp_path / "a.1.tar.gz" and renamed.path.read_bytes() == data
    code, _, err = run_cli("-d", str(tmp_path), fault_server.url("/a.tar.gz"))
    assert code == ExitCode.OUTPUT_EXISTS, err
    assert os.listdir(tmp_path) and (tmp_path / "a.tar.gz").read_bytes() == b"old"


def _tls_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


def test_https_to_http_redirect_is_refused_unless_allowed(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """A redirect from https down to http is refused (exit 7) unless explicitly allowed."""
    ca = trustme.CA()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    data = make_data(1000)
    fault_server.add_file("/plain.bin", data)
    with FaultServer(ssl_context=_tls_context(ca)) as secure:
        secure.add_redirect("/start.bin", fault_server.url("/plain.bin"))
        url = secure.url("/start.bin")
        assert url.startswith("https://")
        code, _, err = run_cli("--ca-bundle", str(bundle), "-o", str(tmp_path / "a"), url)
        assert code == ExitCode.PROTOCOL and "refusing redirect" in err
        assert fault_server.requests == []
        code, _, err = run_cli("-q", "--ca-bundle", str(bundle), "--allow-insecure-redirect",
                               "-o", str(tmp_path / "b"), url)  # fmt: skip
        assert code == ExitCode.OK, err
        assert (tmp_path / "b").read_bytes() == data


def test_insecure_works_and_warns_even_when_quiet(make_data: MakeData, tmp_path: Path) -> None:
    """-k downloads from an untrusted certificate and says so on every use, even with -q."""
    ca = trustme.CA()
    data = make_data(2 * MIB)
    with FaultServer(ssl_context=_tls_context(ca)) as secure:
        secure.add_file("/f.bin", data)
        code, _, err = run_cli("-o", str(tmp_path / "a"), secure.url("/f.bin"))
        assert code == ExitCode.TLS and "certificate verify failed" in err
        code, _, err = run_cli("-q", "-k", "-o", str(tmp_path / "b"), secure.url("/f.bin"))
        assert code == ExitCode.OK, err
        assert "WARNING: TLS certificates are NOT verified" in err
        assert (tmp_path / "b").read_bytes() == data
