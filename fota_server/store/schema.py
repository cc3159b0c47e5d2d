"""The SQLite schema as an ordered list of migrations.

Each migration is applied once, in order, inside a transaction, and recorded in
``schema_migrations``. Never edit a released migration; append a new one.
Instants are stored as ISO 8601 UTC text (``2026-01-01T00:00:00+00:00``) so that text order is time order.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS"]

_V1 = """
CREATE TABLE accounts (
    name TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    license_count INTEGER NOT NULL DEFAULT 0,
    purchase_type TEXT NOT NULL DEFAULT 'TS-HFOTA-EVNT',
    settings TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE api_clients (
    client_id TEXT PRIMARY KEY,
    account_name TEXT NOT NULL REFERENCES accounts(name),
    secret_hash TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE users (
    username TEXT PRIMARY KEY,
    account_name TEXT NOT NULL REFERENCES accounts(name),
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE tokens (
    token_hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('access', 'session')),
    account_name TEXT NOT NULL REFERENCES accounts(name),
    subject TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX tokens_expires ON tokens(expires_at);

CREATE TABLE devices (
    device_id TEXT PRIMARY KEY,
    account_name TEXT NOT NULL REFERENCES accounts(name),
    protocol TEXT NOT NULL,
    imei TEXT NOT NULL DEFAULT '',
    mdn TEXT NOT NULL DEFAULT '',
    make TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL DEFAULT '',
    firmware_version TEXT NOT NULL DEFAULT '',
    software_version TEXT NOT NULL DEFAULT '',
    serving_cell TEXT NOT NULL DEFAULT '',
    line_status TEXT NOT NULL DEFAULT 'active',
    last_seen_at TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX devices_account ON devices(account_name, device_id);

CREATE TABLE device_credentials (
    device_id TEXT NOT NULL REFERENCES devices(device_id),
    kind TEXT NOT NULL CHECK (kind IN ('psk', 'http_token', 'omadm')),
    identity TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (device_id, kind)
);
CREATE UNIQUE INDEX device_credentials_identity ON device_credentials(kind, identity);

CREATE TABLE licenses (
    device_id TEXT PRIMARY KEY REFERENCES devices(device_id),
    account_name TEXT NOT NULL REFERENCES accounts(name),
    assigned_at TEXT NOT NULL
);
CREATE INDEX licenses_account ON licenses(account_name, device_id);
CREATE TABLE license_cancel_list (
    account_name TEXT NOT NULL REFERENCES accounts(name),
    device_id TEXT NOT NULL,
    added_at TEXT NOT NULL,
    PRIMARY KEY (account_name, device_id)
);

CREATE TABLE packages (
    package_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('firmware', 'software', 'config')),
    name TEXT NOT NULL,
    account_name TEXT REFERENCES accounts(name),
    make TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL DEFAULT '',
    version_from TEXT NOT NULL DEFAULT '',
    version_to TEXT NOT NULL DEFAULT '',
    protocol TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    signature TEXT NOT NULL,
    release_note TEXT NOT NULL DEFAULT '',
    file_name TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX packages_name ON packages(kind, COALESCE(account_name, ''), name);

CREATE TABLE campaigns (
    campaign_id TEXT PRIMARY KEY,
    account_name TEXT NOT NULL REFERENCES accounts(name),
    api_version TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'firmware',
    name TEXT NOT NULL DEFAULT '',
    package_id TEXT REFERENCES packages(package_id),
    package_name TEXT NOT NULL DEFAULT '',
    protocol TEXT NOT NULL,
    make TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL DEFAULT '',
    firmware_from TEXT NOT NULL DEFAULT '',
    firmware_to TEXT NOT NULL DEFAULT '',
    start_date TEXT NOT NULL,
    end_date TEXT NOT NULL,
    windows TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    auto_assign_license INTEGER NOT NULL DEFAULT 0,
    auto_add_devices INTEGER NOT NULL DEFAULT 0,
    is_pilot INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    start_at TEXT NOT NULL,
    end_at TEXT NOT NULL,
    wake_at TEXT,
    attempts_finished INTEGER NOT NULL DEFAULT 0,
    attempts_failed INTEGER NOT NULL DEFAULT 0,
    open_devices INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX campaigns_account ON campaigns(account_name, status, campaign_id);
CREATE INDEX campaigns_wake ON campaigns(wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX campaigns_pilot ON campaigns(account_name, make, model, firmware_from, firmware_to) WHERE is_pilot = 1;

CREATE TABLE campaign_devices (
    campaign_id TEXT NOT NULL REFERENCES campaigns(campaign_id),
    device_id TEXT NOT NULL,
    account_name TEXT NOT NULL,
    status TEXT NOT NULL,
    result_reason TEXT NOT NULL DEFAULT '',
    cell TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL,
    recent_attempt_at TEXT,
    next_attempt_at TEXT,
    wake_at TEXT,
    attempt_id TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    unreachable_count INTEGER NOT NULL DEFAULT 0,
    queued_at TEXT,
    queue TEXT NOT NULL DEFAULT '',
    queue_key TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (campaign_id, device_id)
);
CREATE INDEX campaign_devices_wake ON campaign_devices(wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX campaign_devices_status ON campaign_devices(campaign_id, status, device_id);
CREATE INDEX campaign_devices_device ON campaign_devices(device_id);
CREATE INDEX campaign_devices_queue ON campaign_devices(account_name, queue_key, queued_at)
    WHERE status = 'UpgradeQueued';
CREATE INDEX campaign_devices_updating ON campaign_devices(account_name, cell) WHERE status = 'UpgradeInProgress';

CREATE TABLE attempts (
    attempt_id TEXT PRIMARY KEY,
    campaign_id TEXT NOT NULL REFERENCES campaigns(campaign_id),
    device_id TEXT NOT NULL,
    protocol TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    outcome TEXT NOT NULL DEFAULT 'running',
    result_code TEXT NOT NULL DEFAULT '',
    result_reason TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX attempts_one_running ON attempts(device_id) WHERE outcome = 'running';
CREATE INDEX attempts_device ON attempts(device_id, started_at);
CREATE INDEX attempts_campaign ON attempts(campaign_id, started_at);

CREATE TABLE callbacks (
    account_name TEXT NOT NULL REFERENCES accounts(name),
    api_version TEXT NOT NULL,
    name TEXT NOT NULL,
    url TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (account_name, api_version, name)
);
CREATE TABLE callback_events (
    event_id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_name TEXT NOT NULL,
    url TEXT NOT NULL,
    ordering_key TEXT NOT NULL DEFAULT '',
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    delivered_at TEXT
);
CREATE INDEX callback_events_due ON callback_events(next_attempt_at) WHERE delivered_at IS NULL;
CREATE INDEX callback_events_order ON callback_events(url, ordering_key, event_id) WHERE delivered_at IS NULL;
CREATE INDEX callback_events_account ON callback_events(account_name, event_id) WHERE delivered_at IS NULL;
CREATE INDEX callback_events_url_due ON callback_events(url, next_attempt_at) WHERE delivered_at IS NULL;

CREATE TABLE device_logging (
    device_id TEXT PRIMARY KEY,
    account_name TEXT NOT NULL REFERENCES accounts(name),
    expires_at TEXT NOT NULL
);
CREATE TABLE device_logs (
    log_id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL,
    account_name TEXT NOT NULL,
    logged_at TEXT NOT NULL,
    log_type TEXT NOT NULL DEFAULT 'Event',
    event_log TEXT NOT NULL DEFAULT '',
    binary_data TEXT NOT NULL DEFAULT ''
);
CREATE INDEX device_logs_device ON device_logs(device_id, logged_at);
CREATE TABLE checkins (
    checkin_id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL,
    account_name TEXT NOT NULL,
    checked_in_at TEXT NOT NULL,
    client_version TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT ''
);
CREATE INDEX checkins_device ON checkins(device_id, checked_in_at);

"""

MIGRATIONS: list[str] = [_V1]

# LwM2M registrations (``store/registrations_sqlite.py``).
MIGRATIONS.append("""
CREATE TABLE lwm2m_registrations (
    reg_id TEXT PRIMARY KEY,
    endpoint TEXT NOT NULL UNIQUE,
    lifetime_s INTEGER NOT NULL,
    version TEXT NOT NULL,
    binding TEXT NOT NULL,
    queue_mode INTEGER NOT NULL DEFAULT 0,
    sms TEXT NOT NULL DEFAULT '',
    objects TEXT NOT NULL DEFAULT '',
    address TEXT NOT NULL DEFAULT '',
    identity TEXT NOT NULL DEFAULT '',
    attributes TEXT NOT NULL DEFAULT '[]',
    registered_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX lwm2m_registrations_updated ON lwm2m_registrations(updated_at);
""")

# HTTP pull FOTA: offers, their outcome outbox and DDI attributes (``store/http_devices_sqlite.py``).
MIGRATIONS.append("""
CREATE TABLE http_offers (
    offer_id INTEGER PRIMARY KEY AUTOINCREMENT,
    attempt_id TEXT NOT NULL UNIQUE,
    campaign_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    package_id TEXT NOT NULL,
    version_to TEXT NOT NULL,
    state TEXT NOT NULL,
    install_allowed INTEGER NOT NULL DEFAULT 1,
    schedules TEXT NOT NULL DEFAULT '{}',
    result_code TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX http_offers_device ON http_offers(device_id, state);
CREATE TABLE http_device_attributes (
    device_id TEXT PRIMARY KEY,
    attributes TEXT NOT NULL DEFAULT '{}',
    updated_at TEXT NOT NULL
);
CREATE TABLE http_outcomes (
    outcome_id INTEGER PRIMARY KEY AUTOINCREMENT,
    attempt_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
)
""")

# OMA-DM: the nonces of both directions and the Package 0 address per device, and the FUMO job of each
# running attempt (``store/omadm_sqlite.py``).
MIGRATIONS.append("""
CREATE TABLE omadm_nonces (
    device_id TEXT PRIMARY KEY,
    server_nonce BLOB NOT NULL DEFAULT x'',
    client_nonce BLOB NOT NULL DEFAULT x'',
    trigger_addr TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL
);
CREATE TABLE omadm_jobs (
    attempt_id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL UNIQUE,
    package_id TEXT NOT NULL,
    firmware_to TEXT NOT NULL,
    state TEXT NOT NULL,
    triggers_sent INTEGER NOT NULL DEFAULT 0,
    next_trigger_at TEXT,
    session_ids TEXT NOT NULL DEFAULT '[]',
    updated_at TEXT NOT NULL
)
""")

# OMA-DM: the outbox of attempt outcomes the engine has not recorded yet, written in the same transaction as
# the job change they come from and deleted when the engine acknowledges them (``store/omadm_sqlite.py``).
MIGRATIONS.append("""
CREATE TABLE IF NOT EXISTS omadm_outcomes (
    outcome_id INTEGER PRIMARY KEY AUTOINCREMENT,
    attempt_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
)
""")

# LwM2M bootstrap server: per-device bootstrap configuration and bootstrap PSK (``store/bootstrap_sqlite.py``).
# The bootstrap PSK lives here, apart from the DM PSK in device_credentials.
MIGRATIONS.append("""
CREATE TABLE lwm2m_bootstrap (
    device_id TEXT PRIMARY KEY REFERENCES devices(device_id),
    security TEXT NOT NULL DEFAULT '' CHECK (security IN ('', 'psk', 'nosec')),
    server_uri TEXT NOT NULL DEFAULT '',
    lifetime_s INTEGER NOT NULL DEFAULT 0,
    bootstrap_identity TEXT,
    bootstrap_key TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX lwm2m_bootstrap_identity ON lwm2m_bootstrap(bootstrap_identity)
""")

# LwM2M delivery method per device (``deliveryMethod``, ``protocol/delivery.py``): overrides any campaign's
# unless 'auto'. Campaigns keep theirs in the JSON of ``campaigns.windows``.
MIGRATIONS.append("""
ALTER TABLE devices ADD COLUMN delivery_method TEXT NOT NULL DEFAULT 'auto'
""")

# Several processes on one database (``store/cluster_sqlite.py``): each process's name and heartbeat, the
# leases one process holds at a time (the campaign engine's), and the commands one process hands to the one
# that holds a device's LwM2M registration. A registration row names the process holding it and its device.
MIGRATIONS.append("""
CREATE TABLE cluster_nodes (
    node TEXT PRIMARY KEY,
    instance TEXT NOT NULL,
    host TEXT NOT NULL DEFAULT '',
    pid INTEGER NOT NULL DEFAULT 0,
    started_at TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,
    gone INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE cluster_leases (
    lease TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    held_until TEXT NOT NULL
);
CREATE TABLE device_commands (
    command_id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL,
    attempt_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    posted_by TEXT NOT NULL,
    posted_at TEXT NOT NULL
);
CREATE INDEX device_commands_device ON device_commands(device_id);
CREATE INDEX device_commands_attempt ON device_commands(attempt_id);
ALTER TABLE lwm2m_registrations ADD COLUMN node TEXT NOT NULL DEFAULT '';
ALTER TABLE lwm2m_registrations ADD COLUMN device_id TEXT NOT NULL DEFAULT '';
CREATE INDEX lwm2m_registrations_node ON lwm2m_registrations(node);
CREATE INDEX lwm2m_registrations_device ON lwm2m_registrations(device_id)
""")

# OMA-DM with several processes: the DM session a FUMO job is handed to, so that a write from any other
# session (of this process or another) no longer applies (``store/omadm_sqlite.py``).
MIGRATIONS.append("""
ALTER TABLE omadm_jobs ADD COLUMN holder TEXT NOT NULL DEFAULT ''
""")

# The registrations' index on updated_at served no query (expiry is kept in memory, ``RegistrationBook``), and
# every Register and Update rewrote it.
MIGRATIONS.append("""
DROP INDEX IF EXISTS lwm2m_registrations_updated
""")
