"""Who we are to which server: credentials and cookies, and the rule that keeps them home.

Credentials (URL userinfo, ``--user``, ``.netrc``, an ``Authorization`` or ``Cookie`` header given
by the user) belong to the origin of the URL the user asked for: scheme, host and port. After a
redirect to any other origin they are not sent (curl CVE-2018-1000007, requests CVE-2018-18074),
for every connection of every range, unless the user said ``--location-trusted``. Cookies from a
cookie file follow the cookie rules instead (domain, path, secure), whatever the origin.
"""

from __future__ import annotations

import base64
import errno
import os
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit, urlunsplit

from segdl.core.errors import LocalFileError, UsageError
from segdl.net.origins import origin

if TYPE_CHECKING:  # imported where used: most downloads need neither (start-up time)
    import http.cookiejar

_CREDENTIAL_HEADERS = ("authorization", "cookie")


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """The URL without ``user:password@``, and the (percent-decoded) user and password."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    clean = urlunsplit((parts.scheme, hostport, parts.path, parts.query, parts.fragment))
    return clean, unquote(user), unquote(password) if ":" in userinfo else None


def basic_auth(user: str, password: str) -> str:
    """An ``Authorization`` value for HTTP Basic (RFC 7617), UTF-8 as modern clients do."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def netrc_login(host: str, path: Path | None = None) -> tuple[str, str] | None:
    """Login and password for ``host`` from a netrc file, refusing one others can read."""
    import netrc

    path = path or Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LocalFileError(
            exc.errno or 0, f"cannot read {path}: {exc.strerror}", str(path)
        ) from exc
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        # curl refuses these too: a password file others can read is a leak already.
        raise LocalFileError(
            errno.EPERM, f"{path} is readable by others: chmod 600 it to use it", str(path)
        )
    try:
        entry = netrc.netrc(str(path)).authenticators(host)
    except (netrc.NetrcParseError, OSError) as exc:
        raise LocalFileError(errno.EINVAL, f"cannot parse {path}: {exc}", str(path)) from exc
    if entry is None:
        return None
    login, _, password = entry
    return login, password or ""


def load_cookies(path: Path) -> http.cookiejar.MozillaCookieJar:
    """A Netscape/Mozilla cookies.txt file (as written by curl, wget and browsers' exporters)."""
    import http.cookiejar

    jar = http.cookiejar.MozillaCookieJar(str(path))
    try:
        jar.load(ignore_discard=True, ignore_expires=True)
    except (OSError, http.cookiejar.LoadError) as exc:
        why = f"cannot load cookies from {path}: {exc}"
        raise LocalFileError(errno.EINVAL, why, str(path)) from exc
    now = time.time()
    for cookie in list(jar):
        if cookie.expires == 0:  # curl and browsers write session cookies with expiry 0
            cookie.expires, cookie.discard = None, True
        elif cookie.expires is not None and cookie.expires < now:
            jar.clear(cookie.domain, cookie.path, cookie.name)
    return jar


@dataclass(frozen=True)
class Identity:
    """The credentials of one download and where they may go."""

    home: tuple[str, str, int]
    """The origin of the URL the user gave: credentials are only ever sent there."""
    authorization: str | None = None
    cookie: str | None = None
    """A ``Cookie`` header the user gave (same rule as credentials)."""
    jar: http.cookiejar.CookieJar | None = None
    location_trusted: bool = False

    def headers_for(self, url: str) -> dict[str, str]:
        """The credential and cookie headers a request to ``url`` may carry."""
        headers: dict[str, str] = {}
        trusted = self.location_trusted or origin(url) == self.home
        if trusted and self.authorization is not None:
            headers["Authorization"] = self.authorization
        cookies = [self.cookie] if trusted and self.cookie else []
        if self.jar is not None:
            import urllib.request

            request = urllib.request.Request(url)
            self.jar.add_cookie_header(request)  # domain, path, secure and expiry rules
            from_jar = request.get_header("Cookie")
            if from_jar:
                cookies.append(from_jar)
        if cookies:
            headers["Cookie"] = "; ".join(cookies)
        return headers


def identity_for(
    url: str,
    headers: Mapping[str, str],
    *,
    user: str | None = None,
    use_netrc: bool = False,
    netrc_file: Path | None = None,
    cookies_file: Path | None = None,
    location_trusted: bool = False,
) -> tuple[str, dict[str, str], Identity]:
    """Split what the user gave into the URL to request (no userinfo), the headers every
    request may carry, and the credentials bound to the URL's origin.

    Precedence for ``Authorization``: an explicit header, then ``--user``, then the URL's
    userinfo, then netrc (curl's order).
    """
    clean_url, url_user, url_password = split_userinfo(url)
    plain = {k: v for k, v in headers.items() if k.lower() not in _CREDENTIAL_HEADERS}
    given = {k.lower(): v for k, v in headers.items() if k.lower() in _CREDENTIAL_HEADERS}
    authorization = given.get("authorization")
    if authorization is None and user is not None:
        name, sep, password = user.partition(":")
        if not sep:
            raise UsageError("--user needs USER:PASSWORD")
        authorization = basic_auth(name, password)
    if authorization is None and url_user is not None:
        authorization = basic_auth(url_user, url_password or "")
    if authorization is None and (use_netrc or netrc_file is not None):
        login = netrc_login(origin(clean_url)[1], netrc_file)
        if login is not None:
            authorization = basic_auth(*login)
    jar = load_cookies(cookies_file) if cookies_file is not None else None
    identity = Identity(
        home=origin(clean_url),
        authorization=authorization,
        cookie=given.get("cookie"),
        jar=jar,
        location_trusted=location_trusted,
    )
    return clean_url, plain, identity
