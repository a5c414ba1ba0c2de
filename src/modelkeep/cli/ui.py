"""`modelkeep ui`: the web UI on this machine's store, for this machine's user only.

It serves the local store on 127.0.0.1 at a free port and opens the browser at a one-time
link: the link's secret (256 random bits, only its hash given to the server) becomes a
browser session for the local user on first use and then stops working, and after five
minutes unused. Other users of the machine can reach the port, but without the link they
meet the sign-in page, and the store has no account of the local user to sign in as.
"""

from __future__ import annotations

import atexit
import html
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

import click

from modelkeep.cli import render
from modelkeep.cli.common import json_option, open_repo


def _forwarding_page(link: str) -> Path:
    """A page only this user can read (a 0700 folder, a 0600 file) that sends the browser
    to link; removed when this process ends."""
    folder = Path(tempfile.mkdtemp(prefix="modelkeep-ui-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    page = folder / "open.html"
    fd = os.open(page, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        quoted = html.escape(link, quote=True)
        out.write(
            f'<!doctype html><meta http-equiv="refresh" content="0;url={quoted}">'
            f'<p><a href="{quoted}">Open the modelkeep web UI</a></p>'
        )
    return page


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@click.command()
@click.option("--port", type=int, default=0, help="Port on 127.0.0.1 (default: a free one).")
@click.option("--no-browser", is_flag=True, help="Print the link; do not open a browser.")
@json_option
@click.pass_context
def ui(ctx: click.Context, port: int, no_browser: bool, as_json: bool) -> None:
    """Open the web UI on this repository (127.0.0.1 only; a one-time sign-in link)."""
    from modelkeep.server import run as server_run
    from modelkeep.server.app import Options
    from modelkeep.server.ui import sessions

    repo = open_repo(ctx)
    if getattr(repo, "conn", None) is not None:
        raise click.UsageError(
            "ui opens a local store; for a server, open its URL in a browser and sign in"
        )
    port = port or _free_port()
    secret = sessions.new_link()
    url = f"http://127.0.0.1:{port}"
    link = f"{url}/ui/link/{secret}"
    if as_json:
        render.emit_json({"store": str(repo.root), "url": url, "link": link, "user": repo.user})
    else:
        click.echo(f"web UI of {repo.root} for {repo.user}: {link}")
        click.echo("(the link works once, within 5 minutes; press Ctrl-C to stop)")
    sys.stdout.flush()
    if not no_browser:
        import threading
        import webbrowser

        # The browser is given a private file that forwards to the link, never the link
        # itself: a command line (the browser's, xdg-open's) is readable by every user of
        # the machine, who could use the link first. Opened once the server listens; a
        # machine with no browser just has the printed link.
        opener = _forwarding_page(link)
        threading.Timer(1.0, webbrowser.open, args=(opener.as_uri(),)).start()
    server_run.serve(
        repo.root,
        host="127.0.0.1",
        port=port,
        workers=1,  # the local session lives in this process
        trust_proxy_header=None,
        proxies=(),
        rate_limit=0,
        sign_in_limit=60,
        max_upload=Options.max_upload,
        webhooks=False,
        ui_user=repo.user,
        ui_link=sessions.link_hash(secret),
    )
