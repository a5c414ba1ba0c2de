"""`python -m modelkeep.cli.docs > docs/cli.md`: the CLI reference, from the commands."""

import click

from modelkeep.cli.main import cli
from modelkeep.cli.reference import render

if __name__ == "__main__":
    click.echo(render(cli), nl=False)
