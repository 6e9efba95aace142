"""``authgate.guard``: accept authgate's credentials in another Starlette/FastAPI service.

    from authgate.guard import Guard, GuardConfig, GuardPrincipal

    guard = Guard(GuardConfig(authgate_url="https://authgate.example.com"))
    guard.install(app)

    @app.get("/orders")
    async def orders(caller: Annotated[GuardPrincipal, Depends(guard.require(scopes=["read"]))]):
        return {"for": caller.login}

JWTs are verified locally with authgate's published keys (JWKS, cached, refetched
when an unknown ``kid`` shows a rotation), and those older than ``local_jwt_max_age``
(5 minutes) are checked by authgate as well, so that a logout or a removed role reaches
the guard within that bound; API keys are checked by authgate's forward-auth endpoint,
with a short cache of successes. When authgate cannot vouch for a caller the guard
answers 503 and lets nothing through.

Importing this package needs httpx2, PyJWT and Starlette, and none of authgate's
server modules (its database, services or HTTP API).
"""

from authgate.guard._config import GuardConfig, GuardConfigError
from authgate.guard._errors import (
    AccessDenied,
    AuthgateUnavailable,
    GuardError,
    InvalidRequest,
    NotAuthenticated,
    Throttled,
)
from authgate.guard._guard import Guard, principal_of
from authgate.guard._middleware import GuardMiddleware
from authgate.guard._principal import AuthMethod, GuardPrincipal, Requirement

__all__ = [
    "AccessDenied",
    "AuthMethod",
    "AuthgateUnavailable",
    "Guard",
    "GuardConfig",
    "GuardConfigError",
    "GuardError",
    "GuardMiddleware",
    "GuardPrincipal",
    "InvalidRequest",
    "NotAuthenticated",
    "Requirement",
    "Throttled",
    "principal_of",
]
