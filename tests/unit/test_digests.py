"""Expected digests from the user and from hostile headers; hashing a file as it is written."""

from __future__ import annotations

import base64
import hashlib
import os
import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from segdl.core.digests import Expected, from_headers, parse_checksum_option, verify
from segdl.core.errors import IntegrityError, UsageError
from segdl.disk.hashing import PrefixHasher

BODY = b"hello, segdl\n"
MD5 = hashlib.md5(BODY).digest()
SHA1 = hashlib.sha1(BODY).digest()
SHA256 = hashlib.sha256(BODY).digest()
SHA512 = hashlib.sha512(BODY).digest()


def b64(digest: bytes) -> str:
    """Standard padded base64, as servers send it."""
    return base64.b64encode(digest).decode("ascii")


def fields(**values: str | list[str]) -> Callable[[str], list[str]]:
    """A header lookup over {Name_With_Underscores: value or values}, case-insensitive."""
    table = {
        name.replace("_", "-").lower(): [v] if isinstance(v, str) else v
        for name, v in values.items()
    }
    return lambda name: table.get(name.lower(), [])


# --- --checksum ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "algorithm", "digest"),
    [
        (f"md5={MD5.hex()}", "md5", MD5),
        (f"MD5={MD5.hex().upper()}", "md5", MD5),
        (f"sha-1={SHA1.hex()}", "sha1", SHA1),
        (f"sha1={SHA1.hex()}", "sha1", SHA1),
        (f"sha-256={SHA256.hex()}", "sha256", SHA256),
        (f"sha256={SHA256.hex()}", "sha256", SHA256),
        (f"SHA-256={SHA256.hex()}", "sha256", SHA256),
        (f"sha-512={SHA512.hex()}", "sha512", SHA512),
        (f"Sha512={SHA512.hex()}", "sha512", SHA512),
    ],
)
def test_checksum_option_accepted(text: str, algorithm: str, digest: bytes) -> None:
    """Every documented spelling, in any case, parses to the hashlib name and raw bytes."""
    expected = parse_checksum_option(text)
    assert expected == Expected(algorithm, digest, "--checksum")
    assert expected.hex() == digest.hex()


@pytest.mark.parametrize(
    "text",
    [
        "",
        SHA256.hex(),  # no algorithm
        f"sha256:{SHA256.hex()}",
        "sha256=",
        f"sha256={SHA256.hex()[:-1]}",  # one digit short
        f"sha256={SHA256.hex()}0",  # one digit long
        f"sha256={SHA256.hex()[:-2]}",  # one byte short
        f"sha256={SHA512.hex()}",  # another algorithm's length
        f"md5={SHA256.hex()}",
        f"sha256={SHA256.hex()[:-1]}g",  # not hex
        f"sha256= {SHA256.hex()[1:]}",  # whitespace, which bytes.fromhex would skip
        f"sha256={SHA256.hex()[:-1]}\n",
        f"sha256={SHA256.hex()[:-1]}٣",  # a non-ASCII digit
        f"sha256=0x{SHA256.hex()[2:]}",
        f"sha3-256={SHA256.hex()}",  # unknown algorithm
        f"crc32={SHA256.hex()}",
        f"sha_256={SHA256.hex()}",
        f" sha256={SHA256.hex()}",
        f"sha256 ={SHA256.hex()}",
        f"\u017fha256={SHA256.hex()}",  # long s: lower() of non-ASCII is not ASCII-insensitive
    ],
)
def test_checksum_option_rejected(text: str) -> None:
    """Anything but ALGO=HEX of the algorithm's exact length is a UsageError naming the input."""
    with pytest.raises(UsageError, match="--checksum"):
        parse_checksum_option(text)


def test_checksum_option_error_says_the_length() -> None:
    """A wrong-length digest error tells the user how many digits the algorithm needs."""
    with pytest.raises(UsageError, match="64 hex digits, not 63"):
        parse_checksum_option(f"sha-256={SHA256.hex()[:-1]}")


def test_expected_rejects_wrong_length() -> None:
    """An Expected cannot hold a digest of the wrong size for its algorithm."""
    with pytest.raises(ValueError):
        Expected("sha256", MD5, "--checksum")
    with pytest.raises(ValueError):
        Expected("sha3_256", SHA256, "--checksum")


# --- Repr-Digest --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "algorithm", "digest"),
    [
        (f"sha-256=:{b64(SHA256)}:", "sha256", SHA256),
        (f"sha-512=:{b64(SHA512)}:", "sha512", SHA512),
        (f"sha-256=:{b64(SHA256)}:, sha-512=:{b64(SHA512)}:", "sha512", SHA512),
        (f"sha-512=:{b64(SHA512)}:,sha-256=:{b64(SHA256)}:", "sha512", SHA512),
        (f"  sha-256=:{b64(SHA256)}:  ", "sha256", SHA256),
        (f"sha-256=:{b64(SHA256).rstrip('=')}:", "sha256", SHA256),  # unpadded is tolerated
        (f"sha-256=:{b64(SHA256)}:;foo=1;bar", "sha256", SHA256),  # parameters ignored
        (f"unixsum=30637, sha-256=:{b64(SHA256)}:", "sha256", SHA256),
        (
            f'crc32c=:AAAAAA==:, x="a\\"b", y=?1, z=(1 2.5 tok), w, sha-256=:{b64(SHA256)}:',
            "sha256",
            SHA256,
        ),
        (f"md5=:{b64(MD5)}:, sha-256=:{b64(SHA256)}:", "sha256", SHA256),
        (f"sha-256=:{b64(SHA512)}:, sha-512=:{b64(SHA512)}:", "sha512", SHA512),
        # a known algorithm with the wrong length or type is dropped, the other one used
        (f"sha-512=:{b64(SHA256)}:, sha-256=:{b64(SHA256)}:", "sha256", SHA256),
        (f"sha-512=?1, sha-256=:{b64(SHA256)}:", "sha256", SHA256),
        (f"sha-512=(:{b64(SHA512)}:), sha-256=:{b64(SHA256)}:", "sha256", SHA256),
        (f"sha-256=:{b64(MD5)}:, sha-256=:{b64(SHA256)}:", "sha256", SHA256),  # last wins
    ],
)
def test_repr_digest_accepted(value: str, algorithm: str, digest: bytes) -> None:
    """RFC 9530 §3 Repr-Digest yields its strongest known, well-formed algorithm."""
    assert from_headers(fields(Repr_Digest=value), full_response=False) == Expected(
        algorithm, digest, "Repr-Digest"
    )


def test_repr_digest_field_lines_are_combined() -> None:
    """Two Repr-Digest field lines form one dictionary (RFC 8941 §4.2)."""
    lines = [f"sha-256=:{b64(SHA256)}:", f"sha-512=:{b64(SHA512)}:"]
    found = from_headers(fields(Repr_Digest=lines), full_response=False)
    assert found == Expected("sha512", SHA512, "Repr-Digest")


@pytest.mark.parametrize(
    "value",
    [
        "",
        f"SHA-256=:{b64(SHA256)}:",  # keys are lowercase
        f"sha-256={b64(SHA256)}",  # a token at most, and "=" padding ends it
        f"sha-256=:{b64(SHA256)}",  # unterminated
        f"sha-256=:{b64(SHA256)[:-2]}!=:",  # outside the base64 alphabet
        f"sha-256=:{b64(SHA256)[:5]}:",  # a length base64 cannot have
        f"sha-256=:{b64(SHA256)}:,",  # trailing comma
        f"sha-256=:{b64(SHA256)}:,, sha-512=:{b64(SHA512)}:",
        f"sha-256=:{b64(SHA256)}: sha-512=:{b64(SHA512)}:",  # missing comma
        f"sha-256 = :{b64(SHA256)}:",
        f"sha-256=:{b64(SHA256)}:;Foo",  # parameter keys are lowercase too
        f"sha-256=:{b64(MD5)}:",  # wrong length
        f"sha-256=:{b64(SHA512)}:",
        f"md5=:{b64(MD5)}:",  # not an RFC 9530 "Active" algorithm
        f"sha=:{b64(SHA1)}:",
        f"sha-256=:{b64(SHA256)}:, x=1234567890123456",  # integer too long: whole field fails
        f"sha-256=:{b64(SHA256)}:, x=1.2345",
        f'sha-256=:{b64(SHA256)}:, x="\u00e9"',
        f"sha-256=:{b64(SHA256)}:, x=(1",
        f"sha-256=:{b64(SHA256)}:, é=1",
        f"sha-256=\t:{b64(SHA256)}:",
    ],
)
def test_repr_digest_malformed_is_ignored(value: str) -> None:
    """A Repr-Digest that fails RFC 8941 parsing or has no usable digest is ignored, not raised."""
    assert from_headers(fields(Repr_Digest=value), full_response=True) is None


# --- legacy Digest ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "algorithm", "digest"),
    [
        (f"SHA-256={b64(SHA256)}", "sha256", SHA256),
        (f"sha-256={b64(SHA256)}", "sha256", SHA256),
        (f"SHA-512={b64(SHA512)}", "sha512", SHA512),
        (f"MD5={b64(MD5)}", "md5", MD5),
        (f"SHA={b64(SHA1)}", "sha1", SHA1),  # RFC 3230 §4.1.1: "SHA" is SHA-1
        (f"MD5={b64(MD5)}, SHA-256={b64(SHA256)}", "sha256", SHA256),
        (f"SHA-512={b64(SHA512)},SHA-256={b64(SHA256)},MD5={b64(MD5)}", "sha512", SHA512),
        (f"UNIXsum=30637, , md5={b64(MD5)}", "md5", MD5),
        (f"SHA-512={b64(SHA256)}, SHA-256={b64(SHA256)}", "sha256", SHA256),  # bad one dropped
        (f"SHA-512=!!!, SHA-256={b64(SHA256)}", "sha256", SHA256),
        (f"SHA-256={b64(SHA256)}, sha-256={b64(SHA256)}", "sha256", SHA256),  # same twice
        (f"SHA-512={b64(SHA512)}, SHA-512={b64(SHA256)}, MD5={b64(MD5)}", "md5", MD5),
    ],
)
def test_legacy_digest_accepted(value: str, algorithm: str, digest: bytes) -> None:
    """RFC 3230 Digest yields its strongest known, well-formed, unambiguous algorithm."""
    assert from_headers(fields(Digest=value), full_response=False) == Expected(
        algorithm, digest, "Digest"
    )


@pytest.mark.parametrize(
    "value",
    [
        "",
        "SHA-256",
        f"SHA-256 = {b64(SHA256)}",
        f"SHA 256={b64(SHA256)}",
        f"={b64(SHA256)}",
        f"SHA-256={SHA256.hex()}",  # hex is not the RFC 3230 encoding
        f"SHA-256={b64(SHA256)[:-2]}",  # wrong length
        f"SHA-256={b64(SHA256)}, MD5",  # one bad element spoils the field
        f"CRC32c={b64(b'1234')}",
        f"SHA-256={b64(SHA256)[:10]}\u00e9{b64(SHA256)[11:]}",
    ],
)
def test_legacy_digest_malformed_is_ignored(value: str) -> None:
    """A Digest with no usable, well-formed known algorithm is ignored, not raised."""
    assert from_headers(fields(Digest=value), full_response=True) is None


# --- Content-MD5 and the preference order -------------------------------------------------


@pytest.mark.parametrize(
    ("values", "found"),
    [
        ([b64(MD5)], MD5),
        ([f" {b64(MD5)} "], MD5),
        ([b64(MD5), b64(MD5)], MD5),
        ([b64(MD5), b64(SHA1)[:24]], None),  # conflicting
        ([b64(SHA1)], None),
        ([MD5.hex()], None),
        ([""], None),
        ([b64(MD5)[:-3] + "*=="], None),
    ],
)
def test_content_md5(values: list[str], found: bytes | None) -> None:
    """RFC 1864 Content-MD5 is base64 of 16 bytes, one value; anything else is ignored."""
    expected = None if found is None else Expected("md5", found, "Content-MD5")
    assert from_headers(fields(Content_MD5=values), full_response=True) == expected


def test_content_md5_ignored_for_partial_response() -> None:
    """Content-MD5 covers one message's body: for a 206 that is a part, never the file."""
    assert from_headers(fields(Content_MD5=b64(MD5)), full_response=False) is None


def test_content_digest_never_used() -> None:
    """Content-Digest (RFC 9530 §2) describes the content, a part for a 206: ignored."""
    headers = fields(Content_Digest=f"sha-256=:{b64(SHA256)}:")
    assert from_headers(headers, full_response=True) is None


def test_preference_order() -> None:
    """Repr-Digest beats Digest beats Content-MD5, even against a stronger algorithm."""
    repr_digest = f"sha-256=:{b64(SHA256)}:"
    digest = f"SHA-512={b64(SHA512)}"
    content_md5 = b64(MD5)
    everything = fields(Repr_Digest=repr_digest, Digest=digest, Content_MD5=content_md5)
    assert from_headers(everything, full_response=True) == Expected("sha256", SHA256, "Repr-Digest")
    no_repr = fields(Digest=digest, Content_MD5=content_md5)
    assert from_headers(no_repr, full_response=True) == Expected("sha512", SHA512, "Digest")


def test_malformed_kind_falls_through_to_next() -> None:
    """A malformed Repr-Digest and Digest leave the next usable kind in charge."""
    headers = fields(Repr_Digest=f"sha-256=:{b64(SHA256)}", Digest="SHA-256", Content_MD5=b64(MD5))
    assert from_headers(headers, full_response=True) == Expected("md5", MD5, "Content-MD5")
    assert from_headers(headers, full_response=False) is None


def test_no_headers() -> None:
    """No digest header at all means no expectation."""
    assert from_headers(fields(), full_response=True) is None


# --- verify -------------------------------------------------------------------------------


def test_verify() -> None:
    """A matching digest passes; a different one raises with both digests in hex."""
    expected = Expected("sha256", SHA256, "Repr-Digest")
    verify(expected, SHA256)
    wrong = hashlib.sha256(b"other").digest()
    message = f"Repr-Digest sha256 mismatch: expected {SHA256.hex()}, got {wrong.hex()}"
    with pytest.raises(IntegrityError) as caught:
        verify(expected, wrong)
    assert str(caught.value) == message
    with pytest.raises(IntegrityError):
        verify(expected, SHA256[:16])


# --- PrefixHasher -------------------------------------------------------------------------


@pytest.fixture
def fd(tmp_path: Path) -> Iterator[int]:
    """A read-write descriptor on an empty temporary file."""
    descriptor = os.open(tmp_path / "data.part", os.O_RDWR | os.O_CREAT, 0o600)
    yield descriptor
    os.close(descriptor)


def hasher_threads() -> list[threading.Thread]:
    """The PrefixHasher threads still alive."""
    return [t for t in threading.enumerate() if t.name == "segdl-prefix-hash"]


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "sha256", "sha512"])
def test_prefix_hasher_concurrent_writers(fd: int, algorithm: str) -> None:
    """Writers in random order and stale, out-of-order advance_to calls from many threads still
    give the hash of the whole file, and nothing beyond the written prefix is ever read."""
    rng = random.Random(algorithm)
    data = rng.randbytes(3 * 65536 + 12345)
    os.ftruncate(fd, len(data))  # reading ahead would hash these zeros, not the data
    blocks = [(start, min(start + 7001, len(data))) for start in range(0, len(data), 7001)]
    rng.shuffle(blocks)
    done: set[int] = set()
    prefix = 0
    lock = threading.Lock()
    hasher = PrefixHasher(algorithm, fd, chunk_bytes=4099)

    def writer(mine: list[tuple[int, int]], seed: int) -> None:
        nonlocal prefix
        local = random.Random(seed)
        for start, end in mine:
            os.pwrite(fd, data[start:end], start)
            with lock:
                done.add(start)
                while prefix < len(data) and prefix in done:
                    prefix = min(prefix + 7001, len(data))
                known = prefix
            hasher.advance_to(local.randint(0, known))  # a stale report is harmless
            hasher.advance_to(known)

    threads = [threading.Thread(target=writer, args=(blocks[i::6], i)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert prefix == len(data)
    assert hasher.finish(len(data)) == hashlib.new(algorithm, data).digest()
    assert not hasher_threads()


def test_prefix_hasher_finish_without_advance(fd: int) -> None:
    """finish() alone hashes the whole file; an empty file hashes as empty."""
    data = os.urandom(100_000)
    os.pwrite(fd, data, 0)
    assert (
        PrefixHasher("sha256", fd, chunk_bytes=999).finish(len(data))
        == hashlib.sha256(data).digest()
    )
    assert PrefixHasher("sha256", fd).finish(0) == hashlib.sha256(b"").digest()


def test_prefix_hasher_hashes_only_size_bytes(fd: int) -> None:
    """finish(size) stops at size even when the file (and advance_to) went further."""
    os.pwrite(fd, b"abcdef", 0)
    hasher = PrefixHasher("md5", fd)
    assert hasher.finish(4) == hashlib.md5(b"abcd").digest()


def test_prefix_hasher_does_not_move_file_offset(fd: int) -> None:
    """Hashing uses pread: a writer's file offset is left where it was."""
    os.write(fd, b"x" * 5000)
    os.lseek(fd, 123, os.SEEK_SET)
    hasher = PrefixHasher("sha1", fd, chunk_bytes=1000)
    hasher.advance_to(5000)
    assert hasher.finish(5000) == hashlib.sha1(b"x" * 5000).digest()
    assert os.lseek(fd, 0, os.SEEK_CUR) == 123


def test_prefix_hasher_short_file(fd: int) -> None:
    """A file shorter than the size given to finish() is an IntegrityError, not a wrong hash."""
    os.pwrite(fd, b"abc", 0)
    with pytest.raises(IntegrityError):
        PrefixHasher("sha256", fd).finish(10)


def test_prefix_hasher_read_error(tmp_path: Path) -> None:
    """An unreadable descriptor surfaces from finish() as an OSError."""
    descriptor = os.open(tmp_path / "w", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.write(descriptor, b"abc")
        with pytest.raises(OSError):
            PrefixHasher("sha256", descriptor).finish(3)
    finally:
        os.close(descriptor)


def test_prefix_hasher_close_idempotent(fd: int) -> None:
    """close() stops the thread, may be repeated, and a later finish() refuses."""
    os.pwrite(fd, b"abc", 0)
    hasher = PrefixHasher("sha256", fd)
    hasher.advance_to(3)
    hasher.close()
    hasher.close()
    assert not hasher_threads()
    with pytest.raises(RuntimeError):
        hasher.finish(3)
    finished = PrefixHasher("sha256", fd)
    finished.finish(3)
    finished.close()
    with pytest.raises(RuntimeError):
        finished.finish(3)


def test_prefix_hasher_rejects_bad_arguments(fd: int) -> None:
    """Unknown algorithms and non-positive chunk sizes are refused up front."""
    with pytest.raises(ValueError):
        PrefixHasher("sha3_256", fd)
    with pytest.raises(ValueError):
        PrefixHasher("sha256", fd, chunk_bytes=0)
