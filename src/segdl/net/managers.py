"""urllib3 pool managers: direct, through an http(s) proxy (``ProxyManager``, CONNECT for
https targets) or a SOCKS one (PySocks); TLS options. urllib3 only ever sees the redacted
proxy URL; credentials go in ``Proxy-Authorization``."""

from __future__ import annotations

import importlib.util
import os
import ssl
from collections.abc import Mapping
from typing import Any

import urllib3
import urllib3.connection

from segdl.core.errors import UsageError
from segdl.net.auth import basic_auth
from segdl.net.gate import HostGate
from segdl.net.proxies import ProxyURL
from segdl.net.urllib3_compat import POOL_CLASSES, gated_pool_classes, socks_pool_classes


def tls_options(ca_bundle: str | os.PathLike[str] | None, insecure: bool) -> dict[str, Any]:
    if insecure and ca_bundle is not None:
        raise UsageError("a CA bundle and insecure (no verification) exclude each other")
    if insecure:
        return {"cert_reqs": "CERT_NONE", "assert_hostname": False}
    if ca_bundle is None:
        return {}
    path = os.fspath(ca_bundle)
    try:  # a missing or unreadable bundle is the user's mistake, not a TLS failure per URL
        ssl.create_default_context(cafile=path)
    except OSError as exc:  # ssl.SSLError is an OSError
        tls_reason = exc.reason if isinstance(exc, ssl.SSLError) else None
        reason = tls_reason.lower().replace("_", " ") if tls_reason else exc.strerror or exc
        raise UsageError(f"cannot use CA bundle {path}: {reason}") from exc
    return {"cert_reqs": "CERT_REQUIRED", "ca_certs": path}


def pool_manager(
    proxy: ProxyURL | None,
    pool_kw: Mapping[str, Any],
    pool_classes: dict[str, type[urllib3.HTTPConnectionPool]] = POOL_CLASSES,
    gate: HostGate | None = None,
) -> urllib3.PoolManager:
    """``gate``: a SOCKS proxy's connections hold its slots too (``pool_classes`` are
    already gated for the others)."""
    manager: urllib3.PoolManager
    if proxy is None:
        manager = urllib3.PoolManager(**pool_kw)
    elif proxy.socks:
        return _socks_manager(proxy, pool_kw, gate)
    else:
        # Only the redacted URL goes to urllib3, so no urllib3 message can show the password.
        user, password = proxy.username, proxy.password or ""
        auth = {"Proxy-Authorization": basic_auth(user, password)} if user is not None else None
        manager = urllib3.ProxyManager(proxy.redacted, proxy_headers=auth, **pool_kw)
    manager.pool_classes_by_scheme = pool_classes
    return manager


def require_socks_support(proxy: ProxyURL) -> None:
    # Checked before importing: urllib3.contrib.socks warns when PySocks is missing.
    if proxy.socks and importlib.util.find_spec("socks") is None:
        raise UsageError(f"a {proxy.scheme}:// proxy needs PySocks: pip install 'segdl[socks]'")


def _socks_manager(
    proxy: ProxyURL, pool_kw: Mapping[str, Any], gate: HostGate | None
) -> urllib3.PoolManager:
    require_socks_support(proxy)
    from urllib3.contrib.socks import SOCKSProxyManager

    manager = SOCKSProxyManager(
        proxy.redacted, username=proxy.username, password=proxy.password, **pool_kw
    )
    classes = socks_pool_classes()
    manager.pool_classes_by_scheme = classes if gate is None else gated_pool_classes(gate, classes)
    return manager
