"""``mountsync token create | list | revoke``: bearer tokens for the HTTP API."""

from __future__ import annotations

import typer

from mountsync.shared.catalog import tokens
from mountsync.shared.cli import connect_catalog, settings_of
from mountsync.shared.output import console, emit, emit_json

token_app = typer.Typer(help="Bearer tokens for the HTTP API (/api/v1).", no_args_is_help=True)
JSON = typer.Option(False, "--json", help="Print one JSON document on stdout.")


@token_app.command("create")
def create(
    ctx: typer.Context,
    name: str,
    scope: str = typer.Option("read", "--scope", help="read, or write (also allows the POST routes)."),
    as_json: bool = JSON,
) -> None:
    """Create a token; it is printed once and only its hash is kept."""
    with connect_catalog(settings_of(ctx)) as conn:
        token = tokens.create_token(conn, name, scope)
    if as_json:
        emit_json({"name": name, "scope": scope, "token": token})
    else:
        console.print(f"token {name!r} ({scope}); shown once, store it now:\n{token}")


@token_app.command("list")
def list_(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Tokens by name and scope (never the token itself)."""
    with connect_catalog(settings_of(ctx)) as conn:
        rows = [t.describe() for t in tokens.list_tokens(conn)]
    emit(rows, as_json=as_json, columns=("name", "scope", "created_at", "last_used_at"))


@token_app.command("revoke")
def revoke(ctx: typer.Context, name: str, as_json: bool = JSON) -> None:
    """Delete a token; requests carrying it get 401 from now on."""
    with connect_catalog(settings_of(ctx)) as conn:
        tokens.revoke_token(conn, name)
    if as_json:
        emit_json({"revoked": name})
    else:
        console.print(f"token {name!r} revoked")


def register_root(app: typer.Typer) -> None:
    app.add_typer(token_app, name="token")
