"""Which OMA-DM client a DM session authenticates against (reference §6; issue 12, enrolment).

* A device with an OMA-DM credential (``fota-server device omadm``, the credentials API) authenticates
  with its own user name and secret; the server's SRVCRED is derived from that secret.
* With ``--enroll ACCOUNT`` and an enrolment secret set on ACCOUNT (``fota-server account
  omadm-enrol-secret ACCOUNT --secret S``), a device that belongs to no account authenticates with the
  account's enrolment user name and secret. Only the inner digest ``B64(H(user ":" secret))`` (enough for
  MD5 digest and MAC) and the SRVCRED derived from the secret are stored, in the account's settings. On
  success the device is added to ACCOUNT (``Enrolment.admit``) and keeps a copy of those derived values as
  its own OMA-DM credential (identity ``enrolled:<device id>``, secret ``derived:<json>``; the user name
  it authenticates with is in the JSON), so changing the account's secret later does not lock it out.
* Anyone else is refused with a SyncML 401 and nothing is stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..devices import check_omadm
from ..enrolment import Admitted, Refused
from ..errors import NotFound
from ..protocol.omadm.digests import inner_digest, server_password
from ..protocol.omadm.server_auth import DeviceCredential
from ..records import Credential
from ..services import Services

__all__ = [
    "CREDENTIAL_KIND", "ENROLMENT_SETTING", "ClientIdentity", "OmadmAccess", "device_key",
    "set_enrolment_secret",
]

CREDENTIAL_KIND = "omadm"
_ENROLLED_IDENTITY, _DERIVED_SECRET = "enrolled:", "derived:"
ENROLMENT_SETTING = "omadm_enrolment"
DEFAULT_ENROLMENT_USER = "enrol"
_ID_PREFIXES = ("IMEI:", "MEID:", "ESN:", "IMSI:")


@dataclass(frozen=True)
class ClientIdentity:
    """What a new DM session checks the client against. ``enrolling``: the enrolment credential of
    ``account``; the device is admitted only once it authenticated."""

    device_id: str
    credential: DeviceCredential
    srvcred: str
    enrolling: bool = False
    account: str = ""


def candidate_ids(dev_id: str) -> list[str]:
    """The DevId as sent, then without an ``IMEI:``-style prefix (how devices are usually added)."""
    ids = [dev_id]
    for prefix in _ID_PREFIXES:
        if dev_id.upper().startswith(prefix):
            ids.append(dev_id[len(prefix):])
    return ids


def device_key(dev_id: str) -> str:
    """The device id a DevId stands for (prefix dropped): one throttle count and one enrolment id per device."""
    return candidate_ids(dev_id)[-1]


def set_enrolment_secret(services: Services, account: str, user: str, secret: str) -> dict[str, str]:
    """Store the account's OMA-DM enrolment credential as derived values (never the secret itself)."""
    check_omadm(user, secret)
    if services.db.accounts.get_account(account) is None:
        raise NotFound(f"account {account!r} not found", "AccountNotFound")
    value = {"user": user, "digest": inner_digest(user, secret), "srvcred": server_password(secret)}
    services.db.accounts.update_settings(account, {ENROLMENT_SETTING: value})
    return {"account": account, "user": user}


class OmadmAccess:
    def __init__(self, services: Services) -> None:
        self._services = services

    def identify(self, dev_id: str, loc_name: str, mac_user: str) -> ClientIdentity | None:
        """The device's own credential, else (enrolment on) the enrolment credential; None: refuse."""
        own = self._own(dev_id, loc_name)
        return own if own is not None else self._enrolment(dev_id, loc_name or mac_user)

    def _own(self, dev_id: str, loc_name: str) -> ClientIdentity | None:
        store = self._services.db.credentials
        if loc_name:
            found = store.find_by_identity(CREDENTIAL_KIND, loc_name)
            if found is not None and found.device_id in candidate_ids(dev_id):
                return _identity_of(found)
        for candidate in candidate_ids(dev_id):
            found = store.get_credential(candidate, CREDENTIAL_KIND)
            if found is not None:
                return _identity_of(found)
        return None

    def _enrolment(self, dev_id: str, user: str) -> ClientIdentity | None:
        enrolment = self._services.enrolment
        if not enrolment.enabled:
            return None
        account = self._services.db.accounts.get_account(enrolment.account)
        value = None if account is None else account.settings.get(ENROLMENT_SETTING)
        if not isinstance(value, dict) or (user and user != value.get("user")):
            return None
        identity = _derived(device_key(dev_id), value)
        return ClientIdentity(identity.device_id, identity.credential, identity.srvcred, True, enrolment.account)

    def srvcred_of(self, device_id: str) -> str | None:
        """The server password (SRVCRED) a Package 0 to this device is signed with."""
        identity = self._own(device_id, "")
        return None if identity is None else identity.srvcred

    def admit(self, identity: ClientIdentity, peer: str) -> Admitted | Refused:
        """A device that authenticated with the enrolment credential: added to the enrolment account (or found
        there without an OMA-DM credential) and given the enrolment credential as its own."""
        admission = self._services.enrolment.admit(identity.device_id, "OMADM", peer=peer, account=identity.account)
        if isinstance(admission, Refused):
            return admission
        if admission.device.account_name != identity.account:
            return Refused("unknown", f"device belongs to another account than {identity.account}")
        cred = identity.credential
        secret = _DERIVED_SECRET + json.dumps({"user": cred.username, "digest": cred.inner,
                                               "srvcred": identity.srvcred})
        stored = Credential(identity.device_id, CREDENTIAL_KIND, _ENROLLED_IDENTITY + identity.device_id, secret,
                            self._services.clock.now())
        if not self._services.db.credentials.set_credential(stored):
            return Refused("invalid", "the device's credential could not be stored")
        return admission


def _identity_of(credential: Credential) -> ClientIdentity:
    """A provisioned credential (secret in clear), or one enrolment gave (derived values only)."""
    if credential.identity.startswith(_ENROLLED_IDENTITY) and credential.secret.startswith(_DERIVED_SECRET):
        try:
            value = json.loads(credential.secret[len(_DERIVED_SECRET):])
        except ValueError:
            value = None
        if isinstance(value, dict) and value.get("digest") and value.get("srvcred"):
            return _derived(credential.device_id, value)
    return _plain(credential)


def _plain(credential: Credential) -> ClientIdentity:
    return ClientIdentity(credential.device_id, DeviceCredential(credential.identity, credential.secret),
                          server_password(credential.secret))


def _derived(device_id: str, value: dict[str, Any]) -> ClientIdentity:
    credential = DeviceCredential(str(value.get("user", "")), digest=str(value.get("digest", "")))
    return ClientIdentity(device_id, credential, str(value.get("srvcred", "")))
