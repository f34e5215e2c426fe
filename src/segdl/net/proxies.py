"""Which proxy a request goes through: the one asked for, or the environment's, unless NO_PROXY.

Pure: no sockets, no DNS, no ``os.environ`` (the environment is passed in). The rules follow
curl and Python's ``urllib.request`` (which requests uses), where they agree:

* ``http_proxy`` for ``http://`` URLs, ``https_proxy`` for ``https://``, ``all_proxy`` for
  both when the scheme's own variable is unset; the lowercase name wins over the uppercase
  one, and an empty value counts as unset (curl's ``curl_getenv``).
* ``HTTP_PROXY`` in uppercase is ignored when ``REQUEST_METHOD`` is set: a CGI program gets
  the client's ``Proxy:`` header as ``HTTP_PROXY`` (httpoxy, CVE-2016-5385). Python does
  exactly this; curl ignores ``HTTP_PROXY`` always.
* ``no_proxy`` (or ``NO_PROXY``) is a comma or space separated list: ``*`` (every host), host
  names matching themselves and their subdomains (a leading ``.`` or ``*.`` is allowed),
  IP addresses, IPv4/IPv6 networks in CIDR form, and any of these with ``:port``
  (IPv6 as ``[addr]:port``). IP entries match only URLs written with that IP: no DNS.
* A proxy given without a scheme is an HTTP proxy; without a port it is on port 1080
  (443 for ``https://``), as in curl.

Errors about a proxy (:func:`proxy_error`) name it as ``scheme://host:port``, never with the
user name or password it was given.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from segdl.core.errors import (
    ConnectError,
    NetworkError,
    ProxyAuthError,
    TimeoutError_,
    UsageError,
    shown,
)
from segdl.net.origins import DEFAULT_PORTS

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

SOCKS_SCHEMES = frozenset({"socks4", "socks4a", "socks5", "socks5h"})
PROXY_SCHEMES = frozenset({"http", "https"}) | SOCKS_SCHEMES
_DEFAULT_PROXY_PORTS = {"https": 443}  # everything else: 1080, curl's default
# Patterns compiled on first use, by re's own cache (start-up: most runs have no proxy).
_SEPARATORS = r"[\s,]+"
# http.client's (and urllib3's copy of) a refused CONNECT: "Tunnel connection failed: 407 …"
_TUNNEL_FAILED = r"Tunnel connection failed: (\d{3})\s*(.*)"
# PySocks: a SOCKS server's reply code and its meaning (RFC 1928 §6), "0x05: Connection refused"
_SOCKS_REPLY = r"(0x[0-9a-fA-F]{2}): (.+)"


@dataclass(frozen=True, slots=True)
class ProxyURL:
    """A parsed proxy address; its credentials never show in ``str``, ``repr`` or messages."""

    scheme: str
    host: str  # IPv6 without brackets
    port: int
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @property
    def socks(self) -> bool:
        return self.scheme in SOCKS_SCHEMES

    @property
    def redacted(self) -> str:
        """``scheme://host:port``: safe for messages and logs."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def __str__(self) -> str:
        return self.redacted


def parse_proxy(text: str) -> ProxyURL:
    """Parse a proxy URL (``socks5h://user:pass@host:1080``); UsageError if it is not one."""
    text = text.strip()
    if "://" not in text:
        text = "http://" + text
    safe = shown(text, no_path=True)
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:  # not chained: urllib's message may quote a piece of the password
        hint = " (percent-encode / : @ in a user name or password)" if "@" in text else ""
        raise UsageError(f"invalid proxy URL {safe!r}: bad host or port{hint}") from None
    scheme = parts.scheme.lower()
    if scheme not in PROXY_SCHEMES:
        known = ", ".join(sorted(PROXY_SCHEMES))
        raise UsageError(f"unsupported proxy scheme {scheme!r} in {safe!r} (known: {known})")
    if not parts.hostname:
        raise UsageError(f"invalid proxy URL {safe!r}: no host")
    return ProxyURL(
        scheme=scheme,
        host=parts.hostname,
        port=port if port is not None else _DEFAULT_PROXY_PORTS.get(scheme, 1080),
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def proxy_for(
    url: str, *, explicit: str | None, environ: Mapping[str, str], use_env: bool
) -> str | None:
    """The proxy URL to use for ``url``, or None to connect directly.

    ``explicit`` wins over the environment; an empty ``explicit`` means "no proxy at all".
    With ``use_env`` false the environment is not read at all, NO_PROXY included; with it
    true, NO_PROXY applies to ``explicit`` too (as curl applies it to ``--proxy``).
    """
    if explicit == "":
        return None
    if use_env and bypass(url, env_value(environ, "no_proxy")):
        return None
    if explicit is not None:
        return explicit
    if not use_env:
        return None
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:  # "Invalid IPv6 URL" (say, a Location of "http://[x/"): no proxy to
        return None  # choose; the request fails on the URL itself (found by bench/fuzz.py)
    if scheme not in DEFAULT_PORTS:
        return None
    return env_value(environ, f"{scheme}_proxy") or env_value(environ, "all_proxy")


def env_value(environ: Mapping[str, str], name: str) -> str | None:
    """``name`` in lowercase, else in uppercase; empty counts as unset; httpoxy-safe."""
    value = environ.get(name.lower(), "").strip()
    if value:
        return value
    if name.lower() == "http_proxy" and "REQUEST_METHOD" in environ:
        return None  # CVE-2016-5385: a CGI request's "Proxy:" header arrives as HTTP_PROXY
    return environ.get(name.upper(), "").strip() or None


def bypass(url: str, no_proxy: str | None) -> bool:
    """Whether ``url`` matches an entry of ``no_proxy`` and so goes direct."""
    if not no_proxy:
        return False
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
    except ValueError:  # "Invalid IPv6 URL": no host to match (found by bench/fuzz.py)
        return False
    if not host:
        return False
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = DEFAULT_PORTS.get(parts.scheme.lower())
    host_ip = _ip(host)
    entries = (entry for entry in re.split(_SEPARATORS, no_proxy.lower()) if entry)
    return any(_matches(entry, host, port, host_ip) for entry in entries)


def _matches(entry: str, host: str, port: int | None, host_ip: IPAddress | None) -> bool:
    if entry == "*":
        return True
    split = _split_entry(entry)
    if split is None:
        return False  # a malformed entry matches nothing, rather than everything
    entry_host, entry_port = split
    if entry_port is not None and entry_port != port:
        return False
    if "/" in entry_host:
        try:
            network = ipaddress.ip_network(entry_host, strict=False)
        except ValueError:
            return False
        return host_ip is not None and host_ip in network
    entry_ip = _ip(entry_host)
    if entry_ip is not None or host_ip is not None:
        return entry_ip == host_ip  # no DNS: an IP matches only that IP, written as such
    name = entry_host.removeprefix("*.").lstrip(".").rstrip(".")
    return bool(name) and (host == name or host.endswith("." + name))


def _split_entry(entry: str) -> tuple[str, int | None] | None:
    """``host``, ``host:port``, ``[v6]``, ``[v6]:port``, bare IPv6 or CIDR -> (host, port)."""
    if entry.startswith("["):
        inside, bracket, after = entry[1:].partition("]")
        if not bracket:
            return None
        if not after:
            return inside, None
        return _with_port(inside, after.removeprefix(":")) if after.startswith(":") else None
    if "/" in entry or _ip(entry) is not None or ":" not in entry:
        return entry, None
    host, _, port_text = entry.rpartition(":")
    return None if ":" in host else _with_port(host, port_text)


def _with_port(host: str, port_text: str) -> tuple[str, int | None] | None:
    if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
        return None
    return host, int(port_text)


def _ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def proxy_error(url: str, proxy: ProxyURL | None, cause: BaseException) -> NetworkError:
    """One line about a proxy that failed us (``cause``: the innermost error), naming the
    proxy by its redacted address: never its user name or password."""
    name = f"proxy {proxy}" if proxy is not None else "proxy"
    text = str(cause)
    tunnel = re.search(_TUNNEL_FAILED, text)
    socks_reply = re.match(_SOCKS_REPLY, text)
    if isinstance(cause, ConnectionRefusedError):
        return ConnectError(url, f"{name} refused the connection")
    if isinstance(cause, TimeoutError):
        return TimeoutError_(url, f"{name} timed out")
    if isinstance(cause, socket.gaierror):
        return ConnectError(url, f"{name}: host name not found")
    if tunnel is not None and tunnel.group(1) in ("401", "407"):  # tinyproxy: 401, bad password
        return proxy_auth_failed(url, proxy, int(tunnel.group(1)))
    if tunnel is not None:
        reply = f"{tunnel.group(1)} {tunnel.group(2)}".strip()
        return ConnectError(url, f"{name} refused the tunnel to the server (CONNECT: {reply})")
    if "authentication" in text.lower():  # PySocks' SOCKS5AuthError
        return ProxyAuthError(url, f"{name} {_auth_problem(proxy)} ({text})")
    if socks_reply is not None:
        reason, code = socks_reply.group(2).lower(), socks_reply.group(1)
        return ConnectError(url, f"{name} could not reach the server: {reason} (SOCKS {code})")
    return ConnectError(url, f"{name} failed: {text}")


def proxy_auth_failed(url: str, proxy: ProxyURL | None, status: int) -> ProxyAuthError:
    """The proxy answered 407 (or 401) to us: about our route, not the file; final."""
    name = f"proxy {proxy}" if proxy is not None else "proxy"
    return ProxyAuthError(url, f"{name} {_auth_problem(proxy)} ({status})")


def _auth_problem(proxy: ProxyURL | None) -> str:
    sent = proxy is not None and proxy.username is not None
    return "rejected the credentials" if sent else "requires authentication"
