"""Response and request bodies shared by several routers (JHipster/UTMStack field names)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from authgate.services.user_fields import UserView


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
