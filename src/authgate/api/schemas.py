"""Response and request bodies shared by several routers and by the CLI's ``--json``
output (JHipster/UTMStack field names). No FastAPI here: the CLI's commands import these
without the web framework."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from authgate.clock import as_utc
from authgate.services.api_key_views import ApiKeyView, UsageRecordView
from authgate.services.service_credentials import CreatedCredential, ServiceCredentialView
from authgate.services.user_fields import UserView

# A time in a query or a body, in UTC. UTMStack's UI sends ``...T00:00:00.000Z``; a time
# without zone is taken as UTC; one with no UTC form (``0001-01-01T00:00:00+01:00``) is
# refused with the other validation errors, not a crash where the database is queried.
Instant = Annotated[datetime, AfterValidator(as_utc)]


def any_case_pattern(*choices: str) -> str:
    """A JSON Schema ``pattern`` for one of ``choices`` in any case, with blanks around
    it (read stripped and case-folded): ``totp``, ``TOTP`` and `` Totp `` alike."""
    alternatives = (
        "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in choice)
        for choice in choices
    )
    return rf"^\s*({'|'.join(alternatives)})\s*$"


def _not_a_boolean(value: object) -> object:
    """Refuse ``true``/``false`` where a number is meant: pydantic's lax ``int`` reads
    ``true`` as 1, so ``{"id": true}`` selected user 1 (the first admin)."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    return value


NotABoolean = BeforeValidator(_not_a_boolean)


class UserDTO(BaseModel):
    """JHipster's (admin) user DTO; the same shape serves ``GET /api/account``."""

    id: int
    login: str
    firstName: str | None
    lastName: str | None
    email: str
    activated: bool
    langKey: str
    imageUrl: str | None = None
    authorities: list[str] = Field(examples=[["ROLE_ADMIN", "ROLE_USER"]])
    createdBy: str | None = None
    createdDate: datetime
    lastModifiedBy: str | None = None
    lastModifiedDate: datetime
    passwordChangeRequired: bool = Field(
        default=False,
        description="Imported from UTMStack with its default password: change it.",
    )

    @classmethod
    def of(cls, user: UserView) -> UserDTO:
        return cls(
            id=user.id,
            login=user.login,
            firstName=user.first_name,
            lastName=user.last_name,
            email=user.email,
            activated=user.activated,
            langKey=user.lang_key,
            imageUrl=user.image_url,
            authorities=sorted(user.authorities),
            createdBy=user.created_by,
            createdDate=user.created_at,
            lastModifiedBy=user.last_modified_by,
            lastModifiedDate=user.updated_at,
            passwordChangeRequired=user.password_change_required,
        )


class StrictBody(BaseModel):
    """Request bodies that reject unknown fields (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid")


class LenientBody(BaseModel):
    """Request bodies read the way Spring/Jackson reads them: unknown fields are ignored.

    UTMStack's UI and scripts send back the whole object a GET returned (``id``,
    ``createdDate``, ``generatedAt``, ``password: null``, ...). Only the fields a model
    declares are read; everything else is dropped unread, so nothing read-only can be
    written through a body (no mass assignment).
    """

    model_config = ConfigDict(extra="ignore")


class ApiKeyDTO(BaseModel):
    """UTMStack's DTO (id, name, allowedIp, createdAt, expiresAt, generatedAt) and more."""

    id: str = Field(description="The key's UUID (UTMStack's ids are UUIDs too).")
    name: str
    allowedIp: list[str]
    createdAt: datetime
    expiresAt: datetime | None
    generatedAt: datetime
    prefix: str = Field(description="Masked display form: id and last characters.")
    scopes: list[str]
    lastUsedAt: datetime | None
    lastUsedIp: str | None
    rateLimit: str | None
    status: Literal["active", "expired", "revoked", "rotating", "suspended"]
    revokedAt: datetime | None
    suspendedAt: datetime | None = Field(
        description="When the owner's deactivation suspended the key (null: not suspended)."
    )
    rotationGraceUntil: datetime | None = Field(
        description="Until when the previous secret still works (status 'rotating'); "
        "null once the grace period is over, or without one."
    )
    userId: int
    legacy: bool = Field(
        default=False,
        description="Imported from UTMStack and not rotated since: UTMStack stored its "
        "plaintext, so rotate it (the new key is an agk_ key; the old one works for the "
        "grace period).",
    )

    @classmethod
    def of(cls, key: ApiKeyView) -> ApiKeyDTO:
        return cls(
            id=key.public_id,
            name=key.name,
            allowedIp=list(key.allowed_networks),
            createdAt=key.created_at,
            expiresAt=key.expires_at,
            generatedAt=key.generated_at,
            prefix=key.prefix,
            scopes=sorted(key.scopes),
            lastUsedAt=key.last_used_at,
            lastUsedIp=key.last_used_ip,
            rateLimit=key.rate_limit,
            status=key.status,
            revokedAt=key.revoked_at,
            suspendedAt=key.suspended_at,
            rotationGraceUntil=key.previous_valid_until,
            userId=key.owner_id,
            legacy=key.legacy,
        )


class CreatedApiKeyDTO(ApiKeyDTO):
    key: str = Field(description="The API key itself. Shown only in this response.")


class UsageRecordDTO(BaseModel):
    """A usage record under authgate's names and UTMStack's (its ``ApiKeyUsageLog``):
    authgate's SDK and CLI read the first, UTMStack's clients the second. UTMStack's
    ``payload`` is never recorded: request bodies may hold secrets."""

    id: int = Field(description="The record's number (UTMStack's is a UUID).")
    apiKeyId: str = Field(description="The key's UUID.")
    apiKeyName: str
    userId: int
    timestamp: datetime
    endpoint: str = Field(description="Path, without the query string.")
    requestMethod: str
    httpMethod: str = Field(description="UTMStack's name for `requestMethod`.")
    responseCode: int
    statusCode: int = Field(description="UTMStack's name for `responseCode`.")
    ipAddress: str | None
    address: str | None = Field(description="UTMStack's name for `ipAddress`.")
    queryParams: None = Field(
        default=None,
        description="Always null: the query string is never recorded, it may carry tokens.",
    )
    userAgent: str | None
    latencyMs: float
    errorMessage: str | None = Field(description="Why the key was refused; null if accepted.")

    @classmethod
    def of(cls, record: UsageRecordView) -> UsageRecordDTO:
        return cls(
            id=record.id,
            apiKeyId=record.api_key_public_id,
            apiKeyName=record.api_key_name,
            userId=record.user_id,
            timestamp=record.occurred_at,
            endpoint=record.path,
            requestMethod=record.method,
            httpMethod=record.method,
            responseCode=record.status,
            statusCode=record.status,
            ipAddress=record.client_ip,
            address=record.client_ip,
            userAgent=record.user_agent,
            latencyMs=record.latency_ms,
            errorMessage=record.failure_reason,
        )


class ServiceCredentialDTO(BaseModel):
    id: str = Field(description="The public part of the credential (ags_<id>_...).")
    name: str
    endpoints: list[str]
    status: str = Field(json_schema_extra={"enum": ["active", "revoked"]})
    createdAt: datetime
    rotatedAt: datetime | None
    previousValidUntil: datetime | None = Field(
        description="Until when the secret before the last rotation still works."
    )
    lastUsedAt: datetime | None = Field(description="Recorded to the minute.")
    revokedAt: datetime | None
    adopted: bool = Field(
        description="Its secret is one the service already had (authgate service-credentials "
        "create|rotate --secret-stdin), not one authgate made; never shown."
    )

    @classmethod
    def of(cls, view: ServiceCredentialView) -> ServiceCredentialDTO:
        return cls(
            id=view.id,
            name=view.name,
            endpoints=list(view.endpoints),
            status=view.status,
            createdAt=view.created_at,
            rotatedAt=view.rotated_at,
            previousValidUntil=view.previous_valid_until,
            lastUsedAt=view.last_used_at,
            revokedAt=view.revoked_at,
            adopted=view.adopted,
        )


class CreatedServiceCredentialDTO(ServiceCredentialDTO):
    credential: str = Field(description="The X-Internal-Key value; shown this once.")

    @classmethod
    def created(cls, created: CreatedCredential) -> CreatedServiceCredentialDTO:
        return cls(
            **ServiceCredentialDTO.of(created.view).model_dump(), credential=created.plaintext
        )
