"""Settings > API Keys: list, create (the key shown once), detail with usage, edit,
regenerate with a grace period, re-enable a suspended key, revoke."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.datastructures import FormData

from authgate.api.access import ApiKeyManagementRoute, services_of, sets_credentials
from authgate.exceptions import Conflict, ValidationFailed
from authgate.security.principal import SCOPE_ADMIN
from authgate.services.api_key_views import ApiKeyView, KeySpec
from authgate.services.api_keys import MAX_GRACE, key_actions
from authgate.services.key_refs import KeyRef, key_ref
from authgate.storage.api_key_repository import UsageFilter
from authgate.storage.paging import PageRequest, SortOrder
from authgate.web.forms import grace_seconds
from authgate.web.pages import PageRoute, current_principal, redirect_with_notice, render


class KeyPageRoute(PageRoute):
    """The key pages refuse invalid input as ``/api/api-keys`` does: 422."""

    validation_status = ApiKeyManagementRoute.validation_status


router = APIRouter(prefix="/settings/api-keys", route_class=KeyPageRoute)

EXPIRY_PRESETS = (30, 90, 180, 365)
GRACE_CHOICES = ((0, "None: the old key stops now"), (3600, "1 hour"), (86_400, "24 hours"),
                 (7 * 86_400, "7 days"))  # fmt: skip
SORTABLE = {"name": "name", "created": "createdAt", "expires": "expiresAt", "used": "lastUsedAt"}
EXPIRING_SOON = timedelta(days=14)


@router.get("")
async def list_keys(request: Request) -> Response:
    sort = request.query_params.get("sort", "created")
    descending = request.query_params.get("dir", "desc") == "desc"
    order = SortOrder(SORTABLE.get(sort, "createdAt"), descending=descending)
    services = services_of(request)
    showing_revoked = request.query_params.get("revoked") == "1"
    page = await services.api_keys.list_keys(
        current_principal(request),
        PageRequest(page=0, size=1000, sort=(order,)),
        include_revoked=showing_revoked,
    )
    return render(
        request,
        "api_keys.html",
        {
            "keys": [_row(key, services.clock()) for key in page.items],
            "sort": sort if sort in SORTABLE else "created",
            "descending": descending,
            "showing_revoked": showing_revoked,
            "form": _empty_form(services.clock()),
            "errors": {},
            # Folded unless asked for (?new=1, the "Create API Key" button without
            # JavaScript) or there is no key yet, when creating one is what the page is for.
            "open_form": "new" in request.query_params or not page.items,
            **_choices(request),
        },
    )


@router.post("")
@sets_credentials("creates an API key")
async def create_key(request: Request) -> Response:
    form = await request.form()
    services = services_of(request)
    spec, errors = _spec(form)
    status = 422  # the REST API's status for each refusal
    if spec is not None:
        try:
            caller = current_principal(request)
            created = await services.api_keys.create(caller.user_id, spec, caller=caller)
        except ValidationFailed as error:
            errors = _field_errors(error)
        except Conflict as error:
            errors, status = {"name": error.message}, 409
        else:
            return _show_once(request, created.view, created.plaintext, "created")
    page = await services.api_keys.list_keys(
        current_principal(request), PageRequest(page=0, size=1000)
    )
    return render(
        request,
        "api_keys.html",
        {
            "keys": [_row(key, services.clock()) for key in page.items],
            "sort": "created",
            "descending": True,
            "form": _form_values(form),
            "errors": errors,
            "open_form": True,
            **_choices(request),
        },
        status=status,
    )


# Any text reaches these routes: one that names no key (a UUID, or a deprecated
# number) is a 404 page, like an unknown key.
@router.get("/{key_id}")
async def key_detail(request: Request, key_id: str) -> Response:
    return await _detail(request, key_ref(key_id))


@router.post("/{key_id}/edit")
@sets_credentials("changes an API key's allowed addresses, expiry or scopes")
async def edit_key(request: Request, key_id: str) -> Response:
    ref = key_ref(key_id)
    form = await request.form()
    spec, errors = _spec(form)
    status = 422  # the REST API's status for each refusal
    if spec is not None:
        try:
            view = await services_of(request).api_keys.replace(
                current_principal(request), ref, spec
            )
        except ValidationFailed as error:
            errors = _field_errors(error)
        except Conflict as error:
            errors, status = {"name": error.message}, 409
        else:
            return redirect_with_notice(
                request, f"/settings/api-keys/{view.public_id}", "Changes saved."
            )
    return await _detail(request, ref, form=_form_values(form), errors=errors, status=status)


@router.post("/{key_id}/regenerate")
@sets_credentials("regenerates an API key")
async def regenerate_key(request: Request, key_id: str) -> Response:
    ref = key_ref(key_id)
    form = await request.form()
    grace = grace_seconds(form)
    services = services_of(request)
    # The form names the secret it replaces (``_secret_stamp``). A reload of the
    # page that showed the new key sends the form again: it rotated once more, and the
    # secret the page had just promised for the grace period stopped working at once
    # (the Settings UI review). A form for a secret replaced since changes nothing.
    shown = form.get("generated")
    if isinstance(shown, str) and shown:
        current = await services.api_keys.get(current_principal(request), ref)
        if _secret_stamp(current) != shown:
            message = (
                "This key was regenerated after this form was shown (a reload sends the "
                "form again): nothing was changed. The new key was shown once; regenerate "
                "again only if you need another one."
            )
            return await _detail(request, ref, errors={"regenerate": message}, status=409)
    plaintext = await services.api_keys.regenerate(
        current_principal(request), ref, grace=timedelta(seconds=grace)
    )
    view = await services.api_keys.get(current_principal(request), ref)
    return _show_once(request, view, plaintext, "regenerated")


@router.post("/{key_id}/resume")
@sets_credentials("re-enables a suspended API key")
async def resume_key(request: Request, key_id: str) -> Response:
    view = await services_of(request).api_keys.resume(current_principal(request), key_ref(key_id))
    return redirect_with_notice(
        request, f"/settings/api-keys/{view.public_id}", "The key is enabled again."
    )


@router.post("/{key_id}/revoke")
async def revoke_key(request: Request, key_id: str) -> Response:
    await services_of(request).api_keys.revoke(current_principal(request), key_ref(key_id))
    return redirect_with_notice(
        request, "/settings/api-keys", "The key is revoked. It stopped working at once."
    )


async def _detail(
    request: Request,
    ref: KeyRef,
    *,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    services = services_of(request)
    principal = current_principal(request)
    key = await services.api_keys.get(principal, ref)
    usage = await services.api_keys.usage(
        principal, PageRequest(page=0, size=50), UsageFilter(key_ref=key.key_pk)
    )
    now = services.clock()
    totals = await services.api_keys.usage_totals(principal, key.key_pk, now - timedelta(days=1))
    return render(
        request,
        "api_key_detail.html",
        {
            "key": _row(key, now),
            "totals": totals,
            "usage": usage.items,
            "usage_total": usage.total,
            "form": form or _form_of(key),
            "errors": errors or {},
            "owned": key.owner_id == principal.user_id,
            # The forms the service would carry out for this caller, and no other.
            "actions": key_actions(principal, key),
            **_choices(request),
        },
        status=status,
    )


def _show_once(request: Request, key: ApiKeyView, plaintext: str, what: str) -> Response:
    base = str(request.base_url).rstrip("/")
    response = render(
        request,
        "api_key_created.html",
        {"key": key, "plaintext": plaintext, "what": what, "base_url": base},
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _spec(form: FormData) -> tuple[KeySpec | None, dict[str, str]]:
    """The form as a KeySpec, or field errors for what cannot even be read."""
    errors: dict[str, str] = {}
    expires_at = None
    raw_date = str(form.get("expires_on", "")).strip()
    if raw_date:
        try:
            day = datetime.strptime(raw_date, "%Y-%m-%d").replace(tzinfo=UTC).date()
            expires_at = datetime.combine(day, time.min, tzinfo=UTC)
        except ValueError:
            errors["expiresAt"] = "Enter a date."
    allowed = [
        line.strip() for line in str(form.get("allowed_ips", "")).splitlines() if line.strip()
    ]
    scopes = frozenset(str(s) for s in form.getlist("scopes"))
    if errors:
        return None, errors
    return (
        KeySpec(
            name=str(form.get("name", "")),
            allowed_networks=allowed,
            expires_at=expires_at,
            scopes=scopes or None,
            rate_limit=str(form.get("rate_limit", "")).strip(),
        ),
        {},
    )


def _field_errors(error: ValidationFailed) -> dict[str, str]:
    errors: dict[str, str] = {}
    for problem in error.field_errors:
        field = "allowedIp" if problem.field.startswith("allowedIp") else problem.field
        message = problem.message
        if field == "allowedIp" and "[" in problem.field:
            message = f"Entry {int(problem.field.split('[')[1].rstrip(']')) + 1}: {message}"
        errors[field] = f"{errors[field]} {message}" if field in errors else message
    return errors


def _row(key: ApiKeyView, now: datetime) -> dict[str, Any]:
    expiring = (
        key.status == "active"
        and key.expires_at is not None
        and key.expires_at - now <= EXPIRING_SOON
    )
    return {
        "key": key,
        "badge": "expiring" if expiring else key.status,
        "secret_stamp": _secret_stamp(key),
    }


def _secret_stamp(key: ApiKeyView) -> str:
    """Which secret the key has now, as the regenerate form names it: when it was made
    and its displayed tail (both public on the page; a new secret changes both)."""
    return f"{key.generated_at.isoformat()} {key.prefix}"


def _empty_form(now: datetime) -> dict[str, Any]:
    return {
        "name": "",
        "expires_on": (now + timedelta(days=90)).strftime("%Y-%m-%d"),
        "allowed_ips": "",
        "scopes": ["read", "write"],
        "rate_limit": "",
    }


def _form_of(key: ApiKeyView) -> dict[str, Any]:
    return {
        "name": key.name,
        "expires_on": key.expires_at.strftime("%Y-%m-%d") if key.expires_at else "",
        "allowed_ips": "\n".join(key.allowed_networks),
        "scopes": sorted(key.scopes),
        "rate_limit": key.rate_limit or "",
    }


def _form_values(form: FormData) -> dict[str, Any]:
    return {
        "name": str(form.get("name", "")),
        "expires_on": str(form.get("expires_on", "")),
        "allowed_ips": str(form.get("allowed_ips", "")),
        "scopes": [str(s) for s in form.getlist("scopes")],
        "rate_limit": str(form.get("rate_limit", "")),
    }


def _choices(request: Request) -> dict[str, Any]:
    scopes = services_of(request).api_keys.allowed_scopes
    if not current_principal(request).is_admin:
        scopes -= {SCOPE_ADMIN}  # refused for keys of non-admins anyway
    return {
        "presets": EXPIRY_PRESETS,
        "grace_choices": [
            (s, label) for s, label in GRACE_CHOICES if s <= MAX_GRACE.total_seconds()
        ],
        "all_scopes": sorted(scopes),
    }
