"""Domain errors of the campaign engine. The REST layer maps the base classes (InvalidRequest, NotFound,
Conflict) to statuses in one table (``api/errors.py``); ``error_code`` is what the API user sees."""

from __future__ import annotations

from ..errors import Conflict, InvalidRequest, NotFound

__all__ = [
    "CampaignNotFound", "InvalidCampaign", "InvalidDates", "InvalidWindow", "PilotRequired",
    "InvalidTransition", "TooManyDevices", "ListenerNotFound", "InvalidListener",
]


class CampaignNotFound(NotFound):
    error_code = "CampaignNotFound"


class InvalidCampaign(InvalidRequest):
    error_code = "InvalidCampaign"


class InvalidDates(InvalidRequest):
    error_code = "InvalidDates"


class InvalidWindow(InvalidRequest):
    error_code = "WindowOutOfRange"


class TooManyDevices(InvalidRequest):
    error_code = "TooManyDevices"


class PilotRequired(InvalidRequest):
    """The campaign is over the pilot cap for its make, model and firmwareFrom->firmwareTo (DESIGN.md "Pilot")."""

    error_code = "PilotCampaignRequired"


class InvalidTransition(Conflict):
    """The campaign is not in a state that allows this change (e.g. cancel after start, dates after end)."""

    error_code = "InvalidTransition"


class ListenerNotFound(NotFound):
    error_code = "CallbackNotFound"


class InvalidListener(InvalidRequest):
    error_code = "InvalidCallbackUrl"
