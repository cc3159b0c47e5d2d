"""The only wiring: config -> store -> services -> HTTP app and CoAP site -> running servers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from datetime import timedelta
from pathlib import Path
from typing import Callable, Iterator

import aiocoap
import httpx
import uvicorn
from starlette.applications import Starlette

from .adapters import ddi_http, fota_http, omadm_http
from .adapters.blobs import FileBlobStore
from .adapters.coap_peer_log import quiet_peer_logs
from .adapters.coap_site import build_site
from .adapters.device_asgi import DeviceDispatch
from .adapters.dtls import (
    DtlsHookUnavailable, DtlsSettings, add_coaps_transport, endpoint_lookup_for, psk_lookup_for,
)
from .adapters.http_driver import HttpDriver, HttpFotaSettings
from .adapters.http_limits import uvicorn_limits
from .adapters.attempt_records import MeteredEngine, recorded_rows
from .adapters import metrics_http
from .metrics import Metrics
from .adapters.omadm_driver import OmadmDriver
from .adapters.omadm_http import OmadmSettings
from .adapters.omadm_notify import HttpHookNotifier
from .adapters.port_sharing import bind_failed, check_reuse_port
from .adapters.cluster import ClusterMember
from .store.health import StorageUnavailable
from .adapters.lwm2m_driver import Lwm2mDriver, Lwm2mDriverSettings
from .adapters.lwm2m_routing import RoutedLwm2mDriver
from .adapters.lwm2m_bootstrap import BootstrapServer, BootstrapSettings
from .adapters.lwm2m_root import Lwm2mEndpoint, lwm2m_endpoint
from .adapters.lwm2m_site import Lwm2mSettings
from .bootstrap_config import BootstrapConfigs
from .adapters.runner import EngineHandle, start_engine
from .adapters.scheduler import Scheduler
from .campaign.drivers import ProtocolDriver
from .protocol.lwm2m.device_data import device_id_for_endpoint
from .api import lwm2m_bootstrap
from .api import (
    auth_routes, callbacks, campaigns, device_credentials, device_logging, devices, firmware_sync, health, licenses, management, openapi, packages,
    reports,
)
from .api import lwm2m_explorer
from . import web
from .api.errors import install_error_handlers
from .auth import AuthService
from .campaign.service import CampaignService
from .clock import Clock, SystemClock
from .config import Config
from .devices import DeviceRegistry
from .download_tokens import DownloadTokens, load_or_create_download_key
from .enrolment import Enrolment
from .firmware import FirmwareRepository
from .services import Services
from .signing import load_or_create_signer
from .adapters.tls_cert import UvicornSslOptions, load_or_create_certificate, uvicorn_ssl_options
from .api.firmware_sync import FirmwareVersionRequests
from .store.stores import open_stores
from .store.health import StorageOpenError
from .store.database import open_database

__all__ = ["build_services", "build_http_app", "serve", "RunningServer", "listening_socket"]

log = logging.getLogger("fota_server")


def build_services(config: Config, clock: Clock | None = None) -> Services:
    """Open the database (first: a missing directory is reported, not created) and the data directory;
    either failing raises ``StorageOpenError`` naming the path and why."""
    clock = clock or SystemClock()
    data_dir = config.resolved_data_dir
    db = open_database(config.db_path)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        signer = load_or_create_signer(data_dir / "signing-key.pem")
        download_key = load_or_create_download_key(data_dir / "download-key")
    except OSError as exc:
        db.close()
        raise StorageOpenError("data directory", str(data_dir), exc.strerror or str(exc)) from exc
    auth = AuthService(db.accounts, db.tokens, clock, timedelta(seconds=config.token_ttl_s),
                       timedelta(seconds=config.session_ttl_s))
    firmware = FirmwareRepository(db.packages, FileBlobStore(data_dir / "blobs"), signer, clock,
                                  config.max_firmware_bytes)
    devices = DeviceRegistry(db.accounts, db.devices, db.credentials, clock)
    stores = open_stores(db, timedelta(days=config.callback_ttl_days), config.node)
    metrics = Metrics(db)
    rows = recorded_rows(stores.campaign_rows, metrics)   # attempts counted and logged as they commit
    engine = MeteredEngine(stores.campaigns, rows, db.devices, db.accounts)
    engine.metrics = metrics
    campaigns = CampaignService(
        campaigns=stores.campaigns, rows=rows, callbacks=stores.callbacks, devices=db.devices,
        licenses=db.licenses, packages=db.packages, accounts=db.accounts, clock=clock, engine=engine)
    enrolment = Enrolment(devices, db.devices, config.enroll, config.enroll_max_devices)
    download_tokens = DownloadTokens(download_key, clock.now, config.download_token_ttl_s)
    interval = config.http_checkin_interval_s
    http_driver = HttpDriver(db.devices, db.packages, stores.http_devices, stores.offers,
                             HttpFotaSettings(checkin_interval_s=interval, busy_interval_s=min(30, interval)),
                             stores.campaigns.get_campaign, tokens=download_tokens)
    return Services(config=config, clock=clock, db=db, auth=auth, firmware=firmware, devices=devices,
                    campaigns=campaigns, enrolment=enrolment, download_tokens=download_tokens, stores=stores,
                    bootstrap=BootstrapConfigs(devices, db.devices, db.credentials, stores.bootstrap, clock),
                    firmware_requests=FirmwareVersionRequests(), http_driver=http_driver, metrics=metrics)


def build_http_app(services: Services) -> Starlette:
    app = Starlette(
        # the device routes first: a check-in or a poll is matched at once, not after every management route
        routes=[*fota_http.routes, *ddi_http.routes, *omadm_http.routes,
                *health.routes, *auth_routes.routes, *management.routes, *openapi.routes, *licenses.routes,
                *devices.routes, *packages.routes, *firmware_sync.routes, *campaigns.routes, *reports.routes,
                *callbacks.routes, *device_credentials.routes, *lwm2m_bootstrap.routes, *device_logging.routes, *lwm2m_explorer.routes,
                *metrics_http.routes, *web.routes],
        exception_handlers=install_error_handlers(),
    )
    app.state.services = services
    openapi.install(app.state)
    web.install(app.state)
    return app


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal capture: ``serve`` owns SIGINT/SIGTERM for every server."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class RunningServer:
    """The listeners, the protocol drivers and the campaign engine, started together; ``stop()`` ends them cleanly."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._http: _Uvicorn | None = None
        self._http_task: asyncio.Task[None] | None = None
        self._coap: aiocoap.Context | None = None
        self._lwm2m: Lwm2mEndpoint | None = None
        self._lwm2m_driver: Lwm2mDriver | None = None
        self._bootstrap: BootstrapServer | None = None
        self._engine: EngineHandle | None = None
        self._member: ClusterMember | None = None
        self._routed: RoutedLwm2mDriver | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._hook_client: httpx.AsyncClient | None = None
        self._console: web.ConsoleHub | None = None
        self._metrics_server: metrics_http.MetricsServer | None = None
        self.scheduler = Scheduler(services.clock)   # the process's one timer (adapters/scheduler.py)
        self.stopped = asyncio.Event()

    async def start(self) -> dict[str, int]:
        config = self.services.config
        member = self._join()
        background = getattr(self.services.db, "checkpoint_in_background", None)   # SQLite: the WAL's copy-back
        if background is not None:                                                  # off the event loop
            background()
        sock = listening_socket(config.host, config.http_port, config.reuse_port)
        metrics_sock = listening_socket(config.host, config.metrics_port, config.reuse_port) \
            if config.metrics_port else None
        self.services.ports["http"] = sock.getsockname()[1]
        http_driver, omadm_driver = self.services.http_driver, self._omadm_driver()
        lwm2m_driver = await self._start_coap() if config.coap_enabled else None
        drivers: dict[str, ProtocolDriver] = {"HTTP": http_driver, "OMADM": omadm_driver}
        if lwm2m_driver is not None and config.node:   # commands for devices another process holds
            self._routed = RoutedLwm2mDriver(lwm2m_driver, self.services.stores.cluster, config.node,
                                             self.services.clock, lwm2m_driver.settings.register_wait_s)
            self._routed.start(self.scheduler)
            drivers["LWM2M"] = self._routed
        elif lwm2m_driver is not None:
            drivers["LWM2M"] = lwm2m_driver
        http_app = build_http_app(self.services)
        self._console = http_app.state.console
        app = DeviceDispatch(http_app, self.services.metrics.http_latency.observe)   # check-in, status and DDI
                                                                                       # poll before the router
        self._watch(app)
        self._http = _Uvicorn(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=config.access_log,
                                             log_config=None, **uvicorn_limits(config), **self._tls_options()))
        if config.access_log:   # through the process's log handler (``logs.py``), at INFO
            logging.getLogger("uvicorn.access").setLevel(logging.INFO)
        self._http_task = asyncio.create_task(self._http.serve(sockets=[sock]))
        while not self._http.started:
            if self._http_task.done():
                self._http_task.result()
            await asyncio.sleep(0.01)
        self._engine = engine = await start_engine(self.services, drivers, cluster=member, scheduler=self.scheduler)
        member.on_beat = lambda beat: engine.resync() if beat.gained or beat.gone else None
        self.scheduler.add(member, "cluster heartbeat")
        # a driver that queues an outcome wakes the engine
        http_driver.on_outcome = omadm_driver.on_outcome = self._engine.wake
        if self._routed is not None:
            self._routed.on_outcome = self._engine.wake
        elif lwm2m_driver is not None:
            lwm2m_driver.on_outcome = self._engine.wake
        dispatcher = engine.callbacks   # the engine's callback deliveries
        if dispatcher is not None:
            self.services.metrics.sources.callback_failures = lambda: int(dispatcher.failed)
            self.services.metrics.sources.callback_deliveries = lambda: int(dispatcher.delivered)
        if metrics_sock is not None:   # GET /metrics alone, without credentials (adapters/metrics_http.py)
            self._metrics_server = metrics_http.MetricsServer(self.services.metrics)
            self.services.ports["metrics"] = await self._metrics_server.start(metrics_sock)
        return dict(self.services.ports)

    def _watch(self, dispatch: DeviceDispatch) -> None:
        """Give the metrics the live tables and counters of the parts that started (``metrics.py``)."""
        sources = self.services.metrics.sources
        sources.device_http = dispatch.answered
        if self.services.omadm is not None:
            sources.dm_sessions = self.services.omadm.sessions.ended
        if self._lwm2m is not None:
            server, firmware = self._lwm2m.server, self._lwm2m.firmware
            sources.registrations = lambda: len(server.book)
            sources.rd_results = server.rd_results
            server.rd_latency = self.services.metrics.lwm2m_latency.observe
            sources.coap_firmware_bytes = lambda: firmware.bytes_served

    def _join(self) -> ClusterMember:
        """Claim this process's name on the database (``NodeTaken`` if a live process holds it) and take the
        engine lease if it is free, before anything listens."""
        config = self.services.config
        self._member = member = ClusterMember(self.services.stores.cluster, config.node, self.services.clock,
                                              float(config.node_lease_s))
        member.join()
        try:
            member.beat()
        except StorageUnavailable as exc:   # the lease is taken at a later beat
            log.warning("could not take the engine lease yet: %s", exc.reason)
        return member

    def _omadm_driver(self) -> OmadmDriver:
        config = self.services.config
        hook = None
        if config.omadm_sms_hook_url:
            self._hook_client = httpx.AsyncClient(timeout=10)
            hook = HttpHookNotifier(config.omadm_sms_hook_url, self._hook_client)
        settings = OmadmSettings.of_config(config)
        omadm = omadm_http.build_omadm(self.services, settings, sms_hook=hook)
        self._tasks.append(asyncio.create_task(omadm.run_dispatcher(scheduler=self.scheduler)))
        return omadm.driver

    async def _start_coap(self) -> Lwm2mDriver:
        config = self.services.config
        site = build_site(lambda: health.health_status(self.services))
        self._lwm2m = lwm2m_endpoint(self.services, site, Lwm2mSettings(
            queue_awake_s=float(config.lwm2m_queue_awake_s), device_reads_per_s=float(config.lwm2m_device_reads_per_s),
            busy_max_age_s=config.lwm2m_busy_max_age_s))
        self.services.ports["coap"] = await self._lwm2m.start(config.host, coap_port_to_bind(config),
                                                                 reuse_port=config.reuse_port, scheduler=self.scheduler)
        self._coap = self._lwm2m.context
        self.services.lwm2m_explorer.attach(self._lwm2m.server)
        self._lwm2m.fast_path.trace_to(self.services.device_trace)   # the console's protocol trace
        self._lwm2m.server.listeners.append(self.services.device_trace.on_registration)
        if self._coap is not None:   # aiocoap's line per bad datagram: rate-limited through the peer log
            quiet_peer_logs(self._coap.log)
        campaigns = self.services.campaigns
        self._lwm2m.server.report_listeners.append(
            lambda endpoint, _report: campaigns.offer_device(device_id_for_endpoint(endpoint)[1]))
        if config.coaps_enabled:
            await self._start_coaps()   # a PSK device's plain Register is refused (lwm2m_site.admission_for)
        host = config.advertised_host
        coaps_port = self.services.ports.get("coaps")
        settings = Lwm2mDriverSettings(
            coap_base=f"coap://{_url_host(host)}:{self.services.ports['coap']}",
            coaps_base=f"coaps://{_url_host(host)}:{coaps_port}" if coaps_port else "",
            http_base=f"{'https' if config.https else 'http'}://{_url_host(host)}:{self.services.ports['http']}")
        blobs = FileBlobStore(config.resolved_data_dir / "blobs")
        self._lwm2m_driver = Lwm2mDriver(self._lwm2m.server, self.services.db.packages, blobs, settings,
                                         tokens=self.services.download_tokens)
        self._lwm2m_driver.on_device_back = campaigns.device_back
        self._lwm2m_driver.park(campaigns.unreachable_waiting("LWM2M"))
        if config.bootstrap_enabled:
            await self._start_bootstrap(BootstrapSettings(coap_uri=settings.coap_base, coaps_uri=settings.coaps_base))
        return self._lwm2m_driver

    async def _start_bootstrap(self, settings: BootstrapSettings) -> None:
        """The LwM2M bootstrap server on its own context and ports; CoAPS with the devices' bootstrap PSKs."""
        config = self.services.config
        self._bootstrap = BootstrapServer(self.services.bootstrap, self.services.enrolment, settings)
        dtls = DtlsSettings(idle_timeout_s=float(config.coaps_idle_timeout_s), max_handshakes=config.dtls_max_handshakes)
        self.services.ports.update(await self._bootstrap.start(
            config.host, config.bootstrap_port, config.bootstrap_coaps_port if config.coaps_enabled else None, dtls,
            reuse_port=config.reuse_port, scheduler=self.scheduler))

    async def _start_coaps(self) -> None:
        """CoAPS (DTLS-PSK) in the same CoAP context; a device may register only as its identity's endpoint."""
        config = self.services.config
        assert self._coap is not None
        creds = self.services.db.credentials
        try:
            coaps = await add_coaps_transport(
                self._coap, (config.host, config.coaps_port), psk_lookup_for(creds),
                DtlsSettings(idle_timeout_s=float(config.coaps_idle_timeout_s),
                             max_handshakes=config.dtls_max_handshakes),
                endpoint_lookup=endpoint_lookup_for(creds), reuse_port=config.reuse_port, scheduler=self.scheduler)
        except DtlsHookUnavailable as exc:
            log.error("CoAPS (DTLS-PSK) is off: %s", exc)
            return
        coaps.trace_to(self.services.device_trace)   # the console's protocol trace of CoAPS devices
        self.services.metrics.sources.dtls_sessions = lambda: coaps.session_count
        self.services.ports["coaps"] = coaps.port

    def _tls_options(self) -> UvicornSslOptions:
        config = self.services.config
        if not config.https:
            return {}
        if config.tls_cert_file and config.tls_key_file:
            cert, key = Path(config.tls_cert_file), Path(config.tls_key_file)
        else:
            cert, key = load_or_create_certificate(config.resolved_data_dir / "tls", [config.advertised_host])
        return uvicorn_ssl_options(cert, key, config.tls_client_ca or None)

    async def stop(self) -> None:
        if self._metrics_server is not None:
            await self._metrics_server.stop()
        if self._engine is not None:
            await self._engine.stop()
        self.scheduler.close()   # no timer fires while the parts stop
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._hook_client is not None:
            await self._hook_client.aclose()
        self.services.lwm2m_explorer.close()  # event streams and held explorer requests end: HTTP can stop
        if self._console is not None:
            self._console.close()   # and the console's live pages
        if self._http is not None:
            self._http.should_exit = True
        if self._http_task is not None:
            await self._http_task
        if self._routed is not None:
            await self._routed.stop()
        elif self._lwm2m_driver is not None:
            await self._lwm2m_driver.stop()
        if self._bootstrap is not None:
            await self._bootstrap.stop()
        if self._lwm2m is not None:
            await self._lwm2m.stop()  # flushes registrations, closes CoAP and CoAPS
        if self._member is not None:
            try:
                self._member.leave()   # others may take the name and the engine lease at once
            except StorageUnavailable as exc:
                log.warning("could not mark this process as gone (%s): others wait out its lease", exc.reason)
        self.services.db.close()
        self.stopped.set()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def listening_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A bound TCP socket for uvicorn; with ``reuse_port`` other processes may bind the same port
    (``adapters/port_sharing.py``).

    It is made with proto IPPROTO_TCP so that asyncio sets TCP_NODELAY on the connections it accepts;
    with proto 0 it does not, and every small response then waits about 40 ms for a delayed ACK
    between its header and body writes.
    """
    check_reuse_port(reuse_port)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise bind_failed("HTTP", host, port, exc) from None
    return sock


def coap_port_to_bind(config: Config) -> int:
    """The CoAP port to bind. A port-sharing UDP socket (``--reuse-port``) may be handed, for port 0, a port
    another such socket already holds; so port 0 is resolved here first, with a plain socket that does not
    share (shared ports therefore need fixed port numbers)."""
    if config.coap_port != 0:
        return config.coap_port
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.bind((config.host, 0))
        return int(probe.getsockname()[1])




async def serve(config: Config, on_ready: Callable[[dict[str, int]], None] | None = None) -> None:
    """Run until SIGINT or SIGTERM, then shut down cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before anything starts: a signal at any time stops cleanly
        loop.add_signal_handler(sig, stop.set)
    services = build_services(config)
    server = RunningServer(services)
    ports = await server.start()
    log.info("listening on %s: %s", config.host, ", ".join(f"{k} {v}" for k, v in ports.items()))
    if on_ready:
        on_ready(ports)
    await stop.wait()
    log.info("shutting down")
    await server.stop()
    log.info("stopped")
