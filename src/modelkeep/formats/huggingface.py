"""Hugging Face models, tokenizers and processors: what save_pretrained writes.

Loading rebuilds the class the spec names, looked up in the transformers package only.
Weights held only in pickle-based files (pytorch_model.bin, *.pt) load only when trusted.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from modelkeep.errors import InvalidArgument, UntrustedModel
from modelkeep.formats import need
from modelkeep.formats.files import FOLDER, copy_in
from modelkeep.formats.spec import LoadContext, ModelSpec, Saved

_PICKLED = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")


def save(obj: Any, folder: Path, fmt: str, options: dict[str, Any]) -> Saved:
    if isinstance(obj, str | os.PathLike):
        path = copy_in(obj, folder)
        try:
            config = json.loads((folder / path / "config.json").read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidArgument(
                f"{str(obj)!r} is not a save_pretrained folder: no readable config.json ({exc})"
            ) from exc
        architectures = config.get("architectures") or ["AutoModel"]
        return Saved(path, ("transformers",), {"class": architectures[0]})
    if not hasattr(obj, "save_pretrained"):
        raise InvalidArgument(f"format 'huggingface' needs save_pretrained; a {type(obj)} has none")
    obj.save_pretrained(str(folder / FOLDER))
    torch = sys.modules.get("torch")
    weights = ("torch", "safetensors") if torch and isinstance(obj, torch.nn.Module) else ()
    return Saved(FOLDER, ("transformers", *weights), {"class": type(obj).__name__})


def load(folder: Path, spec: ModelSpec, ctx: LoadContext) -> Any:
    transformers = need("transformers", "transformers", spec.format)
    path = folder / spec.path
    has_safe = any(path.rglob("*.safetensors"))
    pickled = [p.name for pattern in _PICKLED for p in path.rglob(pattern)]
    if pickled and not has_safe and not ctx.trust:
        raise UntrustedModel(
            ctx.ref,
            f"its weights are only in pickle-based files ({', '.join(sorted(pickled))})",
        )
    cls = getattr(transformers, spec.info.get("class", "AutoModel"), None)
    if not (isinstance(cls, type) and hasattr(cls, "from_pretrained")):
        cls = transformers.AutoModel
    return cls.from_pretrained(str(path))
