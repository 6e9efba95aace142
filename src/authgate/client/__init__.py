"""authgate's Python SDK for integrators: ``Client`` and ``AsyncClient``.

Install with ``pip install authgate-sdk`` (no server). Importing this package needs only the
client dependencies (httpx2): none of the server's (FastAPI, SQLAlchemy, Argon2...).

    from authgate.client import Client

    with Client() as client:  # AUTHGATE_URL and AUTHGATE_API_KEY from the environment
        print(client.account().login)

The same client talks to UTMStack: ``UTMSTACK_*`` variables are aliases, logins read
``id_token`` (v10) or ``token`` (v11), and ``ApiKeyCredentials(key, header="utm-api-key")``
sends the key in the only header real UTMStack v11 servers read. ``V12Credentials`` speak
UTMStack v12's token pairs (``/api/v1/auth``: login, refresh with rotation, sessions).
"""

from authgate.client._async_client import AsyncClient
from authgate.client._auth import SecondFactorHook, token_expiry
from authgate.client._client import Client
from authgate.client._config import (
    ApiKeyCredentials,
    ApiKeyHeader,
    ClientConfig,
    Credentials,
    PasswordCredentials,
    RefreshTokenCredentials,
    TokenCredentials,
    V12Credentials,
)
from authgate.client._exceptions import (
    APIError,
    AuthenticationError,
    AuthgateClientError,
    ClientClosedError,
    ClientConfigError,
    ConflictError,
    FieldError,
    LockedError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RedirectError,
    SecondFactorRejected,
    SecondFactorRequired,
    ServerError,
    SessionEndedError,
    TransportError,
    UnexpectedResponseError,
    ValidationError,
)
from authgate.client._models import (
    Account,
    ApiKey,
    AuditEvent,
    CreatedApiKey,
    Page,
    RegeneratedApiKey,
    Role,
    SessionInfo,
    Token,
    TokenPair,
    UsageRecord,
    User,
    V12User,
)
from authgate.client._retry import RetryPolicy

__all__ = [
    "APIError",
    "Account",
    "ApiKey",
    "ApiKeyCredentials",
    "ApiKeyHeader",
    "AsyncClient",
    "AuditEvent",
    "AuthenticationError",
    "AuthgateClientError",
    "Client",
    "ClientClosedError",
    "ClientConfig",
    "ClientConfigError",
    "ConflictError",
    "CreatedApiKey",
    "Credentials",
    "FieldError",
    "LockedError",
    "NotFoundError",
    "Page",
    "PasswordCredentials",
    "PermissionDeniedError",
    "RateLimitedError",
    "RedirectError",
    "RefreshTokenCredentials",
    "RegeneratedApiKey",
    "RetryPolicy",
    "Role",
    "SecondFactorHook",
    "SecondFactorRejected",
    "SecondFactorRequired",
    "ServerError",
    "SessionEndedError",
    "SessionInfo",
    "Token",
    "TokenCredentials",
    "TokenPair",
    "TransportError",
    "UnexpectedResponseError",
    "UsageRecord",
    "User",
    "V12Credentials",
    "V12User",
    "ValidationError",
    "token_expiry",
]
