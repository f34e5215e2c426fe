"""What the finished file's digest should be (pure: :mod:`segdl.disk.hashing` hashes the file).

Where an expected digest comes from, in order of trust:

* ``--checksum ALGO=HEX`` from the user (:func:`parse_checksum_option`);
* ``Repr-Digest`` (RFC 9530 §3), the digest of the selected *representation*: the whole file
  even when the response is a 206;
* legacy ``Digest`` (RFC 3230 §4.3.2), the digest of the *instance*: also the whole file;
* ``Content-MD5`` (RFC 1864), the MD5 of *this message's body*: the whole file only for a full
  (non-206) response.

``Content-Digest`` (RFC 9530 §2) is never used: for a 206 it describes the part, not the file.
A server's malformed digest header is ignored, never raised: a wrong hint should cost the check,
not the download. :class:`segdl.disk.hashing.PrefixHasher` hashes the written prefix in a
background thread so that verifying a large file costs almost nothing after the last byte
arrives.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from segdl.core.errors import IntegrityError, UsageError

__all__ = ["Expected", "from_headers", "parse_checksum_option", "verify"]

log = logging.getLogger(__name__)

# hashlib name -> digest length in bytes.
DIGEST_BYTES = {"md5": 16, "sha1": 20, "sha256": 32, "sha512": 64}
# Weakest first, so max() by this order picks the strongest.
_STRENGTH = ("md5", "sha1", "sha256", "sha512")
_CHECKSUM_NAMES = {
    "md5": "md5",
    "sha-1": "sha1",
    "sha1": "sha1",
    "sha-256": "sha256",
    "sha256": "sha256",
    "sha-512": "sha512",
    "sha512": "sha512",
}
# RFC 9530 §7.2 registry: only the "Active" algorithms; md5 and sha are "Insecure" there.
_REPR_DIGEST_NAMES = {"sha-256": "sha256", "sha-512": "sha512"}
# RFC 3230 §4.1.1 names ("SHA" is SHA-1), plus SHA-256/SHA-512 from RFC 5843 §2.
_DIGEST_NAMES = {"md5": "md5", "sha": "sha1", "sha-256": "sha256", "sha-512": "sha512"}
# This module's patterns are compiled on first use, by re's own cache (start-up: most answers
# carry no digest to parse).
_HEX = r"(?a)[0-9A-Fa-f]+"


@dataclass(frozen=True, slots=True)
class Expected:
    """A digest the finished file must have, and who claimed it."""

    algorithm: str
    """hashlib name: ``md5``, ``sha1``, ``sha256`` or ``sha512``."""
    digest: bytes
    """The raw digest bytes."""
    source: str
    """Who said so: ``--checksum``, ``Repr-Digest``, ``Digest`` or ``Content-MD5``."""

    def __post_init__(self) -> None:
        if DIGEST_BYTES.get(self.algorithm) != len(self.digest):
            raise ValueError(f"{len(self.digest)} bytes is not a {self.algorithm} digest")

    def hex(self) -> str:
        """The digest as lowercase hex, the way ``sha256sum`` prints it."""
        return self.digest.hex()


def parse_checksum_option(text: str) -> Expected:
    """``--checksum ALGO=HEX`` as an :class:`Expected`; :class:`UsageError` if it is not one."""
    name, sep, hex_digest = text.partition("=")
    if not sep:
        raise UsageError(f"--checksum {text!r}: expected ALGO=HEX, e.g. sha256=<64 hex digits>")
    # isascii first: str.lower() maps some non-ASCII letters onto ASCII ones.
    algorithm = _CHECKSUM_NAMES.get(name.lower()) if name.isascii() else None
    if algorithm is None:
        raise UsageError(
            f"--checksum {text!r}: unknown algorithm {name!r} (use md5, sha-1, sha-256 or sha-512)"
        )
    want = 2 * DIGEST_BYTES[algorithm]
    # fullmatch, not bytes.fromhex: that one skips whitespace.
    if not re.fullmatch(_HEX, hex_digest):
        raise UsageError(f"--checksum {text!r}: the digest must be {want} hex digits (0-9, a-f)")
    if len(hex_digest) != want:
        raise UsageError(
            f"--checksum {text!r}: a {name} digest is {want} hex digits, not {len(hex_digest)}"
        )
    return Expected(algorithm, bytes.fromhex(hex_digest), "--checksum")


def from_headers(headers: Callable[[str], list[str]], *, full_response: bool) -> Expected | None:
    """The strongest trustworthy digest of the whole file the response's headers claim.

    ``headers(name)`` returns every field value of that name. ``full_response`` says the body
    is the whole representation (not a 206), which is when ``Content-MD5`` describes the file.
    """
    repr_digest = headers("Repr-Digest")
    if repr_digest:
        found = _strongest("Repr-Digest", _parse_repr_digest(", ".join(repr_digest)))
        if found is not None:
            return found
    digest = headers("Digest")
    if digest:
        found = _strongest("Digest", _parse_legacy_digest(", ".join(digest)))
        if found is not None:
            return found
    if full_response:  # RFC 1864 §1: it covers this body, which for a 206 is only a part
        content_md5 = headers("Content-MD5")
        if content_md5:
            return _parse_content_md5(content_md5)
    return None


def verify(expected: Expected, actual: bytes) -> None:
    """Raise :class:`IntegrityError` unless ``actual`` is the expected digest."""
    import hmac  # start-up: most files have no digest to check

    if not hmac.compare_digest(expected.digest, actual):
        raise IntegrityError(
            f"{expected.source} {expected.algorithm} mismatch: "
            f"expected {expected.hex()}, got {actual.hex()}"
        )


def _strongest(source: str, candidates: dict[str, bytes] | None) -> Expected | None:
    """The strongest candidate of the right length; None if there is none."""
    if candidates is None:
        return None
    for algorithm in reversed(_STRENGTH):
        digest = candidates.get(algorithm)
        if digest is None:
            continue
        if len(digest) == DIGEST_BYTES[algorithm]:
            return Expected(algorithm, digest, source)
        log.debug("ignoring %s %s: %d bytes is not a digest", source, algorithm, len(digest))
    return None


def _b64(text: str) -> bytes | None:
    """Strict base64 (RFC 4648 §4 alphabet); missing ``=`` padding tolerated, as RFC 8941
    §4.2.7 asks of parsers. None if it is not base64."""
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


# --- Repr-Digest: an RFC 8941 Structured Field Dictionary -----------------------------------
# RFC 8941 §3.2 key, and §3.3 bare items. Only byte sequences are kept; the other types are
# parsed only so that a member we do not know cannot make us misread one we do.
_KEY = r"(?a)[a-z*][a-z0-9_\-.*]*"
_BARE_ITEM = r"""(?ax)
        -?(?:[0-9]{1,12}\.[0-9]{1,3}|[0-9]{1,15})(?![0-9.])  # §3.3.1-2 integer, decimal
      | "(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*"        # §3.3.3 string
      | [A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*             # §3.3.4 token
      | :(?P<bytes>[A-Za-z0-9+/=]*):                        # §3.3.5 byte sequence
      | \?[01]                                              # §3.3.6 boolean
    """


class _NotStructured(ValueError):
    """The field is not a valid Structured Field; RFC 8941 §4.2: ignore all of it."""


def _parse_repr_digest(text: str) -> dict[str, bytes] | None:
    """RFC 9530 §3 ``Repr-Digest`` as {hashlib name: digest}; None if it does not parse.

    Unknown algorithms and parameters are ignored; a known one whose value is not a byte
    sequence is dropped.
    """
    try:
        members = _sf_dictionary(text)
    except _NotStructured as exc:
        log.debug("ignoring Repr-Digest %r: %s", text, exc)
        return None
    found: dict[str, bytes] = {}
    for key, value in members.items():
        algorithm = _REPR_DIGEST_NAMES.get(key)
        if algorithm is not None and value is not None:
            found[algorithm] = value
    return found


def _sf_dictionary(text: str) -> dict[str, bytes | None]:
    """RFC 8941 §4.2.2: each key with its byte-sequence value, or None for any other value."""
    members: dict[str, bytes | None] = {}
    pos = _skip(text, 0, " ")
    while pos < len(text):
        key = re.compile(_KEY).match(text, pos)
        if key is None:
            raise _NotStructured(f"no key at {pos}")
        pos = key.end()
        value: bytes | None = None
        if text.startswith("=", pos):
            if text.startswith("(", pos + 1):
                pos = _sf_inner_list(text, pos + 2)
            else:
                value, pos = _sf_bare_item(text, pos + 1)
        pos = _sf_parameters(text, pos)
        members[key.group()] = value  # §4.2.2: a repeated key overwrites
        pos = _skip(text, pos, " \t")
        if pos == len(text):
            break
        if text[pos] != ",":
            raise _NotStructured(f"expected ',' at {pos}")
        pos = _skip(text, pos + 1, " \t")
        if pos == len(text):
            raise _NotStructured("trailing comma")
    return members


def _skip(text: str, pos: int, chars: str) -> int:
    """The first position at or after ``pos`` not holding one of ``chars``."""
    while pos < len(text) and text[pos] in chars:
        pos += 1
    return pos


def _sf_bare_item(text: str, pos: int) -> tuple[bytes | None, int]:
    """One RFC 8941 §4.2.3.1 bare item at ``pos``: its bytes if a byte sequence, and the end."""
    item = re.compile(_BARE_ITEM).match(text, pos)
    if item is None:
        raise _NotStructured(f"no valid item at {pos}")
    encoded = item.group("bytes")
    if encoded is None:
        return None, item.end()
    value = _b64(encoded)
    if value is None:
        raise _NotStructured(f"bad base64 at {pos}")  # §4.2.7: parsing fails
    return value, item.end()


def _sf_inner_list(text: str, pos: int) -> int:
    """Skip an RFC 8941 §4.2.1.2 inner list whose ``(`` ends before ``pos``; return its end."""
    while True:
        pos = _skip(text, pos, " ")
        if text.startswith(")", pos):
            return pos + 1
        _, pos = _sf_bare_item(text, pos)
        pos = _sf_parameters(text, pos)
        if not text.startswith((" ", ")"), pos):
            raise _NotStructured(f"bad inner list at {pos}")


def _sf_parameters(text: str, pos: int) -> int:
    """Skip RFC 8941 §4.2.3.2 parameters at ``pos``; return where they end."""
    while text.startswith(";", pos):
        pos = _skip(text, pos + 1, " ")
        key = re.compile(_KEY).match(text, pos)
        if key is None:
            raise _NotStructured(f"no parameter key at {pos}")
        pos = key.end()
        if text.startswith("=", pos):
            _, pos = _sf_bare_item(text, pos + 1)
    return pos


# --- legacy Digest and Content-MD5 ----------------------------------------------------------
_TOKEN = r"(?a)[!#$%&'*+\-.^_`|~0-9A-Za-z]+"  # RFC 9110 §5.6.2


def _parse_legacy_digest(text: str) -> dict[str, bytes] | None:
    """RFC 3230 §4.3.2 ``Digest`` as {hashlib name: digest}; None if it does not parse.

    Algorithm names are case-insensitive (§4.1.1); unknown ones are ignored, and so is a known
    one that is not base64 or is given twice with different values.
    """
    found: dict[str, bytes] = {}
    conflicting: set[str] = set()
    for element in text.split(","):  # base64 has no commas
        element = element.strip(" \t")
        if not element:
            continue  # RFC 9110 §5.6.1: empty list elements are allowed
        name, sep, encoded = element.partition("=")
        if not sep or not re.fullmatch(_TOKEN, name):
            log.debug("ignoring Digest %r: bad element %r", text, element)
            return None
        algorithm = _DIGEST_NAMES.get(name.lower()) if name.isascii() else None
        if algorithm is None:
            continue
        value = _b64(encoded)
        if value is None:
            log.debug("ignoring Digest %s: %r is not base64", name, encoded)
        elif found.setdefault(algorithm, value) != value:
            conflicting.add(algorithm)
    for algorithm in conflicting:
        del found[algorithm]
    return found


def _parse_content_md5(values: list[str]) -> Expected | None:
    """RFC 1864 ``Content-MD5``: base64 of the body's 16-byte MD5; None if malformed."""
    distinct = {value.strip(" \t") for value in values}
    if len(distinct) != 1:
        log.debug("ignoring Content-MD5: %d different values", len(distinct))
        return None
    value = _b64(distinct.pop())
    return None if value is None else _strongest("Content-MD5", {"md5": value})
