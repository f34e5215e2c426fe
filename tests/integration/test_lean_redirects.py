"""A batch's small files behind redirects: followed on the lean loop as the full path follows
them (the name is still the first URL's, https never down to http unless allowed, a bounded
number of hops), and whatever it does not follow goes the full way, which says why."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import trustme

from segdl.cli.exitcodes import ExitCode
from segdl.core.errors import InsecureRedirect, TooManyRedirects
from segdl.core.progress import DownloadFinished, DownloadStarted
from segdl.run.batch import Downloader, Outcome, download_many
from tests.integration.test_cli import run_cli
from tests.server import FaultServer

MakeData = Callable[..., bytes]


@pytest.fixture
def full_way(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The URLs that went the full way (not the lean path)."""
    taken: list[str] = []
    run_one = Downloader._run_one

    def spy(self: Downloader, prepared: object, *args: object) -> object:
        taken.append(prepared.job.url)  # type: ignore[attr-defined]
        return run_one(self, prepared, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Downloader, "_run_one", spy)
    return taken


def test_small_files_behind_redirects_are_followed_on_the_lean_loop(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path, full_way: list[str]
) -> None:
    """Relative and absolute Locations, one hop or two, to the same server or another one:
    every file is right, named by its first URL (never by where it was sent), events as for
    any lean file, and none goes the full way. A Location with user information is
    followed without it."""
    with FaultServer() as other:
        urls = []
        for n in range(12):
            data = make_data(2000 + n, seed=n)
            if n % 3 == 0:  # relative, same server
                fault_server.add_file(f"/files/{n}.bin", data)
                fault_server.add_redirect(f"/get/{n}", f"/files/{n}.bin")
            elif n % 3 == 1:  # absolute, another server, two hops
                other.add_file(f"/store/{n}.bin", data)
                other.add_redirect(f"/hop/{n}", f"/store/{n}.bin", status=307)
                target = other.url(f"/hop/{n}").replace("://", "://user:secret@")
                fault_server.add_redirect(f"/get/{n}", target, status=301)
            else:  # 303 to a name the server would like it to have
                fault_server.add_file(f"/evil/{n}/.bashrc", data)
                fault_server.add_redirect(f"/get/{n}", f"/evil/{n}/.bashrc", status=303)
            urls.append(fault_server.url(f"/get/{n}"))
        events: list[object] = []
        report = download_many(urls, parallel=4, directory=tmp_path, progress=events.append)
        assert report.ok and report.count(Outcome.DONE) == 12, report.failures
        for n in range(12):
            assert (tmp_path / str(n)).read_bytes() == make_data(2000 + n, seed=n), n
        assert full_way == []
        asked = [r for r in other.requests if r.path.startswith("/hop/")]
        assert asked and all(r.header("Authorization") is None for r in asked)
    started = [e for e in events if isinstance(e, DownloadStarted)]
    finished = [e for e in events if isinstance(e, DownloadFinished)]
    assert sorted(e.url for e in started) == sorted(urls) == sorted(e.url for e in finished)
    assert {e.path.name for e in finished} == {str(n) for n in range(12)}


def test_https_down_to_http_is_refused_unless_allowed_and_nothing_is_asked_there(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path, full_way: list[str]
) -> None:
    """The lean path refuses to follow https to http as the full path does: the file goes
    the full way, which fails it (exit 7); the plain server is never asked. Allowed, it is
    followed here."""
    import ssl

    ca = trustme.CA()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    data = make_data(1500)
    fault_server.add_file("/plain.bin", data)
    with FaultServer(ssl_context=context) as secure:
        secure.add_redirect("/start.bin", fault_server.url("/plain.bin"))
        secure.add_redirect("/other.bin", fault_server.url("/plain.bin"))
        out = tmp_path / "out"
        argv = ["-q", "--ca-bundle", str(bundle), "-d", str(out), secure.url("/start.bin"),
                secure.url("/other.bin")]  # fmt: skip
        code, _, err = run_cli(*argv)
        assert code == ExitCode.PROTOCOL and "refusing redirect" in err, err
        assert fault_server.requests == [] and len(full_way) == 2
        full_way.clear()
        code, _, err = run_cli("--allow-insecure-redirect", *argv)
        assert code == ExitCode.OK, err
        assert (out / "start.bin").read_bytes() == data and full_way == []


def test_a_loop_or_too_many_hops_goes_the_full_way_and_fails_there(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path, full_way: list[str]
) -> None:
    """A redirect to itself, a loop of two, a chain past --max-redirects: the full path asks
    again from the first URL and fails each as it always has; a good file beside them is
    done on the lean loop."""
    fault_server.add_redirect("/self", "/self")
    fault_server.add_redirect("/a", "/b")
    fault_server.add_redirect("/b", "/a")
    for n in range(4):
        fault_server.add_redirect(f"/c{n}", f"/c{n + 1}")
    fault_server.add_file("/c4", make_data(100))
    fault_server.add_file("/good.bin", make_data(300))
    urls = [fault_server.url(p) for p in ("/self", "/a", "/c0", "/good.bin")]
    report = download_many(urls, parallel=2, directory=tmp_path, max_redirects=3)
    errors = {item.job.url: item.error for item in report.failures}
    assert set(errors) == set(urls[:3]), errors
    assert all(isinstance(error, TooManyRedirects) for error in errors.values())
    assert (tmp_path / "good.bin").read_bytes() == make_data(300)
    assert sorted(full_way) == sorted(urls[:3])


def test_a_redirect_without_one_location_goes_the_full_way(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path, full_way: list[str]
) -> None:
    """No Location, or a Location to another scheme: the full path says why."""
    fault_server.add_redirect("/ftp", "ftp://127.0.0.1/f")
    urls = [fault_server.url("/ftp")]
    report = download_many(urls, parallel=2, directory=tmp_path)
    [failure] = report.failures
    assert isinstance(failure.error, InsecureRedirect)
    assert full_way == urls
