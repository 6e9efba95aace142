"""The one settings object, built once at start-up and passed down.

Values come from (highest priority first) constructor arguments, ``AUTHGATE_*``
environment variables, an optional TOML config file (``AUTHGATE_CONFIG_FILE``)
and the defaults below. No other module reads the environment.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from authgate.exceptions import ConfigurationError
from authgate.http_config import HttpConfig
from authgate.security.passwords import PasswordPolicy
from authgate.security.principal import SCOPE_PATTERN
from authgate.services.access_tokens import TokenConfig
from authgate.services.address_block import AddressBlockLimits
from authgate.services.alerts.configuration import AlertsConfig
from authgate.services.api_keys import KeyPolicy
from authgate.services.audit.writer import AuditConfig
from authgate.services.forward_auth import ForwardAuthConfig
from authgate.services.login_protection import LoginLimits
from authgate.services.mail import MailConfig
from authgate.services.password_hashing import HashingConfig
from authgate.services.rate_limits import check_rate_limit
from authgate.services.second_factor import SecondFactorConfig
from authgate.services.usage import UsageConfig
from authgate.services.user_states import UserCacheConfig
from authgate.settings_lists import comma_separated
from authgate.settings_messages import (
    ENV_PREFIX,
    describe_validation_error,
    unknown_variables,
    variable_name,
)
from authgate.settings_names import FLAT, NESTED, flat_from_environment, fold, known_names
from authgate.settings_secrets import secrets_from_files
from authgate.storage.database_url import normalise_database_url

CONFIG_FILE_VARIABLE = "AUTHGATE_CONFIG_FILE"
DATA_DIR_VARIABLE = "AUTHGATE_DATA_DIR"
_SCOPE_NAME = re.compile(SCOPE_PATTERN)


# UTMStack's DefaultTenantID: the one tenant of a single-tenant install, a constant that
# every UTMStack plugin and v12's log-input use.
UTMSTACK_DEFAULT_TENANT = "ce66672c-e36d-4761-a8c8-90058fee1a24"
METRICS_TOKEN_MIN_LENGTH = 24


class Settings(BaseSettings):
    """authgate configuration. Every field maps to ``AUTHGATE_<FIELD NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="AUTHGATE_",
        frozen=True,
        extra="forbid",
        case_sensitive=False,
    )

    # --- where things live ----------------------------------------------------------
    data_dir: Path = Field(
        default=Path("./authgate-data"),
        description="Directory for the SQLite database and generated signing keys.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL; default: SQLite file authgate.db in the data dir.",
    )
    database_url_file: Path | None = None
    auto_migrate: bool | None = Field(
        default=None,
        description="Apply pending migrations when the server starts (default: SQLite only).",
    )
    cluster: bool = Field(
        default=False,
        description="This node is one of several: refuse SQLite and a pepper, audit key or "
        "signing keys generated into the data dir (they must be shared).",
    )
    config_file: Path | None = Field(default=None, description="Optional TOML config file.")

    # --- HTTP server --------------------------------------------------------------------
    http: HttpConfig = Field(default_factory=HttpConfig)
    ui_insecure_http: bool = Field(
        default=False,
        description="Labs without TLS only: Settings UI cookies without Secure and without "
        "the __Host- prefix, so that signing in works over plain http:// from other "
        "machines (the session token then crosses the network in clear).",
    )
    swagger_persist_authorization: bool = Field(
        default=False,
        description="Swagger UI keeps the credential entered in Authorize across reloads, "
        "in the browser's localStorage (readable by any script of the origin).",
    )

    # --- tokens -------------------------------------------------------------------------
    tokens: TokenConfig = Field(default_factory=TokenConfig)
    signing_keys_file: Path | None = Field(
        default=None,
        description="JSON key ring for ES256/EdDSA; default: signing-keys.json in the data dir.",
    )
    jwt_secret: SecretStr | None = Field(
        default=None, description="Shared secret for HS512 mode (base64, at least 64 bytes)."
    )
    jwt_secret_file: Path | None = None
    user_cache: UserCacheConfig = Field(default_factory=UserCacheConfig)
    change_poll_interval_seconds: float = Field(default=0.25, gt=0, le=10)

    # --- API keys -------------------------------------------------------------------------
    api_key_pepper: SecretStr | None = Field(
        default=None,
        description="Server-side secret keying the stored key hashes (base64, >= 32 bytes); "
        "default: generated into api-key-pepper in the data dir.",
    )
    api_key_pepper_file: Path | None = None
    api_keys: KeyPolicy = Field(default_factory=KeyPolicy)
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Peers (IPs or CIDRs) whose X-Forwarded-For / Forwarded headers are "
        "believed; comma-separated.",
    )
    forwarded_header: Literal["x-forwarded-for", "forwarded"] = Field(
        default="x-forwarded-for",
        description="The one forwarding header the trusted proxies write (the other is ignored).",
    )
    forward_auth: ForwardAuthConfig = Field(default_factory=ForwardAuthConfig)
    usage: UsageConfig = Field(default_factory=UsageConfig)

    # --- monitoring and protection ----------------------------------------------------
    redis_url: SecretStr | None = Field(
        default=None,
        description="redis://... : shared throttling and rate-limit state for several "
        "workers/nodes (default: the database, and memory for per-key rate limits).",
    )
    redis_url_file: Path | None = None
    audit_key: SecretStr | None = Field(
        default=None,
        description="Secret keying the audit chain (HMAC-SHA256; base64, >= 32 bytes), kept "
        "outside the database; default: generated into audit-key in the data dir.",
    )
    audit_key_file: Path | None = None
    audit: AuditConfig = Field(default_factory=AuditConfig)
    # Login protection (see README "Brute-force protection"), and bad API keys from one
    # address; flat names (``login_ip_max_failures``) in ``authgate.settings_names``.
    login: LoginLimits = Field(default_factory=LoginLimits)
    key_abuse: AddressBlockLimits = Field(default_factory=AddressBlockLimits)
    api_key_default_rate_limit: str | None = Field(
        default=None, description='Rate limit of keys without their own, e.g. "100/second".'
    )
    v12_tenant_id: str | None = Field(
        default=UTMSTACK_DEFAULT_TENANT,
        max_length=100,
        description="The tenantId the internal API key check (POST "
        "/api/v1/api-keys/authenticate) answers: UTMStack's single tenant by default "
        "(authgate has no tenants; log-input keeps a pusher's own tenantId when given "
        "none).",
    )
    # Alert sinks (several may be set at once; the log sink is always on), and the SMTP
    # server they share with mail to users; the secrets may come from files, like all.
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    alert_webhook_secret_file: Path | None = None
    mail: MailConfig = Field(default_factory=MailConfig)
    alert_smtp_password_file: Path | None = None
    # --- second factor (see README "Second factor") ---------------------------------
    second_factor: SecondFactorConfig = Field(default_factory=SecondFactorConfig)
    tfa_key: SecretStr | None = Field(
        default=None,
        description="Secret encrypting TOTP secrets and keying one-time code hashes "
        "(base64, >= 32 bytes), kept outside the database; default: generated into "
        "tfa-key in the data dir.",
    )
    tfa_key_file: Path | None = None

    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token for /management/prometheus (else an admin credential); "
        "at least 24 characters.",
    )
    metrics_token_file: Path | None = None

    # --- passwords ----------------------------------------------------------------------
    admin_password: SecretStr | None = Field(
        default=None, description="Password of the first 'admin' user; random when unset."
    )
    admin_password_file: Path | None = None
    # Not "password": AUTHGATE_PASSWORD is the client program's (authgate-client).
    password_policy: PasswordPolicy = Field(default_factory=PasswordPolicy)
    password_hashing: HashingConfig = Field(default_factory=HashingConfig)

    opentelemetry: bool = Field(
        default=False,
        description="Enable FastAPI's native OpenTelemetry (global providers); costs per request.",
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Case-insensitive (info, Info, INFO); WARN means WARNING."
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="text: one escaped line per record; json: one JSON object per line "
        "(time, level, logger, message, and the request's fields).",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            env_settings,
            _FlatEnvironment(settings_cls),
        ]
        config_file = _config_file_from(init_settings(), os.environ)
        if config_file is not None:
            if not config_file.is_file():
                raise ConfigurationError(f"config file not found: {config_file}")
            try:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
            except tomllib.TOMLDecodeError as error:  # its message ends "(at line 3, column 7)"
                raise ConfigurationError(
                    f"config file {config_file}: TOML syntax error: {error}"
                ) from None
            except OSError as error:
                raise ConfigurationError(
                    f"cannot read config file {config_file}: {error.strerror}"
                ) from None
        return tuple(sources)

    @field_validator("database_url")
    @classmethod
    def _database_driver(cls, url: str | None) -> str | None:
        """``postgresql://`` (as most tools print it) means PostgreSQL through asyncpg."""
        return normalise_database_url(url) if url else url

    @field_validator("api_key_default_rate_limit")
    @classmethod
    def _rate_limit(cls, text: str | None) -> str | None:
        """Refused at start, as a key's own limit is when set, not at each request."""
        if text is not None:
            check_rate_limit(text)
        return text

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return comma_separated(value)

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _any_case(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        if info.field_name == "log_format":
            return value.strip().lower()
        level = value.strip().upper()
        return "WARNING" if level == "WARN" else level

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, values: Any) -> Any:
        """Every secret may come from a file (``AUTHGATE_<NAME>_FILE``): see
        ``authgate.settings_secrets``; the flat names of nested settings go into their
        groups (``authgate.settings_names``)."""
        if not isinstance(values, Mapping):
            return values
        return fold(secrets_from_files(values))

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if self.password_policy.min_length > self.password_policy.max_length:
            raise ValueError("password_min_length must not exceed password_max_length")
        if self.login.account_slowdown_max < self.login.account_slowdown:
            raise ValueError(
                "login_account_slowdown_max_seconds must be at least login_account_slowdown_seconds"
            )
        if self.login.pair_max_delay < self.login.pair_base_delay:
            raise ValueError(
                "login_pair_max_delay_seconds must be at least login_pair_base_delay_seconds"
            )
        if self.tokens.remember_me_ttl_seconds < self.tokens.ttl_seconds:
            raise ValueError("remember_me_ttl_seconds must be at least token_ttl_seconds")
        metrics_token = self.metrics_token.get_secret_value() if self.metrics_token else None
        if metrics_token is not None and len(metrics_token) < METRICS_TOKEN_MIN_LENGTH:
            # A bearer secret scrapers send; wrong guesses are refused but not throttled
            # (as any bad token), so its length is its only defence.
            raise ValueError(
                f"metrics_token must be at least {METRICS_TOKEN_MIN_LENGTH} characters "
                "(e.g. the output of `openssl rand -base64 24`)"
            )
        problems = self.cluster_problems()
        if problems:
            raise ValueError("AUTHGATE_CLUSTER is set, but " + "; ".join(problems))
        method_header, uri_header = self.forward_auth.method_header, self.forward_auth.uri_header
        if (method_header is None) != (uri_header is None):
            raise ValueError(
                "set both forward_auth_method_header and forward_auth_uri_header, or neither"
            )
        if (
            method_header is not None
            and uri_header is not None
            and method_header.lower() == uri_header.lower()
        ):
            raise ValueError("forward_auth_method_header and forward_auth_uri_header must differ")
        tfa = self.second_factor
        if tfa.unenrolled == "email" and tfa.required != "none" and not self.mail.smtp_host:
            # Else every login of a user without a factor fails when the code is mailed.
            raise ValueError(
                "tfa_unenrolled=email mails a code at each login of a user without a "
                "second factor: set alert_smtp_host (and alert_email_from), or use enrol"
            )
        for scope in sorted(self.api_keys.extra_scopes):
            if not _SCOPE_NAME.fullmatch(scope):
                raise ValueError(
                    f"api_key_extra_scopes: {scope!r} is not a scope name "
                    "(lower case letters, digits and _ . : -, starting with a letter)"
                )
        return self

    def cluster_problems(self) -> list[str]:
        """What keeps a node declared one of several (``cluster``) from working with its
        peers: data that lives on one machine, secrets generated into the data dir."""
        if not self.cluster:
            return []
        problems = []
        if self.is_sqlite:
            problems.append(
                "several nodes need PostgreSQL (AUTHGATE_DATABASE_URL=postgresql+asyncpg://...):"
                " an SQLite file lives on one machine"
            )
        if self.api_key_pepper is None and self.api_key_pepper_file is None:
            problems.append(
                "every node needs the same API key pepper: set AUTHGATE_API_KEY_PEPPER_FILE "
                "(or AUTHGATE_API_KEY_PEPPER); `authgate cluster init` creates one"
            )
        if self.audit_key is None and self.audit_key_file is None:
            problems.append(
                "every node needs the same audit key: set AUTHGATE_AUDIT_KEY_FILE "
                "(or AUTHGATE_AUDIT_KEY); `authgate cluster init` creates one"
            )
        if self.tfa_key is None and self.tfa_key_file is None:
            problems.append(
                "every node needs the same second-factor key: set AUTHGATE_TFA_KEY_FILE "
                "(or AUTHGATE_TFA_KEY); `authgate cluster init` creates one"
            )
        if self.tokens.algorithm != "HS512" and self.signing_keys_file is None:
            problems.append(
                "every node needs the same JWT signing keys: set AUTHGATE_SIGNING_KEYS_FILE "
                "to a file all nodes read; `authgate cluster init` creates one"
            )
        return problems

    # --- derived values -----------------------------------------------------------------
    @property
    def effective_database_url(self) -> str:
        """The database URL, defaulting to an SQLite file in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'authgate.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def should_auto_migrate(self) -> bool:
        return self.is_sqlite if self.auto_migrate is None else self.auto_migrate

    @property
    def uses_data_dir(self) -> bool:
        """Whether anything lives in the data dir: the SQLite database, or a secret
        generated there because no file or value was given for it (the same secrets as
        ``cluster_problems`` names)."""
        return (
            self.is_sqlite
            or (self.api_key_pepper is None and self.api_key_pepper_file is None)
            or (self.audit_key is None and self.audit_key_file is None)
            or (self.tfa_key is None and self.tfa_key_file is None)
            or (self.tokens.algorithm != "HS512" and self.signing_keys_file is None)
        )

    @property
    def effective_signing_keys_file(self) -> Path:
        return self.signing_keys_file or self.data_dir / "signing-keys.json"

    @property
    def effective_api_key_pepper_file(self) -> Path:
        return self.api_key_pepper_file or self.data_dir / "api-key-pepper"

    @property
    def effective_audit_key_file(self) -> Path:
        return self.audit_key_file or self.data_dir / "audit-key"

    @property
    def effective_tfa_key_file(self) -> Path:
        return self.tfa_key_file or self.data_dir / "tfa-key"


class _FlatEnvironment(PydanticBaseSettingsSource):
    """The ``AUTHGATE_*`` variables of nested settings, by their flat names
    (``AUTHGATE_LOGIN_IP_MAX_FAILURES``); folded into their groups with the rest. Lists
    of rules are JSON, as in every other variable; lists of names are comma-separated."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # not per field: see __call__

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for flat, text in flat_from_environment(os.environ, ENV_PREFIX).items():
            group, name = NESTED[flat]
            model = self.settings_cls.model_fields[group].annotation
            field = model.model_fields[name]  # type: ignore[union-attr]
            try:
                values[flat] = (
                    self.decode_complex_value(flat, field, text)
                    if self.field_is_complex(field)
                    else text
                )
            except ValueError as error:
                # Not pydantic's SettingsError: it is no ValidationError, so it named the
                # field, not the variable, under a traceback.
                raise ConfigurationError(
                    f"invalid {variable_name(flat)}: not a JSON list ({error})"
                ) from None
        return values


def _config_file_from(init_values: Mapping[str, Any], environ: Mapping[str, str]) -> Path | None:
    explicit = init_values.get("config_file")
    if explicit:
        return Path(explicit)
    from_env = environ.get(CONFIG_FILE_VARIABLE)
    return Path(from_env) if from_env else None


def explain_invalid_settings(error: ValidationError, given: Mapping[str, Any]) -> str:
    """``error`` (from ``Settings(**given)``) in one line naming the variables or the
    config file's keys at fault."""
    return describe_validation_error(
        error,
        variables=os.environ,
        fields=known_names(Settings.model_fields),
        renamed=FLAT,
        config_file=_config_file_from(given, os.environ),
    )


def unknown_environment_variables() -> list[str]:
    """Warnings about ``AUTHGATE_*`` variables no setting reads (typos)."""
    return unknown_variables(os.environ, known_names(Settings.model_fields))


PROMETHEUS_MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus_client's own variable: the metrics directory shared by a server's workers
(read by prometheus_client itself when it is imported, so set for the workers only)."""


def prometheus_multiprocess_dir() -> Path | None:
    """The workers' shared metrics directory, when this process is one of several."""
    value = os.environ.get(PROMETHEUS_MULTIPROCESS_VARIABLE)
    return Path(value) if value else None
