"""A server that refused a file's every connection is tried once by the batch's other files
of it (segdl.run.downhosts): the mark comes from a ConnectError after retries and goes with
the first file the server answers."""

from __future__ import annotations

from pathlib import Path

from segdl.core.errors import Cancelled, ConnectError, HTTPStatusError, TimeoutError_
from segdl.core.models import Result
from segdl.core.options import DownloadOptions
from segdl.run.downhosts import DownHosts
from segdl.run.inputs import Job
from segdl.run.reports import ItemReport, Outcome

OPTIONS = DownloadOptions(retries=5)


def _failed(url: str, error: BaseException) -> ItemReport:
    return ItemReport(Job((url,)), Outcome.FAILED, error=error)


def test_a_refused_server_is_tried_once_until_it_answers_again() -> None:
    down = DownHosts()
    assert down.options_for("http://a.test/1", OPTIONS) is OPTIONS
    down.ended(_failed("http://a.test/1", ConnectError("http://a.test/1", "connection refused")))
    assert down.options_for("http://a.test/2", OPTIONS).retries == 0
    assert down.options_for("http://A.test:80/3", OPTIONS).retries == 0  # the same server
    assert down.options_for("http://a.test:8080/4", OPTIONS) is OPTIONS  # another one
    assert down.options_for("https://b.test/5", OPTIONS) is OPTIONS
    # No word from the server: still down.
    down.ended(_failed("http://a.test/6", Cancelled("interrupted")))
    down.ended(_failed("http://a.test/7", TimeoutError_("http://a.test/7", "timed out")))
    assert down.options_for("http://a.test/8", OPTIONS).retries == 0
    # It answered (a 404 is an answer): up again.
    down.ended(_failed("http://a.test/9", HTTPStatusError("http://a.test/9", 404, "Not Found")))
    assert down.options_for("http://a.test/10", OPTIONS) is OPTIONS
    down.ended(_failed("http://a.test/1", ConnectError("http://a.test/1", "connection refused")))
    done = Result("http://a.test/11", Path("11"), 3, 0.1, 1, False)
    down.ended(ItemReport(Job(("http://a.test/11",)), Outcome.DONE, done))
    assert down.options_for("http://a.test/12", OPTIONS) is OPTIONS


def test_a_server_that_drops_connection_attempts_is_marked_too() -> None:
    from segdl.core.errors import ConnectTimeout

    down = DownHosts()
    down.ended(_failed("http://a.test/1", ConnectTimeout("http://a.test/1", "connect timed out")))
    assert down.options_for("http://a.test/2", OPTIONS).retries == 0


def test_the_server_marked_is_the_one_that_refused_after_a_redirect() -> None:
    """A file sent elsewhere by a redirect, refused there: that server is marked."""
    down = DownHosts()
    refused = ConnectError("http://mirror.test/f", "connection refused")
    down.ended(_failed("http://origin.test/f", refused))
    assert down.options_for("http://origin.test/g", OPTIONS) is OPTIONS
    assert down.options_for("http://mirror.test/g", OPTIONS).retries == 0


def test_no_retries_asked_none_changed() -> None:
    down = DownHosts()
    down.ended(_failed("http://a.test/1", ConnectError("http://a.test/1", "refused")))
    none = DownloadOptions(retries=0)
    assert down.options_for("http://a.test/2", none) is none


def test_a_mark_holds_a_minute() -> None:
    """A program adding files over hours: a minute after the mark, the server's files get
    their retries again (and mark it anew if it is still down)."""
    from segdl.run.downhosts import DOWN_FOR_S

    now = [100.0]
    down = DownHosts(clock=lambda: now[0])
    down.ended(_failed("http://a.test/1", ConnectError("http://a.test/1", "refused")))
    now[0] += DOWN_FOR_S - 1
    assert down.options_for("http://a.test/2", OPTIONS).retries == 0
    now[0] += 2
    assert down.options_for("http://a.test/3", OPTIONS) is OPTIONS
