"""Any file or folder, stored as it is; loading gives back its path."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from modelkeep.errors import InvalidArgument, PathNotFound
from modelkeep.formats.spec import LoadContext, ModelSpec, Saved

FOLDER = "model"


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # the store reads it once; no need to write a second copy
    except OSError:
        shutil.copy2(src, dst)


def copy_in(source: str | os.PathLike[str], folder: Path) -> str:
    """Place source under folder/model/; returns its path relative to folder."""
    src = Path(source)
    if not os.path.lexists(src):
        raise PathNotFound(str(source))
    if not (src.is_file() or src.is_dir()):
        raise InvalidArgument(f"{str(source)!r} is neither a file nor a folder")
    dest = folder / FOLDER / (src.absolute().name or "content")
    dest.parent.mkdir()
    if src.is_dir():
        shutil.copytree(src, dest, symlinks=True, copy_function=_link_or_copy)
    else:
        _link_or_copy(str(src), str(dest))
    return dest.relative_to(folder).as_posix()


def save(obj: Any, folder: Path, fmt: str, options: dict[str, Any]) -> Saved:
    if not isinstance(obj, str | os.PathLike):
        raise InvalidArgument(f"format 'files' takes a path, not a {type(obj).__name__}")
    return Saved(copy_in(obj, folder), ())


def load(folder: Path, spec: ModelSpec, ctx: LoadContext) -> Any:
    return folder / spec.path
