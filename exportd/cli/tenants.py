"""``exportd orgs|users|tokens ...``: who may use the HTTP API.

Each prints what its user needs next, as ``key: value`` lines (a block of them per
record for a listing), or with ``--json`` as JSON: an object, or a list of them.
``create`` prints the ids, and the token, which is shown this once; ``orgs update``
changes a subscription or benefits; ``tokens list`` and ``tokens revoke`` manage a
user's tokens.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from exportd.config import Settings
from exportd.http.tenants import PERMISSIONS, TenantStore

Command = Callable[[argparse.Namespace, Settings], int]


def add_parser(commands: Any, name: str, help_: str) -> None:
    """Add the ``orgs``, ``users`` or ``tokens`` command, ``name``, to the ``exportd``
    parser."""
    ACTIONS[name](_command(commands, name, help_))


def _org_actions(orgs: Any) -> None:
    """The actions of ``exportd orgs``: create, list, update."""
    org = _action(orgs, "create", "add an organisation and print its id", create_org)
    org.add_argument("name", help="what to call it")
    org.add_argument("--id", help="its id (default: a new UUID)")
    org.add_argument("--inactive", action="store_true", help="without an active subscription")
    org.add_argument(
        "--benefit", action="append", default=[], help="a benefit, such as qna (repeatable)"
    )
    _action(orgs, "list", "every organisation, oldest first", list_orgs)
    update = _action(
        orgs, "update", "change an organisation's subscription or benefits", update_org
    )
    update.add_argument("org_id", metavar="ORG_ID", help="the organisation's id")
    subscription = update.add_mutually_exclusive_group()
    subscription.add_argument(
        "--active", action="store_true", default=None, help="with an active subscription"
    )
    subscription.add_argument("--inactive", dest="active", action="store_false", help="without one")
    update.add_argument(
        "--benefit",
        action="append",
        help="a benefit it has (repeatable; replaces the list; --benefit '' for none)",
    )


def _user_actions(users: Any) -> None:
    """The actions of ``exportd users``: create, list."""
    user = _action(users, "create", "add a user and print its id", create_user)
    user.add_argument("org_id", metavar="ORG_ID", help="the id of the user's organisation")
    user.add_argument("name", help="the user's name")
    user.add_argument("--id", help="its id (default: a new UUID)")
    user.add_argument("--email", help="the user's email address")
    listing = _action(users, "list", "every user, oldest first", list_users)
    listing.add_argument("--org", metavar="ID", help="only the users of organisation ID")


def _token_actions(tokens: Any) -> None:
    """The actions of ``exportd tokens``: create, list, revoke."""
    token = _action(tokens, "create", "make a token for a user and print it once", create_token)
    token.add_argument("user_id", metavar="USER_ID", help="the id of the token's user")
    token.add_argument(
        "--permission",
        action="append",
        choices=PERMISSIONS,
        default=[],
        help="a permission (repeatable; default: reports)",
    )
    token.add_argument("--name", default="api", help="what the token is for")
    listing = _action(tokens, "list", "a user's tokens (their ids, never the secrets)", list_tokens)
    listing.add_argument("user_id", metavar="USER_ID", help="the user's id")
    revoke = _action(tokens, "revoke", "delete a token: it stops working at once", revoke_token)
    revoke.add_argument(
        "token_id", metavar="TOKEN_ID", help="the id `tokens create` or `tokens list` printed"
    )


ACTIONS: dict[str, Callable[[Any], None]] = {
    "orgs": _org_actions,
    "users": _user_actions,
    "tokens": _token_actions,
}
"""Each tenant command, and what adds its actions to its sub-parsers."""


def _command(commands: Any, name: str, help_: str) -> Any:
    """A command of ``exportd`` whose actions are sub-commands; its sub-parsers."""
    parser = commands.add_parser(
        name,
        help=help_,
        description=f"{help_[0].upper()}{help_[1:]}, in the job store (EXPORTD_HOME/jobs.db) "
        "of the engine's host.",
    )
    return parser.add_subparsers(title="actions", dest="action", required=True, metavar="ACTION")


def _action(actions: Any, name: str, help_: str, run: Command) -> argparse.ArgumentParser:
    """An action of a tenant command, with ``--json``, that ``run`` carries out."""
    parser: argparse.ArgumentParser = actions.add_parser(
        name, help=help_, description=f"{help_[0].upper()}{help_[1:]}."
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(run=run)
    return parser


def create_org(args: argparse.Namespace, settings: Settings) -> int:
    """Add an organisation."""
    with TenantStore(settings.jobs_path) as tenants:
        org = tenants.create_org(
            args.name, org_id=args.id, active=not args.inactive, benefits=args.benefit
        )
    show(org, json=args.json)
    return 0


def list_orgs(args: argparse.Namespace, settings: Settings) -> int:
    """Print every organisation."""
    with TenantStore(settings.jobs_path) as tenants:
        show_all(tenants.orgs(), "no organisations", json=args.json)
    return 0


def update_org(args: argparse.Namespace, settings: Settings) -> int:
    """Change an organisation's subscription or benefits."""
    benefits = None if args.benefit is None else [b for b in args.benefit if b]
    with TenantStore(settings.jobs_path) as tenants:
        org = tenants.update_org(args.org_id, active=args.active, benefits=benefits)
    show(org, json=args.json)
    return 0


def create_user(args: argparse.Namespace, settings: Settings) -> int:
    """Add a user to an organisation."""
    with TenantStore(settings.jobs_path) as tenants:
        user = tenants.create_user(args.org_id, args.name, user_id=args.id, email=args.email)
    show(user, json=args.json)
    return 0


def list_users(args: argparse.Namespace, settings: Settings) -> int:
    """Print every user, or an organisation's."""
    with TenantStore(settings.jobs_path) as tenants:
        show_all(tenants.users(args.org), "no users", json=args.json)
    return 0


def create_token(args: argparse.Namespace, settings: Settings) -> int:
    """Make a token for a user."""
    with TenantStore(settings.jobs_path) as tenants:
        token = tenants.create_token(args.user_id, args.permission or ["reports"], name=args.name)
    show(token, json=args.json)
    return 0


def list_tokens(args: argparse.Namespace, settings: Settings) -> int:
    """Print a user's tokens."""
    with TenantStore(settings.jobs_path) as tenants:
        show_all(tenants.tokens(args.user_id), "no tokens", json=args.json)
    return 0


def revoke_token(args: argparse.Namespace, settings: Settings) -> int:
    """Delete a token."""
    with TenantStore(settings.jobs_path) as tenants:
        tenants.revoke_token(args.token_id)
    if args.json:
        print(msgspec.json.encode({"revoked": args.token_id}).decode())
    else:
        print(f"revoked: {args.token_id}")
    return 0


def show(record: msgspec.Struct, *, json: bool) -> None:
    """Print ``record`` as ``key: value`` lines, or as a JSON object."""
    if json:
        print(msgspec.json.encode(record).decode())
        return
    for key, value in msgspec.to_builtins(record).items():
        text = ", ".join(value) if isinstance(value, list) else value
        print(f"{key}: {'' if text is None else text}")


def show_all(records: Sequence[msgspec.Struct], none: str, *, json: bool) -> None:
    """Print ``records`` as blocks of lines (or ``none`` if there are none), or as a JSON
    list."""
    if json:
        print(msgspec.json.encode(records).decode())
        return
    for number, record in enumerate(records):
        if number:
            print()
        show(record, json=False)
    if not records:
        print(none)
