"""``exportd orgs|users|tokens ...``: who may use the HTTP API.

Each prints what its user needs next, as ``key: value`` lines: the ids, and
the token, which is shown this once.  ``orgs update`` changes a subscription or
benefits; ``tokens list`` and ``tokens revoke`` manage a user's tokens.
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
    update = orgs.add_parser("update", help="change an organisation's subscription or benefits")
    update.add_argument("org_id")
    subscription = update.add_mutually_exclusive_group()
    subscription.add_argument("--active", action="store_true", default=None)
    subscription.add_argument("--inactive", dest="active", action="store_false")
    update.add_argument(
        "--benefit",
        action="append",
        help="a benefit it has (repeatable; replaces the list; --benefit '' for none)",
    )
    update.set_defaults(run=update_org)

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
    listing = tokens.add_parser("list", help="a user's tokens (their ids, never the secrets)")
    listing.add_argument("user_id")
    listing.set_defaults(run=list_tokens)
    revoke = tokens.add_parser("revoke", help="delete a token: it stops working at once")
    revoke.add_argument("token_id", help="the id `tokens create` or `tokens list` printed")
    revoke.set_defaults(run=revoke_token)


def create_org(args: argparse.Namespace, settings: Settings) -> int:
    """Add an organisation."""
    with TenantStore(settings.jobs_path) as tenants:
        org = tenants.create_org(
            args.name, org_id=args.id, active=not args.inactive, benefits=args.benefit
        )
    show(org)
    return 0


def update_org(args: argparse.Namespace, settings: Settings) -> int:
    """Change an organisation's subscription or benefits."""
    benefits = None if args.benefit is None else [b for b in args.benefit if b]
    with TenantStore(settings.jobs_path) as tenants:
        org = tenants.update_org(args.org_id, active=args.active, benefits=benefits)
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


def list_tokens(args: argparse.Namespace, settings: Settings) -> int:
    """Print a user's tokens, a block of lines each."""
    with TenantStore(settings.jobs_path) as tenants:
        tokens = tenants.tokens(args.user_id)
    for number, token in enumerate(tokens):
        if number:
            print()
        show(token)
    if not tokens:
        print("no tokens")
    return 0


def revoke_token(args: argparse.Namespace, settings: Settings) -> int:
    """Delete a token."""
    with TenantStore(settings.jobs_path) as tenants:
        tenants.revoke_token(args.token_id)
    print(f"revoked: {args.token_id}")
    return 0


def show(record: msgspec.Struct) -> None:
    """Print ``record`` as ``key: value`` lines."""
    for key, value in msgspec.to_builtins(record).items():
        text = ", ".join(value) if isinstance(value, list) else value
        print(f"{key}: {'' if text is None else text}")
