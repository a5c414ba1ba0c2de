"""Reads the world (Git state, environment, source files) into plain records.

Pure: no database and no store, so a run's code, environment and Git state can be
captured, tested and diffed without a repository.

Each name is imported on first use (`lazy.package`): `status` asks Git for the work tree
and does not pay for the environment capture's `importlib.metadata`. `environment` stays
the function though a submodule shares its name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelkeep import lazy

if TYPE_CHECKING:
    from modelkeep.capture.code import (
        DEFAULT_GLOBS,
        SKIP_DIRS,
        Command,
        command,
        matches,
        snapshot,
    )
    from modelkeep.capture.environment import (
        EnvDiff,
        canonical_json,
        diff_environments,
        environment,
        environment_id,
    )
    from modelkeep.capture.git import (
        GitState,
        hooks_dir,
        ignore,
        is_tracked,
        state,
        user_identity,
        work_tree,
        write_patch,
    )

_NAMES = {  # module of modelkeep.capture -> the names it offers
    "code": ("DEFAULT_GLOBS", "SKIP_DIRS", "Command", "command", "matches", "snapshot"),
    "environment": (
        "EnvDiff",
        "canonical_json",
        "diff_environments",
        "environment",
        "environment_id",
    ),
    "git": (
        "GitState",
        "hooks_dir",
        "ignore",
        "is_tracked",
        "state",
        "user_identity",
        "work_tree",
        "write_patch",
    ),
}

__all__ = [
    "DEFAULT_GLOBS",
    "SKIP_DIRS",
    "Command",
    "EnvDiff",
    "GitState",
    "canonical_json",
    "command",
    "diff_environments",
    "environment",
    "environment_id",
    "hooks_dir",
    "ignore",
    "is_tracked",
    "matches",
    "snapshot",
    "state",
    "user_identity",
    "work_tree",
    "write_patch",
]

lazy.package(__name__, {n: (m, n) for m, names in _NAMES.items() for n in names})
