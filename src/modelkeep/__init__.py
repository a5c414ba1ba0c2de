"""modelkeep: immutable, verified, chunk-deduplicated versions of models and data.

`mk.init(path)` creates a repository and `mk.open(path)` finds one (from path upward);
both return a `Repo`.
"""

from modelkeep.errors import ModelkeepError
from modelkeep.meta import Artifact, Version
from modelkeep.repo import AddResult, Change, Diff, FileInfo, Repo, Usage, init, open
from modelkeep.store import FsckReport, GcReport, Problem

__version__ = "0.1.0"

__all__ = [
    "AddResult",
    "Artifact",
    "Change",
    "Diff",
    "FileInfo",
    "FsckReport",
    "GcReport",
    "ModelkeepError",
    "Problem",
    "Repo",
    "Usage",
    "Version",
    "__version__",
    "init",
    "open",
]
