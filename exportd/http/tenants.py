"""Organisations, users and API tokens: who may call the HTTP API, and for what.

They live in the job store's file (tables ``orgs``, ``users`` and ``tokens``,
see :mod:`exportd.engine.schema`).  A token's secret is shown once, when it is
made, and kept only as its SHA-256.  A caller is a user of one organisation:
every job it sees or touches is one of that organisation's.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal, get_args

import msgspec

from exportd.engine.schema import StoreFile, transaction
from exportd.errors import Forbidden, InvalidRequest, NotFound, Unauthorized

Permission = Literal["reports", "settings", "mail-messages", "data-reports:read", "admin"]
PERMISSIONS: tuple[str, ...] = get_args(Permission)
TOKEN_PREFIX = "xd_"
TOKEN_ID_LENGTH = 12
"""Hex digits of a token's hash that name it (48 bits: collisions are not a concern
among one deployment's tokens)."""


class Org(msgspec.Struct, frozen=True, kw_only=True):
    """An organisation: ``active`` while its subscription is; ``benefits`` it paid for."""

    id: str
    name: str
    active: bool = True
    benefits: list[str] = []


class User(msgspec.Struct, frozen=True, kw_only=True):
    """A person (or system) of an organisation."""

    id: str
    org_id: str
    name: str
    email: str | None = None


class Caller(msgspec.Struct, frozen=True, kw_only=True):
    """Who an HTTP request comes from: a user, their org and the token's permissions."""

    user: User
    org: Org
    permissions: list[str]

    def require(self, permission: str) -> None:
        """Raise :class:`Forbidden` unless the subscription is active and the token
        has ``permission``."""
        if not self.org.active:
            raise Forbidden(f"organisation {self.org.id} has no active subscription")
        if permission not in self.permissions:
            raise Forbidden(f"the token lacks the {permission} permission")


class TokenInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A token as the store knows it, without its secret: ``id`` (the start of its
    hash) names it to revoke it."""

    id: str
    user_id: str
    name: str
    permissions: list[str]
    created_at: str


class NewToken(msgspec.Struct, frozen=True, kw_only=True):
    """A token just made: its secret, shown this once, and its ``id``."""

    token: str
    id: str
    user_id: str
    org_id: str
    name: str
    permissions: list[str]


def token_hash(token: str) -> str:
    """What the store keeps of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def now_text() -> str:
    """The current time as the store writes times."""
    return datetime.now(UTC).isoformat()


class TenantStore(StoreFile):
    """The organisations, users and tokens in the job store at ``path``."""

    def create_org(
        self,
        name: str,
        *,
        org_id: str | None = None,
        active: bool = True,
        benefits: list[str] | None = None,
    ) -> Org:
        """Add an organisation (with a new UUID unless ``org_id`` is given)."""
        org = Org(id=org_id or str(uuid.uuid4()), name=name, active=active, benefits=benefits or [])
        with transaction(self._db):
            if self._row("orgs", org.id) is not None:
                raise InvalidRequest.field("id", f"organisation {org.id} exists already")
            self._db.table("orgs").insert(
                {
                    "id": org.id,
                    "name": org.name,
                    "active": org.active,
                    "benefits": msgspec.json.encode(org.benefits).decode(),
                    "created_at": now_text(),
                }
            )
        return org

    def update_org(
        self, org_id: str, *, active: bool | None = None, benefits: list[str] | None = None
    ) -> Org:
        """Change an organisation's subscription or benefits."""
        with transaction(self._db):
            self.org(org_id)  # it must exist
            changes: dict[str, object] = {}
            if active is not None:
                changes["active"] = active
            if benefits is not None:
                changes["benefits"] = msgspec.json.encode(benefits).decode()
            if changes:
                self._db.table("orgs").update(org_id, changes)
        return self.org(org_id)

    def create_user(
        self, org_id: str, name: str, *, user_id: str | None = None, email: str | None = None
    ) -> User:
        """Add a user to an existing organisation."""
        user = User(id=user_id or str(uuid.uuid4()), org_id=org_id, name=name, email=email)
        with transaction(self._db):
            self.org(org_id)
            if self._row("users", user.id) is not None:
                raise InvalidRequest.field("id", f"user {user.id} exists already")
            self._db.table("users").insert(
                {
                    "id": user.id,
                    "org_id": org_id,
                    "name": name,
                    "email": email,
                    "created_at": now_text(),
                }
            )
        return user

    def create_token(
        self, user_id: str, permissions: list[str], *, name: str = "api", token: str | None = None
    ) -> NewToken:
        """Make a token for a user with ``permissions``; its secret is in the answer only
        (``token`` sets the secret, for a migration from another system's tokens)."""
        unknown = sorted(set(permissions) - set(PERMISSIONS))
        if unknown:
            raise InvalidRequest.field(
                "permissions", f"unknown {', '.join(unknown)}; known: {', '.join(PERMISSIONS)}"
            )
        secret = token or TOKEN_PREFIX + secrets.token_urlsafe(32)
        with transaction(self._db):
            user = self.user(user_id)
            self._db.table("tokens").insert(
                {
                    "hash": token_hash(secret),
                    "user_id": user.id,
                    "name": name,
                    "permissions": msgspec.json.encode(sorted(set(permissions))).decode(),
                    "created_at": now_text(),
                }
            )
        return NewToken(
            token=secret,
            id=token_hash(secret)[:TOKEN_ID_LENGTH],
            user_id=user.id,
            org_id=user.org_id,
            name=name,
            permissions=sorted(set(permissions)),
        )

    def tokens(self, user_id: str) -> list[TokenInfo]:
        """A user's tokens, oldest first."""
        self.user(user_id)  # it must exist
        rows = self._db.table("tokens").rows_where(
            "user_id = ?", [user_id], order_by="created_at, hash"
        )
        return [
            TokenInfo(
                id=row["hash"][:TOKEN_ID_LENGTH],
                user_id=row["user_id"],
                name=row["name"],
                permissions=msgspec.json.decode(row["permissions"]),
                created_at=row["created_at"],
            )
            for row in rows
        ]

    def revoke_token(self, token_id: str) -> None:
        """Delete the token whose id is ``token_id``: it stops working at once."""
        if len(token_id) < TOKEN_ID_LENGTH or not token_id.isalnum():
            raise InvalidRequest.field(
                "token_id", f"a token id has {TOKEN_ID_LENGTH} letters and digits"
            )
        with transaction(self._db):
            deleted = self._db.execute(
                "delete from tokens where substr(hash, 1, ?) = ?",
                [len(token_id), token_id.lower()],
            ).rowcount
        if deleted == 0:
            raise NotFound.field("token_id", f"no token {token_id!r}")

    def authenticate(self, token: str) -> Caller:
        """The caller a token belongs to; :class:`Unauthorized` if it is unknown."""
        row = self._row("tokens", token_hash(token), key="hash")
        if row is None:
            raise Unauthorized("the token is missing or unknown")
        user = self.user(row["user_id"])
        return Caller(
            user=user,
            org=self.org(user.org_id),
            permissions=msgspec.json.decode(row["permissions"]),
        )

    def org_emails(self, org_id: str) -> set[str]:
        """The email addresses of an organisation's users, in lower case."""
        rows = self._db.table("users").rows_where(
            "org_id = ? and email is not null", [org_id], select="email"
        )
        return {row["email"].lower() for row in rows}

    def strangers(self, org_id: str, addresses: Iterable[str]) -> list[str]:
        """The addresses of ``addresses`` that are no user's of ``org_id`` (case aside):
        exportd sends files only to its tenants' own people, and is nobody's mail relay."""
        given = list(addresses)
        known = self.org_emails(org_id) if given else set()
        return [address for address in given if address.lower() not in known]

    def org(self, org_id: str) -> Org:
        """The organisation ``org_id``; :class:`NotFound` if there is none."""
        row = self._row("orgs", org_id)
        if row is None:
            raise NotFound.field("org_id", f"no organisation {org_id!r}")
        return _org(row)

    def orgs(self) -> list[Org]:
        """Every organisation, oldest first."""
        return [_org(row) for row in self._db.table("orgs").rows_where(order_by="created_at, id")]

    def user(self, user_id: str) -> User:
        """The user ``user_id``; :class:`NotFound` if there is none."""
        row = self._row("users", user_id)
        if row is None:
            raise NotFound.field("user_id", f"no user {user_id!r}")
        return _user(row)

    def users(self, org_id: str | None = None) -> list[User]:
        """Every user (of ``org_id``, which must exist, if given), oldest first."""
        if org_id is not None:
            self.org(org_id)
        where, args = ("org_id = ?", [org_id]) if org_id is not None else (None, [])
        rows = self._db.table("users").rows_where(where, args, order_by="created_at, id")
        return [_user(row) for row in rows]

    def _row(self, table: str, value: str, *, key: str = "id") -> dict[str, Any] | None:
        return next(self._db.table(table).rows_where(f"{key} = ?", [value]), None)


def _org(row: dict[str, Any]) -> Org:
    return Org(
        id=row["id"],
        name=row["name"],
        active=bool(row["active"]),
        benefits=msgspec.json.decode(row["benefits"]),
    )


def _user(row: dict[str, Any]) -> User:
    return User(id=row["id"], org_id=row["org_id"], name=row["name"], email=row["email"])
