"""The campaign engine: pure logic over store ports, time passed in as ``now`` (see ``engine``, ``service``)."""

from .drivers import (
    AttemptCancelled, AttemptOutcome, AttemptProgressed, CancelAttempt, DeviceUnreachable, DriverCommand,
    InstallPackage, PackageDownloaded, ProtocolDriver, SimulatedDevice, SimulatedDriver, StartAttempt,
    UpdateFailed, UpdateSucceeded,
)
from .engine import CampaignEngine
from .model import (
    Attempt, Campaign, CampaignDevice, CampaignSpec, CampaignStatus, DeviceResult, DeviceStatus, ErrorThreshold,
    TimeWindow,
)
from .service import CampaignService, DevicePage

__all__ = [
    "CampaignEngine", "CampaignService", "DevicePage", "Campaign", "CampaignSpec", "CampaignStatus",
    "CampaignDevice", "DeviceStatus", "DeviceResult", "Attempt", "TimeWindow", "ErrorThreshold",
    "StartAttempt", "InstallPackage", "CancelAttempt", "DriverCommand", "AttemptOutcome", "AttemptProgressed",
    "PackageDownloaded", "UpdateSucceeded", "UpdateFailed", "DeviceUnreachable", "AttemptCancelled",
    "ProtocolDriver", "SimulatedDevice", "SimulatedDriver",
]
