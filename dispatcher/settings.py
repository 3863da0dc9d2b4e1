"""Settings: environment variables prefixed `YUJING_`, or a `.env` file.

Every field here is documented in `.env.example`; a test keeps the two in step.
Secrets are `SecretStr` so they never print in logs, reprs or error messages.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from channels.base import Addressing, Medium
from channels.registry import DECLARATIONS
from dispatcher.ratelimit import parse_rates
from dispatcher.settingsjson import json_setting

#: Channels that can carry people's messages by default: declared as an SMS to a
#: phone (the console among them, standing in for one in drills).
PEOPLE_CHANNELS: tuple[str, ...] = tuple(
    sorted(
        name
        for name, d in DECLARATIONS.items()
        if d.addressing is Addressing.PHONE and d.medium is Medium.SMS
    )
)


#: The forecast feeds YUJING_FEED / YUJING_FEEDS may name.
FEED_NAMES: tuple[str, ...] = ("openmeteo", "qweather", "replay")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="YUJING_",
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,  # `KEY=` in a copied .env.example means "default"
        extra="ignore",
        hide_input_in_errors=True,  # an error must not echo a secret's value
    )

    # --- where things are
    config_dir: Path = Field(
        Path("examples/liulin"),
        description="County configuration directory (county.yaml, zones.yaml, people.yaml, rules/)",
    )
    database_url: str = Field(
        "sqlite:///var/yujing.db",
        description="SQLAlchemy URL; PostgreSQL: postgresql+psycopg://user:pass@host/db",
    )
    timezone: str = Field("Asia/Shanghai", description="Display timezone and local-day boundary")

    # --- forecast feed
    feed: Literal["openmeteo", "qweather", "replay"] = Field(
        "openmeteo", description="Forecast source (one; YUJING_FEEDS for several)"
    )
    feeds: str = Field(
        "",
        description="Several forecast sources in order, e.g. openmeteo,qweather: the first "
        "serves, the next serves what it fails or lacks (docs/feeds.md); empty: YUJING_FEED",
    )
    replay_file: Path | None = Field(None, description="Recorded Open-Meteo JSON for feed=replay")
    replay_rebase: bool = Field(
        True,
        description="Shift the recording by whole days so its issue day is today (rehearsals: "
        "the daemon then warns as `yujing drill --at` the recorded instant)",
    )
    replay_at: datetime | None = Field(
        None,
        description="The recording's issue time: with rebase, the recorded day from it is "
        "replayed today, the current time of day picking the instant",
    )
    openmeteo_url: str = Field("https://api.open-meteo.com/v1/forecast")
    openmeteo_api_key: SecretStr | None = Field(None, description="Only for the commercial API")
    openmeteo_batch_size: int = Field(50, ge=1, le=1000, description="Locations per request")
    openmeteo_forecast_days: int = Field(7, ge=1, le=16)
    openmeteo_past_days: int = Field(
        5, ge=0, le=92, description="Past days: 72 h drops of local-day minima need 4 whole days"
    )
    qweather_api_host: str | None = Field(
        None,
        description="Your QWeather project's API host (console → settings), e.g. "
        "abc1234xyz.re.qweatherapi.com",
    )
    qweather_path: str = Field(
        "/v7/grid-weather/72h",
        description="QWeather hourly forecast: /v7/grid-weather/72h (grid, at the coordinates) "
        "or /v7/weather/168h (168 h, nearest city)",
    )
    qweather_key_id: str | None = Field(None, description="JWT credential id (the `kid`)")
    qweather_project_id: str | None = Field(None, description="JWT project id (the `sub`)")
    qweather_private_key: SecretStr | None = Field(
        None, description="Ed25519 private key: PEM text or the path of the PEM file"
    )
    qweather_api_key: SecretStr | None = Field(
        None, description="Legacy API key, when no JWT credential is set"
    )
    qweather_max_concurrency: int = Field(
        4, ge=1, le=64, description="QWeather requests in flight at once (one per location)"
    )
    point_resolution_deg: float = Field(
        0.02, gt=0, description="Zones closer than this grid share one forecast point"
    )
    # --- official warnings (CAP, issue 15; docs/feeds.md)
    cap_sources: str = Field(
        "",
        description="CAP sources, comma-separated: Atom/RSS index or message URLs, directories "
        "or files of CAP messages; empty: no official warnings are read",
    )
    qweather_warnings: bool = Field(
        False,
        description="Read QWeather's official weather warnings at the forecast points on the "
        "CAP schedule (needs the YUJING_QWEATHER_* credentials; docs/feeds.md)",
    )
    cap_poll_seconds: int = Field(
        120, ge=5, description="How often the CAP sources (and QWeather's warnings) are read"
    )
    cap_max_bytes: int = Field(
        1 << 20, ge=1024, le=16 << 20, description="A CAP message larger than this is refused"
    )
    poll_interval_seconds: int = Field(1800, ge=1)
    poll_jitter_seconds: int = Field(60, ge=0)
    feed_retries: int = Field(4, ge=0, description="Retries of one request (429, 5xx, timeout)")
    feed_backoff_seconds: float = Field(2.0, ge=0, description="First retry delay; doubles")
    http_timeout_seconds: float = Field(20.0, gt=0)

    # --- alerts and rules
    alert_hold_seconds: int = Field(
        10800, ge=0, description="Calm this long before a warning steps down or resolves"
    )
    alert_cooldown_seconds: int = Field(
        21600, ge=0, description="A resolved warning is not re-issued this soon unless higher"
    )
    rules_watch_seconds: float = Field(
        5.0, gt=0, description="How often the daemon looks for edited rule files"
    )

    # --- escalation and acknowledgement deadlines (issue 5)
    escalation_poll_seconds: float = Field(
        15.0, gt=0, description="How often due escalation steps and deadlines are run"
    )
    ack_deadline_blue_seconds: int = Field(
        7200, ge=60, description="A blue warning not acknowledged by then is overdue (迟报)"
    )
    ack_deadline_yellow_seconds: int = Field(
        5400, ge=60, description="A yellow warning not acknowledged by then is overdue"
    )
    ack_deadline_orange_seconds: int = Field(
        900, ge=60, description="An orange warning not acknowledged by then is overdue"
    )
    ack_deadline_red_seconds: int = Field(
        600, ge=60, description="A red warning not acknowledged by then is overdue"
    )

    # --- delivery
    channel: str = Field(
        "auto",
        description="auto: twilio_sms when Twilio is configured, else console; or a channel "
        "that sends SMS to a phone (PEOPLE_CHANNELS)",
    )
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from_number: str | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_api_base: str = Field(
        "https://api.twilio.com", description="Override only to point at a test double"
    )
    twilio_voice_from_number: str | None = Field(
        None, description="Voice-capable caller number (default: the SMS number)"
    )
    twilio_voice_name: str = Field(
        "Polly.Zhiyu",
        description="Twilio <Say> voice for calls: a Mandarin one (Polly.Zhiyu, "
        "Google.cmn-CN-Standard-A); alice is retired for Chinese",
    )
    twilio_voice_language: str = Field(
        "cmn-CN", description="Twilio <Say> language, matching the voice (cmn-CN for Mandarin)"
    )
    wecom_robots: SecretStr | None = Field(None, description='JSON {"id": "webhook key"}')
    dingtalk_robots: SecretStr | None = Field(
        None, description='JSON {"id": {"access_token": "…", "secret": "SEC…"}}'
    )
    feishu_bots: SecretStr | None = Field(
        None, description='JSON {"id": {"hook_id": "…", "secret": "…"}}'
    )
    webhook_targets: SecretStr | None = Field(
        None, description='JSON {"id": {"url": "https://…", "secret": "…"}}'
    )
    broadcast_base_url: str | None = Field(None, description="Village broadcast gateway URL")
    broadcast_profile: str = Field(
        "generic", description="Built-in vendor profile name, or the path of a profile YAML"
    )
    broadcast_username: str | None = None
    broadcast_secret: SecretStr | None = None
    public_base_url: str | None = Field(
        None, description="Public URL of this server, for provider status callbacks"
    )
    secret_key: SecretStr | None = Field(
        None, description="Signs ack links and console sessions; unset: random per process"
    )
    ack_link_ttl_seconds: int = Field(
        86400, ge=60, description="How long an acknowledgement link in a message stays valid"
    )
    delivery_concurrency: int = Field(
        32, ge=1, description="Messages in flight at once (all channels together)"
    )
    delivery_max_attempts: int = Field(8, ge=1)
    delivery_backoff_seconds: float = Field(5.0, ge=0, description="First retry delay; doubles")
    delivery_backoff_max_seconds: float = Field(600.0, ge=0)
    delivery_lease_seconds: float = Field(
        120.0, gt=0, description="A claimed row not finished by then is claimed again"
    )
    delivery_poll_seconds: float = Field(1.0, gt=0, description="Outbox poll when idle")
    delivery_ttl_blue_seconds: float = Field(7200.0, gt=0)
    delivery_ttl_yellow_seconds: float = Field(3600.0, gt=0)
    delivery_ttl_orange_seconds: float = Field(1200.0, gt=0)
    delivery_ttl_red_seconds: float = Field(600.0, gt=0)
    delivery_probe_seconds: float = Field(
        60.0,
        gt=0,
        description="A channel that lost messages for good and sent nothing since is "
        "probed with one of them this often (seconds); given-up messages are looked at "
        "every min(this, 10) s and re-sent when their channel recovers",
    )
    outbox_priority_aging_seconds: float = Field(
        300.0,
        gt=0,
        description="When a rate limit binds, red goes first, then orange, yellow, blue; "
        "a message due for longer than this counts as red",
    )
    rate_limits: str = Field(
        "", description="Per-channel send rates, e.g. twilio_sms=100/s,dingtalk=20/min"
    )

    leader_poll_seconds: float = Field(
        5.0,
        gt=0,
        description="How often a standby checks the leader lease; the leader renews it "
        "twice as often",
    )
    leader_lease_seconds: float | None = Field(
        None,
        gt=0,
        description="How long the leader lease lasts without renewal: a frozen leader is "
        "replaced after it; unset: 2 × leader_poll_seconds",
    )
    leader_job_seconds: float = Field(
        600.0,
        gt=0,
        description="While a scheduler job (a poll, escalation) runs, the lease is renewed "
        "from a thread of its own for at most this long: a long province poll keeps the "
        "lead, a job stuck longer loses it",
    )

    # --- HTTP server
    http_host: str = "127.0.0.1"
    http_port: int = Field(8470, ge=0, le=65535)
    http_read_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="A request's head, then its body, must each arrive within this; "
        "slower clients are disconnected (slow-loris protection)",
    )
    http_idle_timeout_seconds: int = Field(
        5, ge=1, description="An idle keep-alive connection is closed after this"
    )
    http_max_connections: int = Field(
        1000, ge=1, description="Open HTTP connections at most; beyond it requests get 503"
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="Bearer token for GET /metrics; required when http_host is not loopback "
        "(without one /metrics then answers 401)",
    )
    session_ttl_seconds: int = Field(
        43200, ge=60, description="Duty-console login lifetime; log in again after it"
    )

    # --- logs
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "text"] = Field(
        "auto", description="auto: JSON when not on a terminal"
    )

    @field_validator("channel")
    @classmethod
    def _channel_for_people(cls, value: str) -> str:
        if value != "auto" and value not in PEOPLE_CHANNELS:
            raise ValueError(
                f"YUJING_CHANNEL={value!r} is not a channel that sends SMS to a phone: "
                f"set it to auto or one of {', '.join(PEOPLE_CHANNELS)}"
            )
        return value

    @field_validator("wecom_robots", "dingtalk_robots", "feishu_bots", "webhook_targets")
    @classmethod
    def _json_setting_parses(
        cls, value: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        # refused at load in one line naming the variable, not as a KeyError at first use
        assert info.field_name is not None
        json_setting(info.field_name, value)
        return value

    @field_validator("feeds")
    @classmethod
    def _feeds_known(cls, value: str) -> str:
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in FEED_NAMES]
        if unknown:
            raise ValueError(
                f"YUJING_FEEDS names {', '.join(unknown)}: use feed names from "
                f"{', '.join(FEED_NAMES)}, in order, comma-separated"
            )
        if len(set(names)) != len(names):
            raise ValueError(f"YUJING_FEEDS lists a feed twice: {value}")
        return ",".join(names)

    @property
    def feed_names(self) -> tuple[str, ...]:
        """The feeds in order: YUJING_FEEDS, else YUJING_FEED alone."""
        return tuple(self.feeds.split(",")) if self.feeds else (self.feed,)

    @field_validator("rate_limits")
    @classmethod
    def _rate_limits_parse(cls, value: str) -> str:
        # a typo is an error at start, not a silent unlimited channel
        unknown = sorted(set(parse_rates(value)) - set(DECLARATIONS))
        if unknown:
            raise ValueError(
                f"YUJING_RATE_LIMITS names {', '.join(unknown)}, which no channel is called: "
                f"use one of {', '.join(sorted(DECLARATIONS))}"
            )
        return value

    @model_validator(mode="after")
    def _lease_outlasts_renewals(self) -> Settings:
        # the leader renews every half poll interval: a shorter lease would
        # lapse between two renewals of a healthy leader
        if self.leader_lease_seconds is not None and (
            self.leader_lease_seconds < self.leader_poll_seconds
        ):
            raise ValueError(
                f"YUJING_LEADER_LEASE_SECONDS={self.leader_lease_seconds:g} is shorter than "
                f"YUJING_LEADER_POLL_SECONDS={self.leader_poll_seconds:g}: set it to at least "
                "the poll interval (unset: twice it)"
            )
        return self

    @property
    def leader_lease(self) -> float:
        """Seconds the leader lease lasts without renewal (default 2 × the poll interval)."""
        return self.leader_lease_seconds or 2 * self.leader_poll_seconds

    @property
    def twilio_configured(self) -> bool:
        return bool(
            self.twilio_account_sid
            and self.twilio_auth_token
            and (self.twilio_from_number or self.twilio_messaging_service_sid)
        )

    @property
    def default_channel(self) -> str:
        if self.channel == "auto":
            return "twilio_sms" if self.twilio_configured else "console"
        return self.channel
