"""Trained objects as versions: log_model writes one folder and adds it; load_model reverses it.

The folder holds the payload the format wrote, `MODEL.json` (the spec: format, the library
versions that wrote it, requirements, signature) and `input_example.json`. The spec is also
kept in the version's metadata under "model", so listing, the model card and the check
that a ref is a model need no bytes. Only log_model writes that key (`add` refuses it),
and reading it checks its shape anyway: the database may have been edited.

Loading is the seam where a format library's own exceptions (a bad zip, bad JSON, a
missing file, a constructor refusing its arguments) become one `ModelLoadFailed` line.
A loaded object that predicts, from a version with a signature, is handed out behind
`formats.schema.CheckedModel`, which checks predict's input; the input example is read
back as the type it was logged as by `formats.examples`. Content equal to a version's
makes no new version (`add`'s dedup), and log_model says so with `ModelUnchanged`.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import tempfile
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from modelkeep import content, formats
from modelkeep.errors import (
    InputExampleInvalid,
    InvalidArgument,
    LibraryVersionWarning,
    ModelkeepError,
    ModelLoadFailed,
    ModelSpecInvalid,
    ModelUnchanged,
    NotAModel,
)
from modelkeep.formats import examples, requirements, schema, signature
from modelkeep.formats.spec import EXAMPLE_FILE, MODEL_KEY, SPEC_FILE, LoadContext, ModelSpec
from modelkeep.meta import Version
from modelkeep.parts import Parts
from modelkeep.refs import validate_name
from modelkeep.results import AddResult

Trust = bool | Sequence[str]


class Adder(Protocol):
    def __call__(
        self,
        source: Path,
        name: str,
        *,
        type: str | None,
        message: str,
        metadata: Mapping[str, Any] | None,
        run_id: str | None,
        model_spec: Mapping[str, Any] | None = None,
    ) -> AddResult: ...


def log(
    parts: Parts,
    obj: Any,
    name: str,
    *,
    format: str | None = None,
    input_example: Any = None,
    init_kwargs: Mapping[str, Any] | None = None,
    message: str = "",
    metadata: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    add: Adder | None = None,
) -> Version:
    """Save obj in its format into a folder with its spec, and add the folder as the next
    version of name (with `add`: how a server's client adds it instead)."""
    validate_name(name)
    fields = dict(metadata or {})
    if MODEL_KEY in fields:  # before saving anything; Repo.add refuses it too
        raise InvalidArgument(f"metadata key {MODEL_KEY!r} is modelkeep's own; use another")
    fmt = format or formats.detect(obj)
    impl = formats.implementation(fmt)
    sig, example = signature.describe(input_example) if input_example is not None else (None, None)
    options = {"init_kwargs": dict(init_kwargs)} if init_kwargs else {}
    with tempfile.TemporaryDirectory(prefix="modelkeep-model-") as tmp:
        folder = Path(tmp) / name.rsplit("/", 1)[-1]
        folder.mkdir()
        saved = impl.save(obj, folder, fmt, options)
        modules = {*saved.modules, *requirements.object_modules(obj)} if fmt != "files" else set()
        spec = ModelSpec(
            format=fmt,
            path=saved.path,
            object=_class_path(obj),
            libraries=requirements.libraries(saved.modules),
            requirements=requirements.requirements(modules),
            python=platform.python_version(),
            signature=sig,
            example=EXAMPLE_FILE if example is not None else None,
            info=saved.info,
        )
        (folder / SPEC_FILE).write_text(json.dumps(spec.to_json(), indent=2) + "\n", "utf-8")
        if example is not None:
            (folder / EXAMPLE_FILE).write_text(json.dumps(example) + "\n", "utf-8")
        added = (add or functools.partial(content.add, parts))(
            folder,
            name,
            type="model",
            message=message,
            metadata=fields,
            run_id=run_id,
            model_spec=spec.to_json(),
        )
    if not added.created:  # as `add` of unchanged content: the existing version, said so
        older = added.same_as is not None
        warnings.warn(
            ModelUnchanged(
                f"{name}: the logged model equals {added.version.ref}"
                + (", an older version" if older else ", the latest")
                + "; no new version was made"
            ),
            stacklevel=3,
        )
    return added.version


def spec_of(version: Version) -> ModelSpec:
    """The version's model spec, checked field by field (the row may have been edited)."""
    if not isinstance(version.metadata, dict) or MODEL_KEY not in version.metadata:
        raise NotAModel(version.ref, version.type)
    spec = ModelSpec.from_json(version.metadata[MODEL_KEY], version.ref)
    if spec.format not in formats.FORMATS:
        raise ModelSpecInvalid(
            version.ref, "format", f"{spec.format!r} is not one of {', '.join(formats.FORMATS)}"
        )
    return spec


def load(parts: Parts, version: Version, *, trust: Trust = False) -> Any:
    spec = spec_of(version)
    impl = formats.implementation(spec.format)
    for module, wrote, here in requirements.mismatches(spec.libraries):
        warnings.warn(
            f"{version.ref} was saved with {module} {wrote}; {here} is installed here, a "
            "different major version, so it may fail to load or predict differently",
            LibraryVersionWarning,
            stacklevel=3,
        )
    ctx = _context(parts, version, trust)
    if spec.format == "files":
        return content.local_copy(parts, version, spec.path)
    with tempfile.TemporaryDirectory(prefix="modelkeep-load-") as tmp:
        folder = content.restore(parts, version, Path(tmp) / "model")
        if not (folder / spec.path).exists():
            raise ModelLoadFailed(version.ref, spec.format, f"the stored folder has no {spec.path}")
        try:
            return impl.load(folder, spec, ctx)
        except ModelkeepError:
            raise
        except Exception as exc:  # the format library's own failure, whatever its class
            raise ModelLoadFailed(version.ref, spec.format, one_line(exc)) from exc


def one_line(exc: BaseException, limit: int = 300) -> str:
    """A foreign exception as one short line: its class and the first line of its text."""
    text = " ".join(str(exc).split("\n", 1)[0].split()) or "no details"
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return f"{type(exc).__name__}: {text}"


def example_doc(parts: Parts, version: Version) -> dict[str, Any] | None:
    """The stored input example as its JSON document (values under "data"), read with a
    size limit: a file larger than any example log_model writes is refused unread."""
    spec = spec_of(version)
    if spec.example is None:
        return None
    pieces, size = [], 0
    with content.open_file(parts, version, spec.example) as f:
        while piece := f.read(1 << 20):  # in pieces: read(limit) would allocate the limit
            pieces.append(piece)
            size += len(piece)
            if size > examples.FILE_LIMIT:
                raise InputExampleInvalid(
                    version.ref, spec.example, f"it is over {examples.FILE_LIMIT >> 20} MiB"
                )
    raw = b"".join(pieces)
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # bad JSON, bad UTF-8, nesting too deep
        raise InputExampleInvalid(version.ref, spec.example, one_line(exc)) from None
    if not isinstance(doc, dict) or "data" not in doc:
        raise InputExampleInvalid(version.ref, spec.example, "it has no 'data' field")
    return doc


def input_example(parts: Parts, version: Version) -> Any:
    """The stored input example as the type it was logged as (a DataFrame with its dtypes,
    an array with its dtype and shape, …); see formats/examples.py."""
    return decode_example(version, example_doc(parts, version))


def decode_example(version: Version, doc: dict[str, Any] | None) -> Any:
    if doc is None:
        return None
    spec = spec_of(version)
    return examples.decode(doc, spec.signature, version.ref, spec.example or EXAMPLE_FILE)


def checked(native: Any, version: Version) -> Any:
    """native, behind a predict that checks its input against the signature, when the
    version has one and the object predicts; otherwise native itself."""
    spec = spec_of(version)
    if spec.signature is None or not callable(getattr(native, "predict", None)):
        return native
    return schema.CheckedModel(native, spec.signature, version.ref)


def _context(parts: Parts, version: Version, trust: Trust) -> LoadContext:
    settings = parts.settings
    if isinstance(trust, bool):
        return LoadContext(version.ref, trust or settings.trust_pickle, settings.trusted_types)
    if isinstance(trust, str) or not (
        isinstance(trust, Iterable) and all(isinstance(t, str) for t in trust)
    ):
        raise InvalidArgument("trust takes True, False or a list of type names")
    return LoadContext(
        version.ref, settings.trust_pickle, settings.trusted_types | frozenset(trust)
    )


def _class_path(obj: Any) -> str:
    if isinstance(obj, str | os.PathLike):
        return "path"
    kind = type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"
