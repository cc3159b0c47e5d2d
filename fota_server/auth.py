"""Accounts, API clients, users and tokens, as the ThingSpace SMS API does auth (api reference §3).

An account has an OAuth client (id + secret, for ``POST /api/ts/v1/oauth2/token``) and a user
(username + password, for ``POST /api/m2m/v1/session/login``). Management calls need both the
bearer access token and the VZ-M2M session token, unexpired and of the same account.
Secrets and passwords are stored as scrypt hashes; tokens as SHA-256 of their value.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from .clock import Clock
from .errors import InvalidClient, InvalidGrant, InvalidRequest, LoginFailed, Unauthorized
from .records import Account, ApiClient, Token, User
from .store.ports import AccountStore, TokenStore

__all__ = ["AuthService", "AccountCredentials", "hash_secret", "verify_secret", "ACCOUNT_NAME_RE"]

ACCOUNT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
MAX_SECRET_LEN = 256


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, dklen=32, **_SCRYPT)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def verify_secret(secret: str, stored: str) -> bool:
    try:
        scheme, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt" or len(secret) > MAX_SECRET_LEN:
            return False
        digest = hashlib.scrypt(secret.encode(), salt=base64.b64decode(salt_b64), dklen=32, **_SCRYPT)
        return hmac.compare_digest(digest, base64.b64decode(digest_b64))
    except ValueError:
        return False


def _token_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class AccountCredentials:
    account_name: str
    client_id: str
    client_secret: str
    username: str
    password: str


@dataclass(frozen=True)
class IssuedToken:
    value: str
    expires_in: int


class AuthService:
    def __init__(
        self, accounts: AccountStore, tokens: TokenStore, clock: Clock,
        token_ttl: timedelta = timedelta(hours=1), session_ttl: timedelta = timedelta(hours=1),
    ) -> None:
        self._accounts = accounts
        self._tokens = tokens
        self._clock = clock
        self._token_ttl = token_ttl
        self._session_ttl = session_ttl

    def create_account(self, name: str, license_count: int = 100) -> AccountCredentials:
        if not ACCOUNT_NAME_RE.match(name):
            raise InvalidRequest(
                f"account name {name!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        now = self._clock.now()
        if not self._accounts.create_account(Account(name, now, license_count, "TS-HFOTA-EVNT")):
            raise InvalidRequest(f"account {name!r} already exists", "AccountExists")
        creds = AccountCredentials(
            account_name=name,
            client_id=secrets.token_hex(16),
            client_secret=secrets.token_urlsafe(32),
            username=f"{name}-user",
            password=secrets.token_urlsafe(18),
        )
        self._accounts.add_api_client(ApiClient(creds.client_id, name, hash_secret(creds.client_secret), now))
        if not self._accounts.add_user(User(creds.username, name, hash_secret(creds.password), now)):
            raise InvalidRequest(f"username {creds.username!r} is taken", "UserExists")
        return creds

    def _issue(self, kind: str, account_name: str, subject: str, ttl: timedelta) -> IssuedToken:
        value = secrets.token_urlsafe(32)
        now = self._clock.now()
        self._tokens.add_token(Token(_token_hash(value), kind, account_name, subject, now, now + ttl))
        return IssuedToken(value, int(ttl.total_seconds()))

    def issue_access_token(self, client_id: str, client_secret: str, grant_type: str) -> IssuedToken:
        """OAuth2 client credentials (RFC 6749 §4.4)."""
        client = self._accounts.get_api_client(client_id)
        if client is None or not verify_secret(client_secret, client.secret_hash):
            raise InvalidClient("client authentication failed: unknown client id or wrong secret")
        if grant_type != "client_credentials":
            raise InvalidGrant(f"grant_type {grant_type!r} is not supported; use client_credentials")
        return self._issue("access", client.account_name, client.client_id, self._token_ttl)

    def _valid(self, value: str, kind: str, what: str) -> Token:
        if not value:
            raise Unauthorized(f"{what} is missing")
        token = self._tokens.get_token(_token_hash(value))
        if token is None or token.kind != kind:
            raise Unauthorized(f"{what} is not valid")
        if token.expires_at <= self._clock.now():
            raise Unauthorized(f"{what} has expired")
        return token

    def login(self, access_token: str, username: str, password: str) -> IssuedToken:
        access = self._valid(access_token, "access", "bearer access token")
        user = self._accounts.get_user(username)
        if user is None or not verify_secret(password, user.password_hash):
            raise LoginFailed("wrong username or password")
        if user.account_name != access.account_name:
            raise LoginFailed("wrong username or password")
        return self._issue("session", user.account_name, user.username, self._session_ttl)

    def logout(self, access_token: str, session_token: str) -> None:
        self.authenticate(access_token, session_token)
        self._tokens.revoke_token(_token_hash(session_token))

    def reset_password(self, access_token: str, session_token: str, old_password: str) -> str:
        session = self._valid(session_token, "session", "VZ-M2M-Token")
        self.authenticate(access_token, session_token)
        user = self._accounts.get_user(session.subject)
        if user is None or not verify_secret(old_password, user.password_hash):
            raise LoginFailed("oldPassword is wrong")
        new_password = secrets.token_urlsafe(18)
        if not self._accounts.set_password_hash(user.username, hash_secret(new_password), user.password_hash):
            raise LoginFailed("the password changed meanwhile; try again")
        return new_password

    def authenticate(self, access_token: str, session_token: str) -> str:
        """Both tokens valid and of one account; returns the account name."""
        access = self._valid(access_token, "access", "bearer access token")
        session = self._valid(session_token, "session", "VZ-M2M-Token")
        if access.account_name != session.account_name:
            raise Unauthorized("the bearer token and the VZ-M2M-Token belong to different accounts")
        return access.account_name
