"""docs/cli.md, generated from the click commands, so the reference cannot drift.

`python -m modelkeep.cli.docs > docs/cli.md` rewrites it; a test fails when the file
differs from what this module renders. Each command's example lives here and is also
shown at the end of its `--help`.
"""

from __future__ import annotations

import inspect

import click

EXAMPLES: dict[str, str] = {
    "init": "modelkeep init",
    "add": 'modelkeep add model.safetensors --name fraud-detector --type model -m "baseline"',
    "ls": "modelkeep ls --json",
    "versions": "modelkeep versions fraud-detector --metric auc --metric eval[holdout].auc",
    "eval": "modelkeep eval fraud-detector:v3 --metric auc=0.93 --dataset holdout:v2",
    "show": 'modelkeep show fraud-detector@production --at "2026-11-03 14:00"',
    "get": "modelkeep get fraud-detector:v3 -o serve/",
    "diff": "modelkeep diff transactions:v1 transactions:v2",
    "du": "modelkeep du",
    "fsck": "modelkeep fsck",
    "gc": "modelkeep gc --dry-run",
    "register": "modelkeep register train-out:v12 --as fraud-detector",
    "promote": 'modelkeep promote fraud-detector:v3 production --reason "offline eval ok"',
    "archive": 'modelkeep archive fraud-detector:v1 --reason "superseded"',
    "rollback": 'modelkeep rollback fraud-detector --reason "latency regression"',
    "approve": 'modelkeep approve fraud-detector:v3 production --reason "reviewed"',
    "alias set": "modelkeep alias set fraud-detector@champion fraud-detector:v3",
    "alias remove": "modelkeep alias remove fraud-detector@champion",
    "models": "modelkeep models",
    "model show": "modelkeep model show fraud-detector",
    "model describe": 'modelkeep model describe fraud-detector "Scores card payments; owner: risk"',
    "model tag": "modelkeep model tag fraud-detector team risk",
    "model untag": "modelkeep model untag fraud-detector team",
    "model rename": "modelkeep model rename fraud-detector payment-fraud",
    "history": "modelkeep history fraud-detector",
    "audit": "modelkeep audit --verify",
    "delete": 'modelkeep delete fraud-detector:v1 --reason "leaked labels"',
    "card": "modelkeep card fraud-detector@production --output card.md",
    "remote add": "modelkeep remote add origin s3://models/team --default",
    "remote list": "modelkeep remote list",
    "remote remove": "modelkeep remote remove origin",
    "push": "modelkeep push fraud-detector:v3",
    "pull": "modelkeep pull fraud-detector@production",
    "cache prune": "modelkeep cache prune --max-size 20G --dry-run",
    "run": "modelkeep run --name train -p lr=0.01 -- python train.py",
    "runs show": "modelkeep runs show 1a2b3c4d --env",
    "runs compare": "modelkeep runs compare 1a2b3c4d 9f8e7d6c",
    "runs attach": "modelkeep runs attach 1a2b3c4d roc.png --name plots/roc.png",
    "runs get": "modelkeep runs get 1a2b3c4d stdout.txt -o train.log",
    "runs tag": "modelkeep runs tag 1a2b3c4d team=fraud reviewed=yes --remove draft",
    "runs note": 'modelkeep runs note 1a2b3c4d "baseline for the Q3 review"',
    "runs rename": "modelkeep runs rename 1a2b3c4d xgb-baseline",
    "runs delete": 'modelkeep runs delete 1a2b3c4d --reason "wrong data split"',
    "runs restore": "modelkeep runs restore 1a2b3c4d",
    "env show": "modelkeep env show fraud-detector:v3",
    "env diff": "modelkeep env diff 1a2b3c4d fraud-detector:v2",
    "lineage": "modelkeep lineage fraud-detector --upstream --format mermaid",
    "status": "modelkeep status",
    "checkout": "modelkeep checkout",
    "install-hooks": "modelkeep install-hooks",
    "migrate": "modelkeep migrate --to postgresql://db.example.com/modelkeep",
    "reproduce": "modelkeep reproduce fraud-detector@production --rtol 1e-6",
    "serve": "modelkeep serve --host 0.0.0.0 --port 8080 --workers 4",
    "ui": "modelkeep ui",
    "login": "modelkeep login https://models.example.com",
    "logout": "modelkeep logout https://models.example.com",
    "user add": "modelkeep user add alice --admin",
    "user list": "modelkeep user list",
    "user disable": "modelkeep user disable mallory",
    "user enable": "modelkeep user enable mallory",
    "user password": "modelkeep user password alice",
    "token create": "modelkeep token create --user ci-bot --expires 90d --name nightly",
    "token list": "modelkeep token list --user ci-bot",
    "token revoke": "modelkeep token revoke 3fa85f6457b2",
    "role grant": "modelkeep role grant bob maintainer --model 'fraud-*'",
    "role revoke": "modelkeep role revoke bob --model 'fraud-*'",
    "webhook add": "modelkeep webhook add https://ci.example.com/hooks/modelkeep "
    "--events stage.changed,rollback --model 'fraud*' --secret-env MODELKEEP_WEBHOOK_SECRET",
    "webhook list": "modelkeep webhook list",
    "webhook remove": "modelkeep webhook remove 3",
    "webhook deliveries": "modelkeep webhook deliveries --status failed",
    "webhook deliver": "modelkeep webhook deliver --watch",
    "import mlflow": "modelkeep import mlflow sqlite:///mlflow.db --dry-run",
    # groups that do something of their own
    "runs": 'modelkeep runs --where "tags.team = fraud" --sort metrics.auc --desc',
}

_HEAD = """\
# Command-line reference

Generated from the commands by `python -m modelkeep.cli.docs > docs/cli.md`; a test
fails when this file is stale. `modelkeep COMMAND --help` prints the same.

## The grammar

- **Global options** go before or after the command's name (never after `--`):
  `--repo PATH` (the repository; default: found from the working directory upward),
  `--json` (one JSON document on stdout) and `--quiet`/`-q` (no progress bars or notes).
- **Every command takes `--json`**, writes included. Under `--json` an error is one JSON
  object on stderr, `{"error": "VersionNotFound", "message": "…", …}`, with the fields that
  name what failed; the exit code is the same as without `--json`.
- **Exit codes**: 0 success, 1 a refused or failed operation (one line on stderr naming
  the problem and the next step), 2 a usage error.
- **One meaning per short flag**: `-m` message, `-o` output, `-f` force, `-n` name,
  `-t` type, `-p` param. `--format`, `--remote`, `--reason`, `--option` and `--dry-run`
  have no short form. The short forms earlier releases gave them (`-r`, `lineage -f`,
  `remote add -o`, `gc -n`, `cache prune -n`) still work in this release, with a warning.
- **`remove`** removes everywhere; `rm` is accepted as its alias.
- **Refs**: every command that takes a ref takes every form: `NAME`, `NAME:latest`,
  `NAME:vN`, `NAME@STAGE`, `NAME@ALIAS`, `b3:PREFIX`.

## Commands
"""


def commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for name, command in sorted(group.commands.items()):
        found.append((" ".join((*path, name)), command))
        if isinstance(command, click.Group):
            found.extend(commands(command, (*path, name)))
    return found


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def attach_examples(root: click.Group) -> None:
    """Show each command's example at the end of its --help."""
    for path, command in commands(root):
        if path in EXAMPLES:
            command.epilog = f"Example: {EXAMPLES[path]}"


def _section(root: click.Group, path: str, command: click.Command) -> str:
    with click.Context(root, info_name="modelkeep") as parent:
        ctx = click.Context(command, info_name=path, parent=parent)
        usage = " ".join(command.collect_usage_pieces(ctx))
        lines = [f"### `modelkeep {path}`", "", f"```\nmodelkeep {path} {usage}\n```", ""]
        lines += [inspect.cleandoc(command.help or "").replace("\b\n", ""), ""]
        rows = [p.get_help_record(ctx) for p in command.params if isinstance(p, click.Option)]
        options = [r for r in rows if r is not None]
    if options:
        lines += ["| option | meaning |", "|---|---|"]
        lines += [f"| `{_cell(flag)}` | {_cell(text)} |" for flag, text in options]
        lines.append("")
    if isinstance(command, click.Group):
        subs = ", ".join(f"`{path} {name}`" for name in sorted(command.commands))
        lines += [f"Subcommands: {subs}.", ""]
    if path in EXAMPLES:
        lines += ["Example:", "", f"```\n{EXAMPLES[path]}\n```", ""]
    return "\n".join(lines)


def render(root: click.Group) -> str:
    sections = [_section(root, path, command) for path, command in commands(root)]
    return _HEAD + "\n" + "\n".join(sections)
