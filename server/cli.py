"""``lossradar serve | db upgrade|downgrade|current | token create|list|revoke``.

``main(argv)`` takes the command as ``argv[0]`` (the dispatcher in ``lossradar.cli`` passes it
on). Settings come from the ``LOSSRADAR_*`` environment; ``--database-url`` overrides.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from fastapi import FastAPI

from server.settings import Settings

LISTENING = "lossradar serving on"


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {}
    if getattr(args, "database_url", None):
        overrides["database_url"] = args.database_url
    return Settings(**overrides)


def _shown_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _ensure_schema(settings: Settings, *, migrate: bool) -> None:
    """SQLite: upgrade to head (a fresh file just works). PostgreSQL: require head."""
    from alembic.script import ScriptDirectory

    from server.db.engine import is_sqlite
    from server.db.migrate import alembic_config, current, upgrade

    if migrate and is_sqlite(settings.database_url):
        upgrade(settings.database_url)
        return
    head = ScriptDirectory.from_config(alembic_config(settings.database_url)).get_current_head()
    now = current(settings.database_url)
    if now != head:
        raise SystemExit(
            f"lossradar: database {_shown_url(settings.database_url)} is at revision {now!r}, "
            f"not {head!r}; run `lossradar db upgrade` first"
        )


def serve_app(
    app: FastAPI,
    settings: Settings,
    *,
    host: str,
    port: int,
    log_level: str = "info",
    access_log: bool = False,
) -> None:
    """Bind ``host:port`` (0 = any free port), print the `LISTENING` line, run uvicorn."""
    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    settings.port = bound
    config = uvicorn.Config(app, log_level=log_level, access_log=access_log, proxy_headers=True)
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    print(
        f"{LISTENING} http://{shown}:{bound} (database {_shown_url(settings.database_url)})",
        flush=True,
    )
    uvicorn.Server(config).run(sockets=[sock])


def _serve(args: argparse.Namespace) -> int:
    from server.app import create_app

    settings = _settings(args)
    _ensure_schema(settings, migrate=not args.no_migrate)
    serve_app(
        create_app(settings),
        settings,
        host=args.host or settings.host,
        port=settings.port if args.port is None else args.port,
        log_level=args.log_level,
        access_log=args.access_log,
    )
    return 0


def _db(args: argparse.Namespace) -> int:
    from server.db import migrate

    settings = _settings(args)
    if args.action == "upgrade":
        migrate.upgrade(settings.database_url, args.revision or "head")
    elif args.action == "downgrade":
        if not args.revision:
            print(
                "lossradar db downgrade: give a revision, e.g. `base` or `0001_initial`",
                file=sys.stderr,
            )
            return 2
        migrate.downgrade(settings.database_url, args.revision)
    print(f"{_shown_url(settings.database_url)}: {migrate.current(settings.database_url)}")
    return 0


def _token(args: argparse.Namespace) -> int:
    from server.db.engine import make_engine, make_sessionmaker
    from server.tokens import create_token, list_tokens, revoke_token

    settings = _settings(args)
    _ensure_schema(settings, migrate=True)
    engine = make_engine(settings.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            if args.action == "create":
                token, secret = create_token(
                    session=session, name=args.name, scopes=args.scope or ["read", "write"]
                )
                session.commit()
                print(secret)
                print(
                    f"token {token.id} {token.name!r} scopes={token.scopes} "
                    "(shown once; store it now)",
                    file=sys.stderr,
                )
            elif args.action == "list":
                for t in list_tokens(session=session):
                    state = "revoked" if t.revoked_at else "active"
                    print(f"{t.id}\t{t.name}\t{t.prefix}...\t{t.scopes}\t{state}")
            else:
                if not revoke_token(session=session, token_id=args.id):
                    print(f"no active token with id {args.id}", file=sys.stderr)
                    return 1
                session.commit()
                print(f"revoked token {args.id}")
    finally:
        engine.dispose()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lossradar")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the metrics server (uvicorn)")
    serve.add_argument("--host", help="bind address (default LOSSRADAR_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default LOSSRADAR_PORT, 8765; 0 = any)")
    serve.add_argument("--database-url", help="overrides LOSSRADAR_DATABASE_URL")
    serve.add_argument(
        "--no-migrate",
        action="store_true",
        help="do not upgrade a SQLite database to the latest schema on start",
    )
    serve.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.set_defaults(func=_serve)

    db = sub.add_parser("db", help="database migrations")
    db.add_argument("action", choices=["upgrade", "downgrade", "current"])
    db.add_argument("revision", nargs="?", help="target revision (upgrade: default head)")
    db.add_argument("--database-url", help="overrides LOSSRADAR_DATABASE_URL")
    db.set_defaults(func=_db)

    token = sub.add_parser("token", help="API tokens")
    tsub = token.add_subparsers(dest="action", required=True)
    create = tsub.add_parser("create", help="create a token and print it (once)")
    create.add_argument("--name", default="default", help="what the token is for")
    create.add_argument(
        "--scope",
        action="append",
        choices=["read", "write"],
        help="repeatable; default: read and write",
    )
    tsub.add_parser("list", help="list tokens (never their secrets)")
    revoke = tsub.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("id", type=int)
    for p in (create, *tsub.choices.values()):
        if not any(a.dest == "database_url" for a in p._actions):
            p.add_argument("--database-url", help="overrides LOSSRADAR_DATABASE_URL")
    token.set_defaults(func=_token)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except ValueError as exc:
        print(f"lossradar {args.command}: {exc}", file=sys.stderr)
        return 2
