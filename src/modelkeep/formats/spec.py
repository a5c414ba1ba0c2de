"""What a model version records about itself: one JSON document, kept in its metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MODEL_KEY = "model"  # the version metadata key that holds the spec
SPEC_FILE = "MODEL.json"  # the same spec, inside the stored folder, so a copy explains itself
EXAMPLE_FILE = "input_example.json"


@dataclass(frozen=True, slots=True)
class Saved:
    """What a format wrote into the model folder."""

    path: str  # the payload, relative to the folder
    modules: tuple[str, ...]  # import names of the libraries that wrote it (and load it)
    info: dict[str, Any] = field(default_factory=dict)  # format-specific, JSON values


@dataclass(frozen=True, slots=True)
class ModelSpec:
    format: str
    path: str
    object: str  # "module.QualName" of the logged object (or "path")
    libraries: dict[str, str]  # import name -> version that wrote it
    requirements: tuple[str, ...]  # "distribution==version", what loading needs
    python: str
    signature: dict[str, Any] | None = None
    example: str | None = None  # file of the stored input example
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "path": self.path,
            "object": self.object,
            "libraries": dict(sorted(self.libraries.items())),
            "requirements": list(self.requirements),
            "python": self.python,
            "signature": self.signature,
            "example": self.example,
            "info": self.info,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ModelSpec:
        return cls(
            format=doc["format"],
            path=doc["path"],
            object=doc.get("object", ""),
            libraries=dict(doc.get("libraries", {})),
            requirements=tuple(doc.get("requirements", ())),
            python=doc.get("python", ""),
            signature=doc.get("signature"),
            example=doc.get("example"),
            info=dict(doc.get("info", {})),
        )


@dataclass(frozen=True, slots=True)
class LoadContext:
    ref: str  # for messages
    trust: bool  # run code a pickle names; trust every type
    trusted_types: frozenset[str]  # extra types skops may build
