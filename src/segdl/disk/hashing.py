"""Hashing a download's file as it is written: the digest check of
:class:`~segdl.core.digests.Expected`, fed by a background thread reading the written prefix."""

from __future__ import annotations

import hashlib
import os
import threading

from segdl.core.digests import DIGEST_BYTES, Expected, verify
from segdl.core.errors import IntegrityError, LocalFileError


class PrefixHasher:
    """Hashes a file's contiguous prefix as it grows, in a background thread, reading with
    os.pread so it never disturbs writers."""

    def __init__(self, algorithm: str, fd: int, *, chunk_bytes: int = 1 << 20) -> None:
        if algorithm not in DIGEST_BYTES:
            raise ValueError(f"unsupported digest algorithm {algorithm!r}")
        if chunk_bytes <= 0:
            raise ValueError("chunk_bytes must be positive")
        # MD5 and SHA-1 here check integrity only; FIPS builds refuse them otherwise.
        self._hash = hashlib.new(algorithm, usedforsecurity=algorithm not in ("md5", "sha1"))
        self._fd = fd
        self._chunk_bytes = chunk_bytes
        self._cond = threading.Condition()
        self._available = 0  # bytes [0, _available) are written (guarded by _cond)
        self._hashed = 0  # bytes [0, _hashed) are in _hash (written by the thread only)
        self._final: int | None = None  # set by finish(): hash exactly this much, then stop
        self._stopped = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="segdl-prefix-hash", daemon=True)
        self._thread.start()

    @property
    def hashed_bytes(self) -> int:
        """Bytes [0, n) are already in the digest: they will not be read again."""
        return self._hashed

    def advance_to(self, offset: int) -> None:
        """Record that bytes [0, offset) are written; smaller offsets than before are ignored."""
        with self._cond:
            if offset > self._available:
                self._available = offset
                self._cond.notify()

    def finish(self, size_bytes: int) -> bytes:
        """Hash through ``size_bytes`` (all of it written) and return the digest."""
        with self._cond:
            if self._stopped:
                raise RuntimeError("PrefixHasher is already finished or closed")
            self._final = size_bytes
            self._cond.notify()
        self._thread.join()
        with self._cond:
            self._stopped = True
        if self._error is not None:
            raise self._error
        return self._hash.digest()

    def close(self) -> None:
        """Stop without a result; safe to call more than once, and after :meth:`finish`."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join()

    def _run(self) -> None:
        try:
            while (end := self._next_end()) is not None:
                self._hash_to(end)
        except OSError as exc:
            self._error = LocalFileError(exc.errno, f"reading to hash: {exc.strerror}")
            self._error.__cause__ = exc
        except Exception as exc:  # a thread boundary: finish() re-raises it
            self._error = exc

    def _next_end(self) -> int | None:
        """Wait for unhashed bytes; where to hash to, or None when there is nothing more."""
        with self._cond:
            while True:
                if self._stopped:
                    return None
                if self._final is not None and self._hashed >= self._final:
                    if self._hashed > self._final:
                        raise IntegrityError(
                            f"{self._hashed} bytes were reported written, "
                            f"but the file is {self._final} bytes"
                        )
                    return None
                limit = self._available if self._final is None else self._final
                if limit > self._hashed:
                    return min(limit, self._hashed + self._chunk_bytes)
                self._cond.wait()

    def _hash_to(self, end: int) -> None:
        """Read and hash [_hashed, end) outside the lock."""
        while self._hashed < end:
            data = os.pread(self._fd, end - self._hashed, self._hashed)
            if not data:
                raise IntegrityError(f"file ends at {self._hashed} bytes, before {end}")
            self._hash.update(data)
            self._hashed += len(data)


class DigestCheck:
    """The one owner of a download's digest check: the hasher reading the file's written
    prefix in the background, begun again from byte 0 when those bytes are rewritten (one
    plain stream after ranges), and the verdict on the whole file."""

    def __init__(self, expected: Expected, fd: int) -> None:
        self.expected = expected
        self._fd = fd
        self._hasher = PrefixHasher(expected.algorithm, fd)

    @property
    def hashed_bytes(self) -> int:
        """Bytes [0, n) are hashed: a checkpoint may drop their pages from the cache."""
        return self._hasher.hashed_bytes

    def advance_to(self, offset: int) -> None:
        self._hasher.advance_to(offset)

    def restart(self) -> None:
        """The file is written again from byte 0: hash it again from there."""
        self._hasher.close()
        self._hasher = PrefixHasher(self.expected.algorithm, self._fd)

    def verify(self, size_bytes: int) -> None:
        """Raise IntegrityError unless the file's ``size_bytes`` bytes match."""
        verify(self.expected, self._hasher.finish(size_bytes))

    def close(self) -> None:
        """Stop hashing; safe after :meth:`verify` and more than once."""
        self._hasher.close()
