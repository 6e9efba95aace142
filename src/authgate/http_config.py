"""The HTTP server's settings: where it listens, how many workers, the bounds on a
request, and the base URL printed in links.

``Settings.http``, set by the flat names of the README (``AUTHGATE_HOST``,
``AUTHGATE_PORT``, ``AUTHGATE_MAX_BODY_BYTES``, ...: see ``authgate.settings_names``) or
an ``[http]`` table. Read by ``authgate serve`` (``cli/server.py``, with
``cli/http_protocol.py`` for the request head), the app's body limit and request log
(``app.py``, ``api/middleware.py``, ``api/forward_auth.py``). A module of its own, not in
``cli/``: ``settings.py`` nests it, and importing ``authgate.cli`` imports the commands,
which import the settings.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

# Where the Settings UI finishes a password reset (UTMStack's own page is /reset/finish).
RESET_PAGE_PATH = "/settings/reset"
_URL_EXAMPLES = {
    "public_url": "https://auth.example.com",
    "reset_page_url": "https://utmstack.example.com/reset/finish",
}


class HttpConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    public_url: str | None = Field(
        default=None, description="Externally visible base URL, used in printed links."
    )
    access_log: bool = Field(
        default=True, description="Log one line per request (method, path without query, status)."
    )
    max_body_bytes: int = Field(
        default=64 * 1024, ge=1024, description="Larger request bodies are refused with 413."
    )
    max_header_bytes: int = Field(
        default=32 * 1024,
        ge=4096,
        le=1024 * 1024,
        description="Largest request head (request line and headers); larger ones are "
        "refused with 431 and the connection closed.",
    )
    header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Time a connection has to deliver a complete request head (from "
        "connecting, or from the first byte of each next request); slower ones are closed.",
    )
    body_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=300,
        description="Time a request's body has to arrive in full after its head; slower "
        "ones are answered 408 and the connection closed.",
    )

    shutdown_timeout_seconds: int = Field(
        default=20,
        ge=1,
        le=3600,
        description="On SIGTERM (or Ctrl-C), how long requests still running may take to "
        "finish; then they are cancelled and the stop goes on (its last writes of audit "
        "and usage records included).",
    )

    max_connections: int = Field(
        default=4096,
        ge=8,
        le=1 << 20,
        description="Open connections per worker beyond which a new connection is answered "
        "503 and closed; never more than half the open-files limit (serve raises its soft "
        "limit to the hard one).",
    )

    reset_page_url: str | None = Field(
        default=None,
        description="The page a password-reset or invitation link opens, with ?key=... "
        "appended; default: the Settings UI's, <public URL>/settings/reset. UTMStack's "
        "own page, https://<utmstack>/reset/finish, works too: it sends the key and the "
        "new password to POST /api/account/reset-password/finish.",
    )

    @field_validator("host")
    @classmethod
    def _some_host(cls, value: str) -> str:
        # uvicorn takes an empty host for every interface: that must be said (0.0.0.0).
        if not value.strip():
            raise ValueError("must not be empty (use 0.0.0.0 to listen on every interface)")
        return value

    @field_validator("public_url", "reset_page_url")
    @classmethod
    def _absolute_page_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Both open in someone's browser from a link authgate prints or mails."""
        if value is None:
            return None
        example = _URL_EXAMPLES[info.field_name or ""]
        parts = urlsplit(value)
        try:
            parts.port  # noqa: B018 - raises for a port out of range or not a number
        except ValueError:
            parts = parts._replace(scheme="")
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.username is not None
            # "?" or "#" even empty: the link appends ?key=..., which must stay the query
            or "?" in value
            or "#" in value
            or any(character.isspace() for character in value)
            or not value.isprintable()
        ):
            raise ValueError(
                "must be an absolute http(s) URL without credentials, query or fragment, "
                f"e.g. {example}"
            )
        return value

    @property
    def reset_page(self) -> str:
        """The page reset links open (before ``?key=``)."""
        return self.reset_page_url or f"{self.base_url}{RESET_PAGE_PATH}"

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"
