"""PyTorch: weights in safetensors, never a pickle.

An nn.Module is saved as its state_dict plus the importable path of its class and the
keyword arguments that build it; loading imports the class, builds it and loads the
weights. A state_dict alone comes back as a dict of tensors.
"""

from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path
from typing import Any

from modelkeep.errors import InvalidArgument
from modelkeep.formats import need
from modelkeep.formats.spec import LoadContext, ModelSpec, Saved

FILE = "model.safetensors"


def save(obj: Any, folder: Path, fmt: str, options: dict[str, Any]) -> Saved:
    torch = need("torch", "torch", fmt)
    st = need("safetensors.torch", "safetensors", fmt)
    init_kwargs = options.get("init_kwargs") or {}
    if not isinstance(obj, torch.nn.Module):
        if init_kwargs:
            raise InvalidArgument("init_kwargs applies to an nn.Module, not a state_dict")
        tensors = {k: v.detach().cpu().contiguous().clone() for k, v in obj.items()}
        st.save_file(tensors, str(folder / FILE))
        return Saved(FILE, ("torch", "safetensors"), {"state_dict": True})
    cls = type(obj)
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        raise InvalidArgument(
            f"{cls.__qualname__} is defined in {cls.__module__}, which another process "
            "cannot import; move the class into a module, or log model.state_dict()"
        )
    try:
        text = json.dumps(init_kwargs, sort_keys=True)
        inspect.signature(cls).bind(**init_kwargs)
    except TypeError as exc:
        raise InvalidArgument(
            f"{cls.__qualname__} cannot be rebuilt with init_kwargs={init_kwargs!r} ({exc}); "
            "pass the JSON keyword arguments that build it as init_kwargs="
        ) from exc
    st.save_model(obj, str(folder / FILE))
    info = {
        "class": f"{cls.__module__}:{cls.__qualname__}",
        "init_kwargs": json.loads(text),
        "training": bool(obj.training),
    }
    return Saved(FILE, ("torch", "safetensors"), info)


def load(folder: Path, spec: ModelSpec, ctx: LoadContext) -> Any:
    torch = need("torch", "torch", spec.format)
    st = need("safetensors.torch", "safetensors", spec.format)
    path = str(folder / spec.path)
    if "class" not in spec.info:
        return st.load_file(path)
    module_name, _, qualname = spec.info["class"].partition(":")
    try:
        cls: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            cls = getattr(cls, part)
    except (ImportError, AttributeError) as exc:
        raise InvalidArgument(
            f"{ctx.ref} needs the class {spec.info['class']} to rebuild the model, and it "
            f"cannot be imported here ({exc}); install the code that defines it"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise InvalidArgument(f"{ctx.ref}: {spec.info['class']} is not a torch nn.Module")
    model = cls(**spec.info.get("init_kwargs", {}))
    st.load_model(model, path)
    return model.train(spec.info.get("training", False))
