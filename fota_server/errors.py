"""Domain errors raised by the services and the engine; ``api/errors.py`` maps them to HTTP in one table.

Each carries an ``error_code`` (the ``errorCode`` an API user sees) and a message that says
what is wrong in terms the user can act on.
"""

from __future__ import annotations

__all__ = [
    "DomainError", "InvalidRequest", "NotFound", "Conflict",
    "AuthError", "InvalidClient", "InvalidGrant", "Unauthorized", "LoginFailed",
]


class DomainError(Exception):
    error_code = "Error"

    def __init__(self, message: str, error_code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if error_code is not None:
            self.error_code = error_code


class InvalidRequest(DomainError):
    """The request is well-formed but asks for something invalid."""

    error_code = "InvalidRequest"


class NotFound(DomainError):
    """The thing named does not exist for this account (another account's things look the same)."""

    error_code = "NotFound"


class Conflict(DomainError):
    """The thing is not in a state that allows the change."""

    error_code = "Conflict"


class AuthError(DomainError):
    error_code = "UnAuthorized"


class InvalidClient(AuthError):
    """OAuth client authentication failed (unknown client, wrong secret, no Basic header)."""

    error_code = "invalid_client"


class InvalidGrant(AuthError):
    """The OAuth request asked for a grant type other than client_credentials."""

    error_code = "unsupported_grant_type"


class Unauthorized(AuthError):
    """A bearer or session token is missing, unknown, expired or belongs to another account."""

    error_code = "UnAuthorized"


class LoginFailed(AuthError):
    """Session login with a wrong username or password."""

    error_code = "InvalidCredentials"
