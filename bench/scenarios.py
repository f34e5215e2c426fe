"""The benchmark scenarios and the ideal time each one allows."""

from __future__ import annotations

from dataclasses import dataclass

from bench.shaper import ShaperConfig

MiB = 1 << 20
GiB = 1 << 30
CONNECTIONS = 16
_PER_CONN_RATE = 5_000_000.0  # 5 MB/s
_SHARED_RATE = 50_000_000.0  # 50 MB/s


@dataclass(frozen=True, slots=True)
class Scenario:
    """One network situation: a file size, and a shaper config (None: straight to nginx);
    `tls`: over HTTPS, every tool verifying the server against the benchmark's own CA."""

    name: str
    summary: str
    size_bytes: int
    shaper: ShaperConfig | None
    connections: int = CONNECTIONS
    tls: bool = False

    def aggregate_rate_bytes_per_s(self) -> float | None:
        """The most the link can carry with `connections` connections (None: unshaped)."""
        cfg = self.shaper
        if cfg is None:
            return None
        rates: list[float] = []
        if cfg.rate_bytes_per_s is not None:
            per_conn = (cfg.rate_for(i) for i in range(1, self.connections + 1))
            rates.append(sum(r for r in per_conn if r is not None))
        if cfg.shared_rate_bytes_per_s is not None:
            rates.append(cfg.shared_rate_bytes_per_s)
        return min(rates) if rates else None

    def ideal_s(self) -> float | None:
        """size / aggregate rate + one round trip; None where there is no meaningful ideal."""
        rate = self.aggregate_rate_bytes_per_s()
        if rate is None or self.shaper is None:
            return None
        return self.size_bytes / rate + 2 * self.shaper.delay_s

    def floor_s(self, start_s: float) -> float | None:
        """The earliest a program that needs ``start_s`` to start can finish: its start-up,
        then a fresh connection's two round trips before the first response byte (the
        handshake, which the shaper models, and the request), then every byte at the
        aggregate rate. None where there is no ideal.

        It holds for any tool, whatever it does about the size-discovery round trip (it
        counts none) or the end game (it counts none): a target below ``floor_s / ideal_s``
        cannot be met by a process that needs ``start_s`` before its first ``connect``."""
        rate = self.aggregate_rate_bytes_per_s()
        if rate is None or self.shaper is None:
            return None
        return start_s + 2 * (2 * self.shaper.delay_s) + self.size_bytes / rate


def format_size(size_bytes: int) -> str:
    """1073741824 -> '1 GiB', 104857600 -> '100 MiB', 1000 -> '1000 B'."""
    for unit, factor in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if size_bytes >= factor and size_bytes % factor == 0:
            return f"{size_bytes // factor} {unit}"
    return f"{size_bytes} B"


def build_scenarios(quick: bool) -> dict[str, Scenario]:
    """All scenarios by name; `quick` shrinks the files for a smoke run."""
    raw_size = 16 * MiB if quick else GiB
    shaped_size = 4 * MiB if quick else 100 * MiB
    per_conn = ShaperConfig(rate_bytes_per_s=_PER_CONN_RATE, delay_s=0.020)
    slow4 = ShaperConfig(
        rate_bytes_per_s=_PER_CONN_RATE, delay_s=0.020, slow_every=4, slow_factor=8.0
    )
    shared = ShaperConfig(shared_rate_bytes_per_s=_SHARED_RATE, delay_s=0.025)
    items = [
        Scenario("raw", f"{format_size(raw_size)}, loopback, no proxy", raw_size, None),
        Scenario("per-conn", f"{format_size(shaped_size)}, 5 MB/s per conn, 40 ms RTT",
                 shaped_size, per_conn),
        Scenario("slow4", f"{format_size(shaped_size)}, 5 MB/s per conn, every 4th 8x slower, "
                 "40 ms RTT", shaped_size, slow4),
        Scenario("shared", f"{format_size(shaped_size)}, one 50 MB/s line shared, 50 ms RTT",
                 shaped_size, shared),
        Scenario("https", f"{format_size(raw_size)}, loopback, HTTPS, no proxy", raw_size, None,
                 tls=True),
    ]  # fmt: skip
    return {s.name: s for s in items}
