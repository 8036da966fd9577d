"""``exportd orgs|users|tokens create``: who may use the HTTP API.

Each prints what its user needs next, as ``key: value`` lines: the ids, and
the token, which is shown this once.
"""

from __future__ import annotations

import argparse
from typing import Any

import msgspec

from exportd.config import Settings
from exportd.engine.tenants import PERMISSIONS, TenantStore


def add_parser(commands: Any) -> None:
    """Add the ``orgs``, ``users`` and ``tokens`` commands to the ``exportd`` parser."""
    orgs = commands.add_parser("orgs", help="add organisations (tenants)").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    org = orgs.add_parser("create", help="add an organisation and print its id")
    org.add_argument("name")
    org.add_argument("--id", help="its id (default: a new UUID)")
    org.add_argument("--inactive", action="store_true", help="without an active subscription")
    org.add_argument(
        "--benefit", action="append", default=[], help="a benefit, such as qna (repeatable)"
    )
    org.set_defaults(run=create_org)

    users = commands.add_parser("users", help="add users to organisations").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    user = users.add_parser("create", help="add a user and print its id")
    user.add_argument("org_id")
    user.add_argument("name")
    user.add_argument("--id", help="its id (default: a new UUID)")
    user.add_argument("--email")
    user.set_defaults(run=create_user)

    tokens = commands.add_parser("tokens", help="make API tokens").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    token = tokens.add_parser("create", help="make a token for a user and print it once")
    token.add_argument("user_id")
    token.add_argument(
        "--permission",
        action="append",
        choices=PERMISSIONS,
        default=[],
        help="a permission (repeatable; default: reports)",
    )
    token.add_argument("--name", default="api", help="what the token is for")
    token.set_defaults(run=create_token)


def create_org(args: argparse.Namespace, settings: Settings) -> int:
    """Add an organisation."""
    with TenantStore(settings.jobs_path) as tenants:
        org = tenants.create_org(
            args.name, org_id=args.id, active=not args.inactive, benefits=args.benefit
        )
    show(org)
    return 0


def create_user(args: argparse.Namespace, settings: Settings) -> int:
    """Add a user to an organisation."""
    with TenantStore(settings.jobs_path) as tenants:
        user = tenants.create_user(args.org_id, args.name, user_id=args.id, email=args.email)
    show(user)
    return 0


def create_token(args: argparse.Namespace, settings: Settings) -> int:
    """Make a token for a user."""
    with TenantStore(settings.jobs_path) as tenants:
        token = tenants.create_token(args.user_id, args.permission or ["reports"], name=args.name)
    show(token)
    return 0


def show(record: msgspec.Struct) -> None:
    """Print ``record`` as ``key: value`` lines."""
    for key, value in msgspec.to_builtins(record).items():
        text = ", ".join(value) if isinstance(value, list) else value
        print(f"{key}: {'' if text is None else text}")
