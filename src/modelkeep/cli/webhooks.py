"""`modelkeep webhook add/list/remove/deliveries/deliver`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from modelkeep.cli import render
from modelkeep.cli.common import Group, globals_of, json_option, store_db

if TYPE_CHECKING:
    from modelkeep.webhooks import Outcome

_KINDS_HELP = (
    "Comma-separated event kinds: version.created, version.deleted, stage.changed, "
    "alias.moved, rollback, approval, approval.requested, override; or * for all."
)


@click.group(cls=Group)
def webhook() -> None:
    """Webhooks: a signed JSON POST to a URL for each registry change, sent from an outbox
    written with the change, retried until the receiver answers 2xx."""


@webhook.command("add")
@click.argument("url")
@click.option("--events", required=True, metavar="KIND,KIND", help=_KINDS_HELP)
@click.option("--model", "model_glob", default="*", metavar="GLOB", help="Only models it matches.")
@click.option(
    "--secret-env",
    default=None,
    metavar="NAME",
    help="Environment variable holding the signing secret, read when each delivery is sent.",
)
@click.option(
    "--insecure", is_flag=True, help="Allow plain http:// to a host other than this machine."
)
@json_option
@click.pass_context
def webhook_add(
    ctx: click.Context,
    url: str,
    events: str,
    model_glob: str,
    secret_env: str | None,
    insecure: bool,
    as_json: bool,
) -> None:
    """POST the chosen events to URL (https://, or http:// to this machine).

    Deliveries are signed (X-Modelkeep-Signature) when --secret-env names a variable; the
    secret itself is never stored. A dispatcher sends them: `modelkeep serve`, or
    `modelkeep webhook deliver --watch`."""
    from modelkeep.meta import webhooks

    hook = webhooks.add_webhook(
        store_db(ctx, "manage webhooks"),
        url,
        events.split(","),
        model_glob,
        secret_env,
        insecure=insecure,
    )
    if as_json:
        render.emit_json(hook.to_json())
        return
    shown = hook.to_json()
    signed = f", signed with ${hook.secret_env}" if hook.secret_env else ", unsigned"
    click.echo(
        f"added webhook {hook.id}: {shown['url']} on {','.join(hook.events)} "
        f"for models {hook.model_glob!r}{signed}; `modelkeep serve` or "
        "`modelkeep webhook deliver --watch` sends them"
    )


@webhook.command("list")
@click.option("--all", "everything", is_flag=True, help="Removed webhooks too.")
@json_option
@click.pass_context
def webhook_list(ctx: click.Context, everything: bool, as_json: bool) -> None:
    """List webhooks: id, URL (a query string masked), events, model glob, secret variable."""
    from modelkeep.meta import webhooks

    hooks = [
        h.to_json()
        for h in webhooks.list_webhooks(store_db(ctx, "manage webhooks"), removed=everything)
    ]
    if as_json:
        render.emit_json({"webhooks": hooks})
        return
    if not hooks:
        click.echo("no webhooks; add one with `modelkeep webhook add URL --events KINDS`")
        return
    render.table(
        ["id", "url", "events", "model", "secret env", "removed"],
        [
            [
                str(h["id"]),
                h["url"],
                ",".join(h["events"]),
                h["model"],
                h["secret_env"] or "-",
                h["removed_at"] or "",
            ]
            for h in hooks
        ],
    )


@webhook.command("remove")
@click.argument("webhook_id", metavar="ID", type=int)
@json_option
@click.pass_context
def webhook_remove(ctx: click.Context, webhook_id: int, as_json: bool) -> None:
    """Stop webhook ID; its deliveries not yet sent are cancelled (`webhook rm` also works)."""
    from modelkeep.meta import webhooks

    hook, cancelled = webhooks.remove_webhook(store_db(ctx, "manage webhooks"), webhook_id)
    if as_json:
        render.emit_json({"removed": hook.to_json(), "cancelled": cancelled})
    else:
        click.echo(
            f"removed webhook {hook.id} ({hook.to_json()['url']}); "
            f"{cancelled} pending deliveries cancelled"
        )


@webhook.command("deliveries")
@click.option("--webhook", "webhook_id", type=int, default=None, metavar="ID", help="Of one.")
@click.option(
    "--status",
    default=None,
    metavar="STATUS",
    help="pending, delivered, failed (given up) or cancelled.",
)
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True)
@json_option
@click.pass_context
def webhook_deliveries(
    ctx: click.Context, webhook_id: int | None, status: str | None, limit: int, as_json: bool
) -> None:
    """List deliveries, newest first: status, attempts, the last error."""
    from modelkeep.meta import webhooks

    found = webhooks.deliveries(store_db(ctx, "manage webhooks"), webhook_id, status, limit)
    if as_json:
        render.emit_json({"deliveries": [d.to_json() for d in found]})
        return
    if not found:
        click.echo("no deliveries")
        return
    render.table(
        ["id", "webhook", "event", "status", "attempts", "when", "error"],
        [
            [
                str(d.id),
                str(d.webhook_id),
                d.kind,
                d.status,
                str(d.attempts),
                render.when(d.delivered_at or d.next_at),
                d.last_error,
            ]
            for d in found
        ],
    )


@webhook.command("deliver")
@click.option("--watch", is_flag=True, help="Keep sending until SIGTERM or Ctrl-C.")
@click.option("--interval", type=click.FloatRange(0.05), default=1.0, show_default=True,
              help="Seconds between passes with --watch.")  # fmt: skip
@click.option("--timeout", type=click.FloatRange(0.1), default=10.0, show_default=True,
              help="Seconds to wait for a receiver.")  # fmt: skip
@click.option("--lease", type=click.FloatRange(0.1), default=60.0, show_default=True,
              help="Seconds a delivery being sent is held from other dispatchers.")  # fmt: skip
@click.option("--backoff", type=click.FloatRange(0.01), default=10.0, show_default=True,
              help="Seconds before the first retry; doubles each time, up to an hour.")  # fmt: skip
@click.option("--max-attempts", type=click.IntRange(1), default=10, show_default=True,
              help="Attempts before a delivery is given up (status failed).")  # fmt: skip
@json_option
@click.pass_context
def webhook_deliver(
    ctx: click.Context,
    watch: bool,
    interval: float,
    timeout: float,
    lease: float,
    backoff: float,
    max_attempts: int,
    as_json: bool,
) -> None:
    """Send the deliveries that are due, once or (--watch) until stopped.

    Any number of dispatchers may run against one database (`modelkeep serve` runs one):
    each delivery is sent by one at a time, and again by another if its sender dies."""
    import signal
    import threading
    from datetime import timedelta

    from modelkeep.meta.webhooks import Retry
    from modelkeep.webhooks import Dispatcher

    quiet = as_json or globals_of(ctx).quiet
    outcomes: list[Outcome] = []

    def record(outcome: Outcome) -> None:
        outcomes.append(outcome)
        if watch and not quiet:
            line = f"delivery {outcome.delivery} ({outcome.kind}) to webhook {outcome.webhook}"
            error = f": {outcome.error}" if outcome.error else ""
            click.echo(f"{line}: {outcome.status}{error}")

    retry = Retry(first=timedelta(seconds=backoff), max_attempts=max_attempts)
    with Dispatcher(
        store_db(ctx, "manage webhooks"), timeout=timeout, lease=lease, retry=retry
    ) as dispatcher:
        if watch:
            stop = threading.Event()
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stop.set())
            dispatcher.run_forever(stop, interval, record)
        else:
            dispatcher.run_once(record)
    counts = {s: sum(o.status == s for o in outcomes) for s in ("delivered", "pending", "failed")}
    if as_json:
        render.emit_json({**counts, "attempts": [o.to_json() for o in outcomes]})
        return
    if not watch:
        for o in outcomes:
            if o.error:
                click.echo(f"delivery {o.delivery} ({o.kind}): {o.status}: {o.error}")
    click.echo(
        f"delivered {counts['delivered']}, to retry {counts['pending']}, "
        f"given up {counts['failed']}"
    )
