"""Vigil's configuration: one typed object, read from `vigil.toml` (or the file `VIGIL_CONFIG`
names) and `VIGIL_*` environment variables, which win. Nested keys use `__` in the
environment: `VIGIL_API__PORT=8401`.

    data_dir = "vigil-data"
    rules = ["/opt/sigma/rules"]
    intel = true

    [api]
    host = "127.0.0.1"
    port = 8400
    max_body_bytes = 33554432   # a request body (inflated, for gzip) at most
    max_records = 100000        # events in one ingest request at most
    docs = true                 # /docs and /openapi.json

    [hunt]
    timeout_s = 60              # a hunt is stopped after this long
    memory_mb = 1024            # and may use this much memory (DuckDB)
    threads = 1
    max_result_bytes = 16777216 # rows sent back at most
    concurrent = 2              # hunts running at once

    [pipeline]
    batch_max = 2000        # events per micro-batch
    batch_wait_ms = 50      # how long a batch waits to fill
    max_lag = 2000000       # events received but not processed before ingest says 503
    fsync = true
    workers = 2             # detection processes (0: in the server's own process)

    [bus]
    url = "nats://127.0.0.1:4222"  # streams on NATS JetStream (none: the embedded logs)

    [backup]
    dest = "/backups/vigil"     # scheduled backups (incremental, into this folder); none: off
    every_s = 3600

    [respond]
    dry_run = true              # every playbook only says what it would do (pilot)
    playbooks = ["/etc/vigil/playbooks"]
    [respond.firewall]
    hosts = { ws1 = ["ssh", "root@ws1"] }   # how to run nft on each host
    management = ["10.0.9.0/24"]            # still reaches an isolated host

    [listeners]
    syslog_udp = 5514
    syslog_tcp = 5514
    tail = ["/var/log/auth.log"]

`[[intel.sources]]` in the same file is read by `vigil intel pull`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from vigil.errors import InputError


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8400
    max_body_bytes: Annotated[int, Field(gt=0)] = 32 << 20
    max_records: Annotated[int, Field(gt=0)] = 100_000  # events in one ingest request
    rate_per_token: Annotated[float, Field(gt=0)] | None = None  # requests/s; None: no limit
    docs: bool = True  # serve /docs and /openapi.json
    tls_cert: Path | None = None  # PEM: serve HTTPS (the console's cookies are then Secure)
    tls_key: Path | None = None


class ConsoleSettings(BaseModel):
    """The web console (`/console`): sessions made from API tokens."""

    enabled: bool = True
    idle_s: Annotated[float, Field(gt=0)] = 1800.0  # a session ends after this long unused
    max_s: Annotated[float, Field(gt=0)] = 43200.0  # and this long after sign-in at most
    # behind a TLS-terminating proxy: cookies Secure though Vigil itself speaks HTTP (None:
    # Secure exactly when Vigil serves HTTPS), and the origin browsers post from when the
    # proxy does not pass the Host they asked for ("https://vigil.example.org")
    secure_cookies: bool | None = None
    origins: list[str] = []


class HuntSettings(BaseModel):
    """Limits of every hunt (API, CLI, saved): no hunt may starve intake or the server."""

    timeout_s: Annotated[float, Field(gt=0)] = 60.0  # wall clock, then the query is stopped
    memory_mb: Annotated[int, Field(ge=16)] = 1024  # DuckDB's memory limit per hunt
    threads: Annotated[int, Field(ge=1, le=64)] = 1  # DuckDB threads per hunt
    max_result_bytes: Annotated[int, Field(gt=0)] = 16 << 20  # of rows sent back
    concurrent: Annotated[int, Field(ge=1, le=64)] = 2  # hunts at once; more wait, then 503


class PipelineSettings(BaseModel):
    batch_max: Annotated[int, Field(gt=0)] = 2000
    batch_wait_ms: Annotated[int, Field(ge=0)] = 50
    max_lag: Annotated[int, Field(gt=0)] = 2_000_000
    fsync: bool = True
    segment_bytes: Annotated[int, Field(gt=1024)] = 64 << 20
    store_events: bool = True
    # processes for parsing, rule and indicator matching and event storage (0: in the
    # server's own process)
    workers: Annotated[int, Field(ge=0, le=64)] = 2
    # /health reports the alert latency over this many seconds
    latency_window_s: Annotated[float, Field(gt=0)] = 30.0


class CorrelateSettings(BaseModel):
    window_s: Annotated[float, Field(gt=0)] = 1800.0  # an incident closes after this quiet time
    span_s: Annotated[float, Field(gt=0)] = 3600.0  # and lasts at most this long
    half_life_s: Annotated[float, Field(gt=0)] = 86400.0  # entity risk halves in this long


class BusSettings(BaseModel):
    """The streams between the stages: the embedded segment logs in the data folder, or NATS
    JetStream when `url` is set (the distributed deployment, docs/scale.md)."""

    url: str | None = None  # nats://host:4222
    prefix: str = "vigil"  # JetStream streams VIGIL-<name> on subjects vigil.<name>
    max_bytes: int = -1  # per stream; -1: no limit (JetStream's own limits apply)
    max_age_s: Annotated[float, Field(ge=0)] = 0.0  # 0: kept until max_bytes
    # `events` is partitioned by host for the detect workers; the same in every process
    partitions: Annotated[int, Field(ge=1, le=1024)] = 8
    lease_s: Annotated[float, Field(gt=0.5, le=300)] = 6.0  # a dead worker's partitions wait this


class BackupSettings(BaseModel):
    """Scheduled backups by `vigil serve` (docs/backup.md); off unless `dest` is set."""

    dest: Path | None = None  # the backup folder, updated in place (incremental)
    every_s: Annotated[float, Field(gt=0)] = 3600.0


class ListenerSettings(BaseModel):
    syslog_udp: Annotated[int | None, Field(ge=0, le=65535)] = None
    syslog_tcp: Annotated[int | None, Field(ge=0, le=65535)] = None
    host: str = "127.0.0.1"
    tail: list[Path] = []


class FirewallSettings(BaseModel):
    """The nftables connector: how to reach each host's ruleset."""

    # host name (lower case) → the command that runs nft there (["ip", "netns", "exec",
    # "lab"], ["ssh", "root@ws1"]); [] runs it here. A host not listed cannot be isolated.
    hosts: dict[str, list[str]] = {}
    here: list[str] = []  # the command prefix for blocks (a gateway's ruleset); [] here
    management: list[str] = []  # addresses and networks a host keeps reaching when isolated
    block_timeout_s: Annotated[int, Field(gt=0)] = 86400


class DirectorySettings(BaseModel):
    url: str | None = None  # ldap://dc1:389, ldaps://...
    bind_dn: str = ""
    password: SecretStr = SecretStr("")
    base: str = ""
    kind: Literal["openldap", "ad"] = "openldap"


class IdpSettings(BaseModel):
    url: str | None = None  # https://corp.okta.com (Okta's Management API shape)
    token: SecretStr = SecretStr("")


class CloudSettings(BaseModel):
    endpoint_url: str | None = None  # none: AWS itself
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None


class RestEndpoint(BaseModel):
    base_url: str
    auth: dict[str, Any] | None = None  # {bearer = "..."}, {basic = [u, p]}, {header = [n, v]}
    headers: dict[str, str] = {}
    verify: bool = True


class NotifySettings(BaseModel):
    webhook_url: SecretStr | None = None  # Slack-compatible incoming webhook
    smtp_host: str | None = None
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = 25
    starttls: bool = False
    username: str | None = None
    password: SecretStr | None = None
    sender: str = "vigil@localhost"
    to: list[str] = []


class GuardrailSettings(BaseModel):
    """Checked by the engine before every action, whatever the playbook says."""

    protected_hosts: list[str] = []  # besides crown jewels and hosts tagged protected_tags
    protected_tags: list[str] = ["protected", "domain-controller", "crown-jewel"]
    # addresses never blocked: loopback, link-local, the internal ranges (own infrastructure)
    never_block: list[str] = [
        "127.0.0.0/8", "::1/128", "169.254.0.0/16", "fe80::/10",
        "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7",
    ]  # fmt: skip
    # actions per action type and window ("20/minute"); over it, a step waits for approval
    rates: dict[str, str] = {
        "firewall.block": "30/minute",
        "firewall.isolate": "5/minute",
        "directory.disable": "10/minute",
        "idp.suspend": "10/minute",
        "idp.clear_sessions": "10/minute",
        "cloud.deactivate_key": "10/minute",
        "notify.webhook": "60/minute",
        "notify.email": "30/minute",
    }
    # runs of one playbook started per window; past it (a storm), new runs wait for approval
    runs: str = "100/minute"
    max_blast_radius: Annotated[int, Field(ge=0)] = 50  # nodes; above it, approval first
    approvers: list[str] = ["responder", "admin"]  # roles approving what a guardrail holds

    @model_validator(mode="after")
    def _rates_parse(self) -> GuardrailSettings:
        from limits import parse

        for name, text in [("runs", self.runs), *self.rates.items()]:
            try:
                parse(text)
            except ValueError:
                raise ValueError(
                    f"rate {name} = {text!r}: write it as 20/minute, 5/second…"
                ) from None
        return self


class RespondSettings(BaseModel):
    """Response playbooks (docs/respond.md)."""

    enabled: bool = True
    shipped: bool = True  # Vigil's own playbooks (vigil/playbooks), beside `playbooks`
    playbooks: list[Path] = []  # files or folders of playbooks
    # global pilot mode: every action only says what it would do; set false for real mode
    dry_run: bool = True
    workers: Annotated[int, Field(ge=1, le=64)] = 4  # runs executed at once
    lease_s: Annotated[float, Field(gt=1, le=600)] = 30.0  # a dead worker's runs wait this
    worker: str | None = None  # this worker's name (default: host name and role)
    firewall: FirewallSettings = FirewallSettings()
    directory: DirectorySettings = DirectorySettings()
    idp: IdpSettings = IdpSettings()
    cloud: CloudSettings = CloudSettings()
    rest: dict[str, RestEndpoint] = {}  # named endpoints for rest.request (EDR, ticketing)
    notify: NotifySettings = NotifySettings()
    guardrails: GuardrailSettings = GuardrailSettings()


class ReceiverSettings(BaseModel):
    """A Shared Signals receiver: pushed to (`push_url`) or polling."""

    id: str
    audience: str
    push_url: str | None = None
    authorization: SecretStr | None = None  # the Authorization header its endpoint wants
    events: list[str] = []  # CAEP event types (none: session-revoked, device-compliance-change)


class ZeroTrustSettings(BaseModel):
    """The access decision point (docs/zerotrust.md)."""

    policies: list[Path] = []  # YAML policy files or folders; none: every request is denied
    issuer: str = "https://vigil.local"  # the `iss` of the Security Event Tokens
    receivers: list[ReceiverSettings] = []
    # the segment policy in force (segments and allowed flows, `vigil segments promote` writes
    # it): observed flows outside it are lateral-movement alerts; none: flows go unchecked
    segments: Path | None = None
    # a proposed policy run beside it: what it would block is counted (GET /api/v1/segments),
    # nothing is alerted on; `vigil segments promote` puts it in force
    segments_staged: Path | None = None
    violation_level: Literal["informational", "low", "medium", "high", "critical"] = "medium"


Role = Literal["all", "intake", "detect", "correlate", "respond", "api"]
ROLES: tuple[str, ...] = get_args(Role)  # `vigil serve --role`; all: every other one


class Settings(BaseSettings):
    """Everything `vigil serve` and the commands need, with its defaults."""

    model_config = SettingsConfigDict(
        env_prefix="VIGIL_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    data_dir: Path = Path("vigil-data")
    database_url: str | None = None
    rules: list[Path] = []
    starter_rules: bool = True  # Vigil's own rules (vigil/rules), loaded beside `rules`
    indicators: bool = True  # match the live indicators of the store
    api: ApiSettings = ApiSettings()
    console: ConsoleSettings = ConsoleSettings()
    pipeline: PipelineSettings = PipelineSettings()
    listeners: ListenerSettings = ListenerSettings()
    correlate: CorrelateSettings = CorrelateSettings()
    hunt: HuntSettings = HuntSettings()
    backup: BackupSettings = BackupSettings()
    bus: BusSettings = BusSettings()
    respond: RespondSettings = RespondSettings()
    zerotrust: ZeroTrustSettings = ZeroTrustSettings()
    events_dir: Path | None = None  # the Parquet event store (default: <data_dir>/events)
    # what this process runs (distributed: `[bus] url` set): intake takes events (API ingest,
    # listeners, tails), detect joins the detect workers, correlate runs the stages after
    # detection, respond runs the playbooks, api answers queries; all: every one of them
    role: Role = "all"

    @model_validator(mode="after")
    def _role_needs_a_bus(self) -> Settings:
        if self.role != "all" and not self.bus.url:
            raise ValueError(
                f"role {self.role} is for the distributed deployment: set [bus] url "
                "(VIGIL_BUS__URL) to the NATS server; embedded, one process runs every stage"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = Path(os.environ.get("VIGIL_CONFIG", "vigil.toml"))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def config_file() -> Path | None:
    """The configuration file in use (`VIGIL_CONFIG`, else `./vigil.toml`), if there is one."""
    path = Path(os.environ.get("VIGIL_CONFIG", "vigil.toml"))
    return path if path.is_file() else None


def _problem(error: Any) -> str:
    """One validation error: where (when a field is at fault), and what."""
    what = str(error["msg"]).removeprefix("Value error, ")
    where = ".".join(str(p) for p in error["loc"])
    return f"{where}: {what}" if where else what


def load_settings(**overrides: Any) -> Settings:
    """The settings, with `overrides` (from command-line options) winning over everything.
    A malformed file or value is an InputError naming what is wrong."""
    from pydantic import ValidationError

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(_problem(error) for error in exc.errors())
        raise InputError(f"configuration: {problems}") from None
    except ValueError as exc:  # a TOML syntax error
        raise InputError(f"configuration: {exc}") from None
