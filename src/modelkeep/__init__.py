"""modelkeep: immutable, verified, chunk-deduplicated versions of models and data.

`mk.init(path)` creates a repository and `mk.open(path)` finds one (from path upward);
both return a `Repo`. Names are imported on first use, so `modelkeep --help` does not pay
for SQLAlchemy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelkeep.client import load_model, open
    from modelkeep.errors import ModelkeepError
    from modelkeep.formats import ModelSpec
    from modelkeep.meta import Artifact, Evaluation, Lineage, Metric, RunRecord, Version
    from modelkeep.repo import Repo, init
    from modelkeep.results import AddResult, Change, Diff, FileInfo, Usage
    from modelkeep.run import Run, current_run, start_run
    from modelkeep.store import FsckReport, GcReport, Problem

__version__ = "0.1.0"

__all__ = [
    "AddResult",
    "Artifact",
    "Change",
    "Diff",
    "Evaluation",
    "FileInfo",
    "FsckReport",
    "GcReport",
    "Lineage",
    "Metric",
    "ModelSpec",
    "ModelkeepError",
    "Problem",
    "Repo",
    "Run",
    "RunRecord",
    "Usage",
    "Version",
    "__version__",
    "current_run",
    "init",
    "load_model",
    "open",
    "start_run",
]

_WHERE = {
    "ModelkeepError": "modelkeep.errors",
    "Artifact": "modelkeep.meta",
    "Version": "modelkeep.meta",
    "Evaluation": "modelkeep.meta",
    "Lineage": "modelkeep.meta",
    "Metric": "modelkeep.meta",
    "RunRecord": "modelkeep.meta",
    "ModelSpec": "modelkeep.formats",
    "AddResult": "modelkeep.results",
    "Change": "modelkeep.results",
    "Diff": "modelkeep.results",
    "FileInfo": "modelkeep.results",
    "Usage": "modelkeep.results",
    "Run": "modelkeep.run",
    "current_run": "modelkeep.run",
    "start_run": "modelkeep.run",
    "open": "modelkeep.client",
    "load_model": "modelkeep.client",
    "FsckReport": "modelkeep.store",
    "GcReport": "modelkeep.store",
    "Problem": "modelkeep.store",
}


def __getattr__(name: str) -> Any:
    if name in __all__ and name != "__version__":
        module = importlib.import_module(_WHERE.get(name, "modelkeep.repo"))
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'modelkeep' has no attribute {name!r}")
