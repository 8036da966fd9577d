"""Organisations, users and tokens: tokens are kept hashed and name their caller."""

from __future__ import annotations

from pathlib import Path

import pytest

from exportd.errors import Forbidden, InvalidRequest, NotFound, Unauthorized
from exportd.http.tenants import TenantStore, token_hash


def test_a_token_names_its_user_org_and_permissions_and_is_kept_only_hashed(
    tmp_path: Path,
) -> None:
    with TenantStore(tmp_path / "jobs.db") as tenants:
        org = tenants.create_org("Acme", benefits=["qna"])
        user = tenants.create_user(org.id, "Ann", email="ann@example.com")
        made = tenants.create_token(user.id, ["reports", "settings"])
        caller = tenants.authenticate(made.token)
        assert (caller.user, caller.org) == (user, org)
        assert caller.permissions == ["reports", "settings"]
        caller.require("reports")
        with pytest.raises(Forbidden, match="lacks the mail-messages permission"):
            caller.require("mail-messages")
        stored = b"".join(path.read_bytes() for path in tmp_path.glob("jobs.db*"))  # and WAL
        assert made.token.encode() not in stored
        assert token_hash(made.token).encode() in stored


def test_an_inactive_subscription_forbids_everything(tmp_path: Path) -> None:
    with TenantStore(tmp_path / "jobs.db") as tenants:
        org = tenants.create_org("Acme", active=False)
        user = tenants.create_user(org.id, "Ann")
        caller = tenants.authenticate(tenants.create_token(user.id, ["reports"]).token)
        with pytest.raises(Forbidden, match="no active subscription"):
            caller.require("reports")
        tenants.update_org(org.id, active=True)
        tenants.authenticate(tenants.create_token(user.id, ["reports"]).token).require("reports")


def test_unknown_things_are_errors_naming_the_field(tmp_path: Path) -> None:
    with TenantStore(tmp_path / "jobs.db") as tenants:
        with pytest.raises(Unauthorized):
            tenants.authenticate("xd_nope")
        with pytest.raises(NotFound, match="org_id"):
            tenants.create_user("nope", "Ann")
        org = tenants.create_org("Acme", org_id="acme")
        with pytest.raises(InvalidRequest, match="exists already"):
            tenants.create_org("Again", org_id="acme")
        user = tenants.create_user(org.id, "Ann")
        with pytest.raises(InvalidRequest, match="permissions") as caught:
            tenants.create_token(user.id, ["reports", "root"])
        assert "unknown root" in caught.value.fields[0].message


def test_a_revoked_token_stops_working_and_others_go_on(tmp_path: Path) -> None:
    with TenantStore(tmp_path / "jobs.db") as tenants:
        org = tenants.create_org("Acme")
        user = tenants.create_user(org.id, "Ann")
        first = tenants.create_token(user.id, ["reports"], name="ci")
        second = tenants.create_token(user.id, ["settings"], name="laptop")
        assert [(t.id, t.name) for t in tenants.tokens(user.id)] == [
            (first.id, "ci"),
            (second.id, "laptop"),
        ]
        tenants.revoke_token(first.id)
        with pytest.raises(Unauthorized):
            tenants.authenticate(first.token)
        assert tenants.authenticate(second.token).permissions == ["settings"]
        with pytest.raises(InvalidRequest, match="token_id"):
            tenants.revoke_token("abc")  # too short to name one token
