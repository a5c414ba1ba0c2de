"""Reads the world (Git state, environment, source files) into plain records.

Pure: no database and no store, so a run's code, environment and Git state can be
captured, tested and diffed without a repository.
"""

from modelkeep.capture.code import DEFAULT_GLOBS, SKIP_DIRS, Command, command, matches, snapshot
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
