"""Host gates: when a connection to a host may be opened, and when a request may go.

A transport given a :class:`HostGate` asks it before opening a connection to a host and
tells it when that connection closes; asks it before every request (the host may be paused);
asks it whether an idle connection may stay open for reuse (another worker may want its
slot); and tells it when a server asks everyone to wait (429 or 503 with ``Retry-After``).

In one process no gate is needed: the urllib3 pools cap connections per host and each range
waits out its own ``Retry-After``; a transport without a gate behaves exactly so. A gate is
how a cap and a pause are held across processes: :mod:`segdl.cluster` hands each worker's
batch one whose connection slots are leased from a single owner for the whole cluster.

Hosts are named by :func:`gate_key` (``host:port``, lower case, no IPv6 brackets), the same
for a connection's pool and for a request's URL.
"""

from __future__ import annotations

from typing import Protocol


class HostGate(Protocol):
    """What a transport consults; implementations must be thread-safe."""

    def connect(self, host: str, timeout_s: float | None = None) -> bool:
        """Before a connection to ``host`` is opened: True once one more may be open; False
        if ``timeout_s`` passed first, or sooner if a connection to ``host`` was put back
        idle meanwhile (:meth:`keep_idle` said yes): the caller may take that one instead."""
        ...

    def disconnected(self, host: str) -> None:
        """A connection :meth:`connect` admitted has closed."""
        ...

    def keep_idle(self, host: str) -> bool:
        """Whether an idle connection to ``host`` may stay open for reuse; False: it is
        closed, which frees its slot for someone else."""
        ...

    def before_request(self, host: str) -> None:
        """Before any request to ``host``: return once it may go (no pause in force)."""
        ...

    def retry_after(self, host: str, delay_s: float) -> None:
        """``host`` asked for a pause of ``delay_s`` (429/503 with Retry-After)."""
        ...


def gate_key(host: str, port: int | None, scheme: str = "http") -> str:
    """``host:port`` as a gate names it."""
    name = host.lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    return f"{name}:{port or (443 if scheme == 'https' else 80)}"
