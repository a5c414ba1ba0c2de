"""Names and references: one grammar for the CLI, Python and (later) HTTP."""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelkeep.errors import InvalidAlias, InvalidName, InvalidRef

MAX_NAME = 128
_SEGMENT = re.compile(r"[a-z0-9._-]+")
_HEX = re.compile(r"[0-9a-f]{8,64}")
MIN_PREFIX = 8
CONTENT_PREFIX = "b3:"  # a content id is this and the BLAKE3 of the content, in hex


def content_id(raw: bytes | str) -> str:
    """The content id of an object, given its id as bytes or as hex digits."""
    return CONTENT_PREFIX + (raw.hex() if isinstance(raw, bytes) else raw)


def content_hex(cid: str) -> str:
    """The hex digits of a content id (its prefix dropped; plain hex is returned as is)."""
    return cid.removeprefix(CONTENT_PREFIX)


def is_full_id(text: object) -> bool:
    """A whole content id (`b3:` and 64 hex digits): it names content even where no
    version records it, so it can be fetched from a remote by id alone."""
    return (
        isinstance(text, str) and re.fullmatch(r"b3:[0-9a-f]{64}", text.strip().lower()) is not None
    )


def content_bytes(cid: str) -> bytes:
    """The id a content id names, as the object store keys it."""
    return bytes.fromhex(content_hex(cid))


def validate_name(name: str) -> str:
    """Return the name if it is valid, else raise InvalidName saying why."""
    if not name:
        raise InvalidName(name, "it is empty")
    if len(name) > MAX_NAME:
        raise InvalidName(name, f"it is {len(name)} characters long")
    if name.startswith("/"):
        raise InvalidName(name, "it starts with '/'")
    for segment in name.split("/"):
        if not segment:
            raise InvalidName(name, "it has an empty segment")
        if segment in (".", ".."):
            raise InvalidName(name, f"it has a {segment!r} segment")
        if segment.startswith("-"):  # it would read as an option on a command line
            raise InvalidName(name, f"segment {segment!r} starts with '-'")
        if not _SEGMENT.fullmatch(segment):
            bad = sorted({c for c in segment if not _SEGMENT.fullmatch(c)})
            raise InvalidName(name, f"it contains {''.join(bad)!r}")
    return name


@dataclass(frozen=True, slots=True)
class VersionRef:
    """`NAME`, `NAME:latest` (number None) or `NAME:vN`."""

    name: str
    number: int | None = None

    def __str__(self) -> str:
        return f"{self.name}:v{self.number}" if self.number else f"{self.name}:latest"


@dataclass(frozen=True, slots=True)
class DigestRef:
    """`b3:HEX`: a content id or a unique prefix of one."""

    prefix: str

    def __str__(self) -> str:
        return content_id(self.prefix)


@dataclass(frozen=True, slots=True)
class AliasRef:
    """`NAME@production`, `NAME@staging` or `NAME@ALIAS`: whichever version holds it."""

    name: str
    alias: str

    def __str__(self) -> str:
        return f"{self.name}@{self.alias}"


Ref = VersionRef | DigestRef | AliasRef

STAGES = ("none", "staging", "production", "archived")
_ALIAS = re.compile(r"[a-z][a-z0-9_-]{0,63}")


def validate_alias(alias: str, *, settable: bool = False) -> str:
    """An alias: lowercase, starting with a letter; not `latest` or `vN`.

    Stage names resolve as aliases (`NAME@production`) but cannot be set as free aliases.
    """
    if not _ALIAS.fullmatch(alias):
        raise InvalidAlias(
            alias, "an alias is 1-64 lowercase letters, digits, '-' or '_', starting with a letter"
        )
    if alias == "latest" or re.fullmatch(r"v[0-9]+", alias):
        raise InvalidAlias(alias, "it reads as a version, not an alias; choose another name")
    if settable and alias in STAGES:
        raise InvalidAlias(
            alias, "it is a stage: move a version there with `modelkeep promote` instead"
        )
    return alias


def parse_ref(text: str) -> Ref:
    text = text.strip()
    if text.startswith(CONTENT_PREFIX):
        hexpart = content_hex(text).lower()
        if not _HEX.fullmatch(hexpart):
            raise InvalidRef(text, f"a content id needs {MIN_PREFIX}-64 hex digits")
        return DigestRef(hexpart)
    if "@" in text:
        name, _, alias = text.partition("@")
        try:
            validate_name(name)
            validate_alias(alias)
        except (InvalidName, InvalidAlias) as exc:
            raise InvalidRef(text, exc.reason) from exc
        if alias in ("none", "archived"):
            raise InvalidRef(text, f"many versions can be {alias}; name one as {name}:vN")
        return AliasRef(name, alias)
    name, sep, version = text.partition(":")
    try:
        validate_name(name)
    except InvalidName as exc:
        raise InvalidRef(text, exc.reason) from exc
    if not sep or version == "latest":
        return VersionRef(name)
    if re.fullmatch(r"v[1-9][0-9]{0,17}", version):
        return VersionRef(name, int(version[1:]))
    raise InvalidRef(text, f"{version!r} is not a version; versions look like v1, v2 or latest")
