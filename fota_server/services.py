"""The services a request handler or adapter may use, built once by ``app.py``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .adapters.device_trace import DeviceTrace
from .adapters.lwm2m_explorer import Lwm2mExplorer
from .auth import AuthService
from .campaign.service import CampaignService
from .clock import Clock
from .config import Config
from .devices import DeviceRegistry
from .download_tokens import DownloadTokens
from .enrolment import Enrolment
from .firmware import FirmwareRepository
from .metrics import Metrics
from .store.database import SqlDatabase
from .store.stores import StoreSet

if TYPE_CHECKING:   # these modules take the Services they are given
    from .adapters.http_driver import HttpDriver
    from .adapters.omadm_http import OmadmServer
    from .api.firmware_sync import FirmwareVersionRequests
    from .bootstrap_config import BootstrapConfigs

__all__ = ["Services"]


@dataclass
class Services:
    config: Config
    clock: Clock
    db: SqlDatabase
    auth: AuthService
    firmware: FirmwareRepository
    devices: DeviceRegistry
    campaigns: CampaignService
    enrolment: Enrolment
    download_tokens: DownloadTokens
    stores: StoreSet
    bootstrap: BootstrapConfigs
    firmware_requests: FirmwareVersionRequests
    http_driver: HttpDriver
    # the OMA-DM endpoint, once ``omadm_http.build_omadm`` made it (``fota-server run`` does at start)
    omadm: OmadmServer | None = None
    ports: dict[str, int] = field(default_factory=dict)
    # the running LwM2M server for the device explorer API, attached when CoAP starts (empty with CoAP off)
    lwm2m_explorer: Lwm2mExplorer = field(default_factory=Lwm2mExplorer)
    # the protocol trace of the devices the web console watches (``adapters/device_trace.py``)
    device_trace: DeviceTrace = field(default_factory=DeviceTrace)
    # the process's Prometheus metrics (``metrics.py``); ``build_services`` gives it the database
    metrics: Metrics = field(default_factory=Metrics)
