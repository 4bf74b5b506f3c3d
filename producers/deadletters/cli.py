"""``mountsync deadletters list | show | replay``: inspect what could not be processed, and retry it.

Dead letters are kept in PostgreSQL with the reason (``mountsync.shared.catalog.deadletters``).
``replay`` sends them back through the path they first took (``mountsync.producers.deadletters.replay``)
once the cause is fixed: a new release of a normalizer, a mount added for a bucket, a storage account now served.
"""

from __future__ import annotations

from typing import Any

import typer

from mountsync.shared.errors import BadInput, MountsyncError
from mountsync.shared.output import console, emit, emit_json, err_console

deadletters_app = typer.Typer(help="Dead letters: inspect and replay.", no_args_is_help=True)
JSON = typer.Option(False, "--json", help="Print one JSON document on stdout.")
ID_ARGUMENT = typer.Argument(..., metavar="ID")
IDS_ARGUMENT = typer.Argument(None, metavar="ID", help="Letters to replay.")
ACCOUNT_OPTION = typer.Option(None, "--account", help="Azure: accounts served (else all).")
COLUMNS = ("id", "source", "message_id", "reason", "bytes", "created_at", "replayed_at")


def _settings(ctx: typer.Context) -> Any:
    from mountsync.shared.cli import settings_of

    return settings_of(ctx)


def _pool(settings: Any) -> Any:
    from mountsync.shared.catalog.db import open_pool

    return open_pool(settings.database_url, min_size=1, max_size=2, name="deadletters")


@deadletters_app.command("list")
def list_letters(
    ctx: typer.Context,
    include_replayed: bool = typer.Option(False, "--all", help="Include replayed letters."),
    source: str = typer.Option("", "--source", help="Only this source (e.g. s3-sqs, or task: for tasks)."),
    limit: int = typer.Option(100, "--limit", min=1, help="Newest N letters."),
    as_json: bool = JSON,
) -> None:
    """Dead letters, newest first: id, source, message id, reason, size, when, replayed."""
    from mountsync.shared.catalog.deadletters import DeadLetters

    pool = _pool(_settings(ctx))
    try:
        store = DeadLetters(pool)
        ids = store.ids(include_replayed=include_replayed, source=source or None, limit=limit)
        rows = [store.get(i).describe() for i in ids]
    finally:
        pool.close()
    emit(rows, as_json=as_json, columns=COLUMNS)
    if not as_json and not rows:
        hint = "" if include_replayed else " waiting (use --all for replayed ones)"
        err_console.print(f"no dead letters{hint}")


@deadletters_app.command("show")
def show_letter(ctx: typer.Context, letter_id: int = ID_ARGUMENT, as_json: bool = JSON) -> None:
    """One dead letter with its payload (as text) and transport attributes."""
    from mountsync.shared.catalog.deadletters import DeadLetters

    pool = _pool(_settings(ctx))
    try:
        data = DeadLetters(pool).get(letter_id).describe(with_payload=True)
    finally:
        pool.close()
    if as_json:
        emit_json(data)
        return
    payload = data.pop("payload")
    emit(data, as_json=False, title=f"dead letter {letter_id}")
    console.print(payload, markup=False, soft_wrap=True)


@deadletters_app.command("replay")
def replay_letters(
    ctx: typer.Context,
    letter_ids: list[int] | None = IDS_ARGUMENT,
    replay_all: bool = typer.Option(False, "--all", help="Every open letter (with --source: of it)."),
    source: str = typer.Option("", "--source", help="With --all: only this source."),
    force: bool = typer.Option(False, "--force", help="Replay letters already replayed."),
    account: list[str] | None = ACCOUNT_OPTION,
    trust_sequencer: bool = typer.Option(True, "--trust-sequencer/--ignore-sequencer", help="S3 only."),
    enrich: bool = typer.Option(True, "--enrich/--no-enrich", help="Stat objects whose event lacks content."),
    limit: int = typer.Option(1000, "--limit", min=1, help="With --all: at most N letters."),
    as_json: bool = JSON,
) -> None:
    """Send letters back through their normalizer (or task) and queue them; failures keep the new reason."""
    from mountsync.producers.deadletters.replay import Replayer, ReplayOptions, ReplayResult
    from mountsync.producers.runtime import build_runtime
    from mountsync.shared.catalog.deadletters import DeadLetters

    if bool(letter_ids) == replay_all:
        raise BadInput("give letter ids or --all (see `mountsync deadletters list`)")
    settings = _settings(ctx)
    runtime = build_runtime(settings)
    try:
        store = DeadLetters(runtime.pool)
        ids = letter_ids or store.ids(source=source or None, limit=limit)
        options = ReplayOptions(trust_sequencer=trust_sequencer, enrich=enrich,
                                azure_accounts=tuple(a for a in account or () if a))  # fmt: skip
        replayer = Replayer(runtime, options)
        results: list[ReplayResult] = []
        for letter_id in ids:
            letter = store.get(letter_id)
            if letter.replayed_at is not None and not force:
                results.append(ReplayResult(letter.id, letter.source, "skipped", reason="already replayed"))
                continue
            results.append(replayer.replay(letter))
    finally:
        runtime.close()
    _report([r.describe() for r in results], as_json)
    failed = sum(r.status in ("failed", "unavailable") for r in results)
    if failed:
        # typer.Exit's code is lost with standalone_mode=False; an error sets the exit status.
        raise MountsyncError(f"{failed} dead letter(s) could not be replayed; they stay open with the reason")


def _report(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        emit_json({"results": rows, "replayed": sum(r["status"] == "replayed" for r in rows),
                   "failed": sum(r["status"] in ("failed", "unavailable") for r in rows)})  # fmt: skip
        return
    emit(rows, as_json=False, columns=("id", "source", "status", "changes", "reason"))


def register_root(app: typer.Typer) -> None:
    app.add_typer(deadletters_app, name="deadletters")
