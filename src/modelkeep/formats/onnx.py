"""ONNX models, as the ModelProto onnx.save writes (external data beside it when large)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelkeep.formats import need
from modelkeep.formats.spec import LoadContext, ModelSpec, Saved

FILE = "model.onnx"
_PROTOBUF_LIMIT = 2**31 - 1


def save(obj: Any, folder: Path, fmt: str, options: dict[str, Any]) -> Saved:
    onnx = need("onnx", "onnx", fmt)
    external = obj.ByteSize() > _PROTOBUF_LIMIT
    onnx.save_model(
        obj, str(folder / FILE), save_as_external_data=external, location=f"{FILE}.data"
    )
    return Saved(FILE, ("onnx",), {"opset": [o.version for o in obj.opset_import]})


def load(folder: Path, spec: ModelSpec, ctx: LoadContext) -> Any:
    return need("onnx", "onnx", spec.format).load_model(str(folder / spec.path))
