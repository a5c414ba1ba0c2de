from collections.abc import Sequence

from typing_extensions import Buffer

def group(data: Buffer, width: int, head: int) -> bytearray:
    """data's bytes grouped by width, after head bytes left for the caller to fill."""

def ungroup(groups: Sequence[Buffer], out: Buffer, at: int) -> None:
    """Interleave groups (one per position within a value) into out[at : at + total]."""
