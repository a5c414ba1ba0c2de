"""Hugging Face models, tokenizers and processors: what save_pretrained writes.

Loading rebuilds the class the spec names, looked up in the transformers package only
(never a module the spec names, never `trust_remote_code`). A folder holding any
pickle-based file (pytorch_model.bin, *.pt, *.ckpt, … in any subfolder) loads only when
trusted, whatever else it holds: transformers picks its weights file by name, so a
safetensors file beside a pickle does not make the pickle unreachable. Untrusted loads
also pass use_safetensors=True, so transformers reads no pickle-based weights.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
from pathlib import Path
from typing import Any

from modelkeep.errors import InvalidArgument, UntrustedModel
from modelkeep.formats import need
from modelkeep.formats.files import FOLDER, copy_in
from modelkeep.formats.spec import LoadContext, ModelSpec, Saved

# Suffixes of files that torch.load, pickle or joblib read: unpickling runs code.
PICKLED = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib", ".dill", ".sav")


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


def pickled_files(path: Path) -> list[str]:
    """Every pickle-based file under path, as paths relative to it (any case of suffix)."""
    if path.is_file():
        return [path.name] if path.suffix.lower() in PICKLED else []
    return sorted(
        p.relative_to(path).as_posix()
        for p in path.rglob("*")
        if p.suffix.lower() in PICKLED and not p.is_dir()
    )


def load(folder: Path, spec: ModelSpec, ctx: LoadContext) -> Any:
    path = folder / spec.path
    pickled = pickled_files(path)
    if pickled and not ctx.trust:
        raise UntrustedModel(
            ctx.ref, f"it holds pickle-based files ({', '.join(pickled)}); unpickling runs code"
        )
    transformers = need("transformers", "transformers", spec.format)
    name = spec.info_field("class", str, "AutoModel", ctx.ref)
    cls = getattr(transformers, name, None) if name.isidentifier() else None
    if not (inspect.isclass(cls) and hasattr(cls, "from_pretrained")):
        cls = transformers.AutoModel
    options: dict[str, Any] = {"trust_remote_code": False}
    model_base = getattr(transformers, "PreTrainedModel", None)
    if not ctx.trust and inspect.isclass(model_base) and issubclass(cls, model_base):
        options["use_safetensors"] = True
    if cls.__name__.startswith("AutoModel") and not ctx.trust:
        options["use_safetensors"] = True
    return cls.from_pretrained(str(path), **options)
