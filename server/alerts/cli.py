"""``lossradar alerts ...``: try a notifier, manage notifiers, list alerts, show rule defaults.

    lossradar alerts test-send --kind slack --url https://hooks.slack.com/services/...
    lossradar alerts test-send --notifier ops          # a notifier stored in the database
    lossradar alerts add-notifier --name ops --kind feishu --url URL [--secret S] [--project P]
    lossradar alerts notifiers | remove-notifier NAME
    lossradar alerts list [--run-id N] [--state firing]
    lossradar alerts rules

``main(argv)`` takes ``argv[0] == "alerts"``. The database is ``LOSSRADAR_DATABASE_URL`` (or
``--database-url``); ``test-send --kind/--url`` needs no database.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.alerts.rules import DEFAULTS
from server.notifiers.base import NotifierConfigError, public_config
from server.notifiers.send import KINDS, Attempt, deliver, kind_of
from server.settings import Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lossradar alerts", description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="overrides LOSSRADAR_DATABASE_URL")
    sub = parser.add_subparsers(dest="action", required=True)
    send = sub.add_parser("test-send", help="send a test message to a notifier")
    send.add_argument("--notifier", help="name of a notifier stored in the database")
    send.add_argument("--kind", choices=sorted(KINDS), help="or: a notifier kind ...")
    send.add_argument("--url", help="... its webhook URL")
    send.add_argument("--secret", help="... and its signing secret, if any")
    send.add_argument("--public-url", help="dashboard URL for links (LOSSRADAR_PUBLIC_URL)")
    send.add_argument("--attempts", type=int, default=3)
    add = sub.add_parser("add-notifier", help="store a notifier")
    add.add_argument("--name", required=True)
    add.add_argument("--kind", required=True, choices=sorted(KINDS))
    add.add_argument("--url", required=True)
    add.add_argument("--secret")
    add.add_argument("--project", help="only alerts of runs in this project")
    sub.add_parser("notifiers", help="list stored notifiers (secrets masked)")
    rm = sub.add_parser("remove-notifier", help="delete a stored notifier")
    rm.add_argument("name")
    ls = sub.add_parser("list", help="list alerts")
    ls.add_argument("--run-id", type=int)
    ls.add_argument("--state", choices=["pending", "firing", "resolved", "inactive"])
    sub.add_parser("rules", help="print every rule's default thresholds (JSON)")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {}
    if args.database_url:
        overrides["database_url"] = args.database_url
    if getattr(args, "public_url", None):
        overrides["public_url"] = args.public_url
    return Settings(**overrides)


@contextmanager
def _session(settings: Settings) -> Iterator[Session]:
    from server.db.engine import is_sqlite, make_engine, make_sessionmaker
    from server.db.migrate import upgrade

    if is_sqlite(settings.database_url):  # as `lossradar serve` does: a fresh file just works
        upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            yield session
    finally:
        engine.dispose()


def _print_attempts(attempts: list[Attempt]) -> int:
    for a in attempts:
        state = "ok" if a.outcome.ok else ("retry" if a.outcome.retry else "failed")
        print(f"attempt {a.number}: {state} ({a.outcome.detail}) in {a.duration_s:.2f} s")
    return 0 if attempts[-1].outcome.ok else 1


def _test_send(args: argparse.Namespace) -> int:
    from server.alerts.test_send import send_test_message, test_message

    settings = _settings(args)
    message = test_message(settings.public_url)
    if args.notifier:
        from server.alerts.models import Notifier

        with _session(settings) as session:
            row = session.scalars(select(Notifier).where(Notifier.name == args.notifier)).first()
            if row is None:
                print(
                    f"no notifier named {args.notifier!r}; see `lossradar alerts notifiers`",
                    file=sys.stderr,
                )
                return 2
            attempts, _ = send_test_message(
                session, row, settings.public_url, attempts=args.attempts
            )
        return _print_attempts(attempts)
    if not (args.kind and args.url):
        print("test-send needs --notifier NAME, or --kind and --url", file=sys.stderr)
        return 2
    kind = kind_of(args.kind)
    config = kind.validate({"url": args.url, **({"secret": args.secret} if args.secret else {})})
    with httpx.Client(timeout=10.0) as client:
        attempts = deliver(
            kind, config, message, client=client, attempts=args.attempts, base_delay=0.5
        )
    return _print_attempts(attempts)


def main(argv: list[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in and args_in[0] == "alerts":
        args_in = args_in[1:]
    args = _parser().parse_args(args_in)
    try:
        if args.action == "test-send":
            return _test_send(args)
        if args.action == "rules":
            shown = {
                r: {k: (v if math.isfinite(v) else None) for k, v in p.items()}
                for r, p in DEFAULTS.items()
            }
            print(json.dumps(shown, indent=2))
            return 0
        return _database_action(args)
    except NotifierConfigError as exc:
        print(f"lossradar alerts: {exc}", file=sys.stderr)
        return 2


def _database_action(args: argparse.Namespace) -> int:
    from server.alerts.models import Alert, Notifier

    with _session(_settings(args)) as session:
        if args.action == "add-notifier":
            kind = kind_of(args.kind)
            raw = {"url": args.url, **({"secret": args.secret} if args.secret else {})}
            if session.scalars(select(Notifier).where(Notifier.name == args.name)).first():
                print(f"a notifier named {args.name!r} exists", file=sys.stderr)
                return 2
            row = Notifier(
                name=args.name,
                kind=args.kind,
                config=kind.validate(raw),
                enabled=True,
                project=args.project,
            )
            session.add(row)
            session.commit()
            print(f"notifier {row.id} {row.name!r} ({row.kind}) added")
            return 0
        if args.action == "notifiers":
            for n in session.scalars(select(Notifier).order_by(Notifier.id)):
                shown = json.dumps(public_config(kind_of(n.kind), n.config))
                print(f"{n.id}\t{n.name}\t{n.kind}\t{'on' if n.enabled else 'off'}\t{shown}")
            return 0
        if args.action == "remove-notifier":
            found = session.scalars(select(Notifier).where(Notifier.name == args.name)).first()
            if found is None:
                print(f"no notifier named {args.name!r}", file=sys.stderr)
                return 2
            session.delete(found)
            session.commit()
            print(f"notifier {args.name!r} removed")
            return 0
        stmt = select(Alert).order_by(Alert.id)
        if args.run_id is not None:
            stmt = stmt.where(Alert.run_id == args.run_id)
        if args.state:
            stmt = stmt.where(Alert.state == args.state)
        for a in session.scalars(stmt):
            print(
                f"{a.id}\trun {a.run_id}\t{a.channel or '-'}\t{a.rule}\t{a.state}\t"
                f"start {a.start_step}\t{a.summary}"
            )
        return 0
