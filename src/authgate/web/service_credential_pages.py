"""Settings > Service credentials (administrators): list, create and rotate (the
credential shown once), revoke. The same rules as ``/api/service-credentials``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

from fastapi import APIRouter, Request, Response

from authgate.api.access import services_of, sets_credentials
from authgate.exceptions import Conflict, ValidationFailed
from authgate.services.service_credentials import CreatedCredential, InternalEndpoint
from authgate.web.forms import grace_seconds
from authgate.web.pages import AdminConfigurationPageRoute, redirect_with_notice, render

router = APIRouter(prefix="/settings/service-credentials", route_class=AdminConfigurationPageRoute)

PATH: Final = "/settings/service-credentials"
GRACE_CHOICES: Final = ((0, "None: the old secret stops now"), (3600, "1 hour"),
                        (86_400, "24 hours"), (7 * 86_400, "7 days"))  # fmt: skip
ENDPOINTS: Final = tuple(endpoint.value for endpoint in InternalEndpoint)


@router.get("")
async def list_credentials(request: Request) -> Response:
    return await _page(request, form={"name": "", "endpoints": list(ENDPOINTS)}, errors={})


@router.post("")
@sets_credentials("creates a service credential")
async def create_credential(request: Request) -> Response:
    form = await request.form()
    name = str(form.get("name", ""))
    endpoints = [str(value) for value in form.getlist("endpoints")]
    try:
        created = await services_of(request).service_credentials.create(name, endpoints)
    except ValidationFailed as error:
        # endpoints[1] -> endpoints: one message per form field (the first one).
        errors = {e.field.split("[")[0]: e.message for e in reversed(error.field_errors)}
        status = 422
    except Conflict as error:
        errors, status = {"name": error.message}, 409
    else:
        return _show_once(request, created, "created")
    form_values = {"name": name, "endpoints": endpoints}
    return await _page(request, form=form_values, errors=errors, status=status)


@router.post("/{credential_id}/rotate")
@sets_credentials("rotates a service credential")
async def rotate_credential(request: Request, credential_id: str) -> Response:
    form = await request.form()
    grace = grace_seconds(form)
    credentials = services_of(request).service_credentials
    # As a key's regenerate form (``key_pages``): the form names the secret it replaces
    # (when it was last rotated), so a reload of the page that showed the new secret
    # rotates nothing, and the secret it promised for the grace period keeps working.
    shown = form.get("rotated")
    if isinstance(shown, str) and shown:
        current = await credentials.get(credential_id)
        if rotation_stamp(current.rotated_at) != shown:
            message = (
                "This credential was rotated after the form was shown (a reload sends the "
                "form again): nothing was changed. The new secret was shown once."
            )
            form_values = {"name": "", "endpoints": []}
            return await _page(request, form=form_values, errors={"rotate": message}, status=409)
    created = await credentials.rotate(credential_id, grace=timedelta(seconds=grace))
    return _show_once(request, created, "rotated")


def rotation_stamp(rotated_at: datetime | None) -> str:
    """Which secret a credential has now, as its rotate form names it."""
    return rotated_at.isoformat() if rotated_at is not None else "never"


@router.post("/{credential_id}/revoke")
async def revoke_credential(request: Request, credential_id: str) -> Response:
    await services_of(request).service_credentials.revoke(credential_id)
    return redirect_with_notice(
        request, PATH, "The service credential is revoked. Its next call is refused."
    )


async def _page(
    request: Request, *, form: dict[str, Any], errors: dict[str, str], status: int = 200
) -> Response:
    showing_revoked = request.query_params.get("revoked") == "1"
    listed = await services_of(request).service_credentials.list_all(
        include_revoked=showing_revoked
    )
    return render(
        request,
        "service_credentials.html",
        {
            "credentials": listed,
            "showing_revoked": showing_revoked,
            "form": form,
            "errors": errors,
            "endpoints": ENDPOINTS,
            "grace_choices": GRACE_CHOICES,
            "rotation_stamp": rotation_stamp,
        },
        status=status,
    )


def _show_once(request: Request, created: CreatedCredential, what: str) -> Response:
    response = render(
        request,
        "service_credential_created.html",
        {
            "credential": created.view,
            "plaintext": created.plaintext,
            "what": what,
            "base_url": str(request.base_url).rstrip("/"),
        },
    )
    response.headers["Cache-Control"] = "no-store"
    return response
