"""Every store of one database, built once (``open_stores``) and passed to whoever needs one: the API and the
adapters take their store from here and never build one.

``StoreSet`` holds the ports: the core ones on the database (``db.accounts``, ``db.devices``, ...) and the campaign,
LwM2M registration, HTTP device, offer, OMA-DM and bootstrap stores beside them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from ..campaign.ports import CallbackStore, CampaignDeviceStore, CampaignStore
from .bootstrap_sqlite import SqliteBootstrapStore
from .campaigns_sqlite import SqliteCampaignStores
from .database import SqlDatabase
from .http_devices_sqlite import SqliteHttpDeviceStore, SqliteOfferStore
from .omadm_sqlite import SqliteOmadmStore
from .ports import BootstrapStore
from .protocol_ports import HttpDeviceStore, OfferStore, OmadmStore, RegistrationStore
from .cluster_ports import ClusterStore
from .cluster_sqlite import SqlClusterStore
from .registrations_sqlite import SqliteRegistrationStore

__all__ = ["StoreSet", "open_stores"]


@dataclass(frozen=True)
class StoreSet:
    db: SqlDatabase
    campaigns: CampaignStore
    campaign_rows: CampaignDeviceStore
    callbacks: CallbackStore
    registrations: RegistrationStore
    http_devices: HttpDeviceStore
    offers: OfferStore
    omadm: OmadmStore
    bootstrap: BootstrapStore
    cluster: ClusterStore


def open_stores(db: SqlDatabase, callback_ttl: timedelta = timedelta(days=3), node: str = "") -> StoreSet:
    """The stores of ``db`` (SQLite or PostgreSQL: the same SQL classes run on both) for the process ``node``."""
    campaigns = SqliteCampaignStores(db, callback_ttl)
    return StoreSet(db=db, campaigns=campaigns.campaigns, campaign_rows=campaigns.rows, callbacks=campaigns.callbacks,
                    registrations=SqliteRegistrationStore(db, node), http_devices=SqliteHttpDeviceStore(db),
                    offers=SqliteOfferStore(db), omadm=SqliteOmadmStore(db), bootstrap=SqliteBootstrapStore(db),
                    cluster=SqlClusterStore(db))
