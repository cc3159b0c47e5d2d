"""The auth service on the in-memory store and a fake clock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fota_server.auth import AuthService, hash_secret, verify_secret
from fota_server.clock import FakeClock
from fota_server.errors import InvalidClient, InvalidGrant, InvalidRequest, LoginFailed, Unauthorized
from fota_server.store import MemoryDatabase


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def auth(clock: FakeClock) -> AuthService:
    db = MemoryDatabase()
    return AuthService(db.accounts, db.tokens, clock, timedelta(minutes=60), timedelta(minutes=30))


def _session(auth: AuthService, name: str = "acc-1") -> tuple[object, str, str]:
    creds = auth.create_account(name)
    access = auth.issue_access_token(creds.client_id, creds.client_secret, "client_credentials").value
    session = auth.login(access, creds.username, creds.password).value
    return creds, access, session


def test_secret_hashes_verify_and_are_salted() -> None:
    h1, h2 = hash_secret("s3cret"), hash_secret("s3cret")
    assert h1 != h2 and verify_secret("s3cret", h1) and not verify_secret("s3creT", h1)
    assert not verify_secret("s3cret", "garbage")


def test_full_flow_gives_the_account(auth: AuthService) -> None:
    _, access, session = _session(auth)
    assert auth.authenticate(access, session) == "acc-1"


def test_wrong_client_secret_and_grant(auth: AuthService) -> None:
    creds = auth.create_account("acc-1")
    with pytest.raises(InvalidClient):
        auth.issue_access_token(creds.client_id, "wrong", "client_credentials")
    with pytest.raises(InvalidClient):
        auth.issue_access_token("nobody", creds.client_secret, "client_credentials")
    with pytest.raises(InvalidGrant):
        auth.issue_access_token(creds.client_id, creds.client_secret, "password")


def test_login_needs_a_valid_bearer_and_the_right_password(auth: AuthService) -> None:
    creds = auth.create_account("acc-1")
    access = auth.issue_access_token(creds.client_id, creds.client_secret, "client_credentials").value
    with pytest.raises(Unauthorized):
        auth.login("forged", creds.username, creds.password)
    with pytest.raises(LoginFailed):
        auth.login(access, creds.username, "wrong")


def test_user_of_another_account_cannot_log_in_with_this_client(auth: AuthService) -> None:
    creds1 = auth.create_account("acc-1")
    creds2 = auth.create_account("acc-2")
    access1 = auth.issue_access_token(creds1.client_id, creds1.client_secret, "client_credentials").value
    with pytest.raises(LoginFailed):
        auth.login(access1, creds2.username, creds2.password)


def test_tokens_of_two_accounts_do_not_combine(auth: AuthService) -> None:
    _, access1, _ = _session(auth, "acc-1")
    _, _, session2 = _session(auth, "acc-2")
    with pytest.raises(Unauthorized):
        auth.authenticate(access1, session2)


def test_a_session_token_is_not_a_bearer_token(auth: AuthService) -> None:
    _, access, session = _session(auth)
    with pytest.raises(Unauthorized):
        auth.authenticate(session, access)


def test_session_expires_before_access(auth: AuthService, clock: FakeClock) -> None:
    _, access, session = _session(auth)
    clock.advance(timedelta(minutes=29, seconds=59))
    assert auth.authenticate(access, session) == "acc-1"
    clock.advance(timedelta(seconds=1))
    with pytest.raises(Unauthorized, match="VZ-M2M-Token has expired"):
        auth.authenticate(access, session)


def test_access_expiry_refuses_everything(auth: AuthService, clock: FakeClock) -> None:
    creds, access, session = _session(auth)
    clock.advance(timedelta(minutes=60))
    with pytest.raises(Unauthorized, match="bearer access token has expired"):
        auth.authenticate(access, session)
    with pytest.raises(Unauthorized):
        auth.login(access, creds.username, creds.password)  # type: ignore[attr-defined]


def test_logout_and_password_reset(auth: AuthService) -> None:
    creds, access, session = _session(auth)
    with pytest.raises(LoginFailed):
        auth.reset_password(access, session, "not-the-old-one")
    new_password = auth.reset_password(access, session, creds.password)  # type: ignore[attr-defined]
    with pytest.raises(LoginFailed):
        auth.login(access, creds.username, creds.password)  # type: ignore[attr-defined]
    session2 = auth.login(access, creds.username, new_password).value  # type: ignore[attr-defined]
    auth.logout(access, session2)
    with pytest.raises(Unauthorized):
        auth.authenticate(access, session2)


@pytest.mark.parametrize("name", ["", "has space", "x" * 65, "-leading", "a/b"])
def test_bad_account_names_are_refused(auth: AuthService, name: str) -> None:
    with pytest.raises(InvalidRequest):
        auth.create_account(name)


def test_duplicate_account(auth: AuthService) -> None:
    auth.create_account("acc-1")
    with pytest.raises(InvalidRequest) as info:
        auth.create_account("acc-1")
    assert info.value.error_code == "AccountExists"
