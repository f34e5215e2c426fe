"""What the server saw: one frozen record per request, written when its response ends."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as received, and how its response went.

    ``status`` is 0 and ``body_bytes_sent`` 0 while the response is being decided (this is the
    form a ``Faults.when`` predicate receives); the logged record carries the final values.
    """

    method: str
    path: str
    target: str
    headers: tuple[tuple[str, str], ...]
    connection_id: int
    status: int
    body_bytes_sent: int
    started_s: float

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive), in the order received."""
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]

    @property
    def range(self) -> str | None:
        """The Range header as received, or None."""
        return self.header("Range")
