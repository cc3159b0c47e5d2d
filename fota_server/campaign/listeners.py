"""Callback listeners of an account (v1 ``name`` "Fota"; v2/v3 one URL per account and version)."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..clock import Clock
from .errors import InvalidListener, ListenerNotFound
from .model import API_VERSIONS, CallbackEvent, CallbackListener
from .ports import CallbackStore

__all__ = ["ListenerBook", "MAX_URL_LEN", "check_url"]

MAX_URL_LEN = 2048


def check_url(url: str) -> str:
    """An absolute http(s) URL with a host; HTTPS ones are delivered with verified TLS."""
    url = url.strip()
    if not url or len(url) > MAX_URL_LEN:
        raise InvalidListener(f"callback url must be 1..{MAX_URL_LEN} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidListener("callback url must be an absolute http:// or https:// URL")
    if any(ch.isspace() for ch in url):
        raise InvalidListener("callback url must not contain white space")
    return url


class ListenerBook:
    def __init__(self, store: CallbackStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def register(self, account: str, api_version: str, url: str, name: str = "Fota") -> CallbackListener:
        if api_version not in API_VERSIONS:
            raise InvalidListener(f"api version {api_version!r} is not one of {', '.join(API_VERSIONS)}")
        if not name or len(name) > 64:
            raise InvalidListener("callback name must be 1..64 characters")
        listener = CallbackListener(account, api_version, name, check_url(url), self._clock.now())
        self._store.set_listener(listener)
        return listener

    def listeners(self, account: str, api_version: str | None = None) -> list[CallbackListener]:
        return self._store.get_listeners(account, api_version)

    def delete(self, account: str, api_version: str, name: str = "Fota") -> None:
        if not self._store.delete_listener(account, api_version, name[:64]):
            raise ListenerNotFound(f"no callback {name[:64]!r} registered for {api_version} in account {account!r}")

    def pending(self, account: str, limit: int) -> list[CallbackEvent]:
        return self._store.pending_events(account, max(1, min(limit, 1000)))
