"""PyTorch: weights in safetensors, never a pickle.

An nn.Module is saved as its state_dict plus the importable path of its class and the
keyword arguments that build it; loading finds the class, builds it and loads the
weights. A state_dict alone comes back as a dict of tensors.

The class path comes from the version's metadata, which whoever can write the database
controls, and importing a module runs it. So loading imports nothing: the class's module
must be imported already (the program that uses the model has imported its code), unless
the user lists the class by name (`trust=["pkg.mod.Net"]`, `trusted_types`) or trusts the
model (`trust=True`). Whatever is found must be an nn.Module subclass.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import sys
from pathlib import Path
from typing import Any

from modelkeep.errors import InvalidArgument, UntrustedModel
from modelkeep.formats import need
from modelkeep.formats.spec import LoadContext, ModelSpec, Saved

FILE = "model.safetensors"
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


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
    name = spec.info_field("class", str, "", ctx.ref)
    init_kwargs = spec.info_field("init_kwargs", dict, {}, ctx.ref)
    training = spec.info_field("training", bool, False, ctx.ref)
    cls = _find_class(name, ctx)
    if not (inspect.isclass(cls) and issubclass(cls, torch.nn.Module)):
        raise InvalidArgument(f"{ctx.ref}: {name} is not a torch nn.Module")
    model: Any = cls(**init_kwargs)
    st.load_model(model, path)
    return model.train(training)


def _find_class(name: str, ctx: LoadContext) -> Any:
    """The object "module:Qual.Name" names, importing its module only if trusted."""
    module_name, _, qualname = name.partition(":")
    dotted = f"{module_name}.{qualname}"
    if not (_DOTTED.fullmatch(module_name) and _DOTTED.fullmatch(qualname)) or any(
        part.startswith("__") for part in qualname.split(".")
    ):
        raise InvalidArgument(f"{ctx.ref}: {name!r} is not a class path like 'pkg.mod:Net'")
    listed = ctx.trust or dotted in ctx.trusted_types or name in ctx.trusted_types
    module = sys.modules.get(module_name)
    if module is None and not listed:
        raise UntrustedModel(
            ctx.ref,
            f"it names the class {dotted}, and importing {module_name} would run its code; "
            f'import {module_name} before loading, or pass trust=["{dotted}"]',
            [dotted],
        )
    try:
        found: Any = module if module is not None else importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise InvalidArgument(
            f"{ctx.ref} needs the class {name} to rebuild the model, and it "
            f"cannot be imported here ({exc}); install the code that defines it"
        ) from exc
    return found
