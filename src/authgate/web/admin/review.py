"""The keys review page for administrators: the live keys worth a second look."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from fastapi import APIRouter, Request, Response
from starlette.datastructures import QueryParams

from authgate.api.access import services_of
from authgate.services.api_key_views import ApiKeyView
from authgate.services.api_keys import REVIEW_LIMIT
from authgate.web import forms
from authgate.web.pages import AdminPageRoute, render

router = APIRouter(prefix="/settings", route_class=AdminPageRoute)

REVIEW_PATH: Final = "/settings/keys-review"
MAX_DAYS: Final = 3650
# Keys a section lists at most (its count covers every match).
LISTED = REVIEW_LIMIT


@router.get("/keys-review")
async def keys_review(request: Request) -> Response:
    params = request.query_params
    errors: dict[str, str] = {}
    unused_days = _bounded_int(params, "unusedDays", 30, 1, errors)
    expiring_days = _bounded_int(params, "expiringDays", 14, 0, errors)
    values = {
        "unusedDays": forms.text(params, "unusedDays", 12) or "30",
        "expiringDays": forms.text(params, "expiringDays", 12) or "14",
    }
    if errors:
        return render(
            request,
            "keys_review.html",
            {"sections": [], "values": values, "errors": errors},
            status=422,
        )
    services = services_of(request)
    review = await services.api_keys.review(
        unused_days=unused_days, expiring_days=expiring_days, limit=LISTED
    )
    owners = review.owner_logins
    now = services.clock()
    expiring_by = now + timedelta(days=expiring_days)

    def rows(keys: Sequence[ApiKeyView]) -> list[dict[str, Any]]:
        return [
            {"key": key, "owner": owners.get(key.owner_id), "badge": _badge(key, expiring_by)}
            for key in keys
        ]

    sections = [
        {
            "id": "unused",
            "title": "Unused",
            "description": f"Live keys not used for {unused_days} days or never used: "
            "revoke the ones nobody needs.",
            # Said of what this section checks only: a key created less than N days
            # ago and never used is listed in other sections as "never used".
            "empty": f"No live key has gone {unused_days} days without use. Keys younger "
            f"than {unused_days} days are not counted here, used or not.",
            "rows": rows(review.unused),
            "count": review.counts["unused"],
        },
        {
            "id": "unrestricted",
            "title": "Without IP restriction",
            "description": "Live keys accepted from any address: restrict them to the "
            "addresses their scripts call from.",
            "empty": "Every live key is restricted to some addresses.",
            "rows": rows(review.unrestricted),
            "count": review.counts["unrestricted"],
        },
        {
            "id": "expiring",
            "title": "Expiring soon",
            "description": f"Live keys expiring within {expiring_days} days: regenerate or "
            "let them lapse.",
            "empty": "No live key expires in that time.",
            "rows": rows(review.expiring),
            "count": review.counts["expiring"],
        },
        {
            "id": "broad",
            "title": "Broadest scopes",
            "description": "Live keys with the write or admin scope: give read-only "
            "integrations read-only keys.",
            "empty": "No live key has the write or admin scope.",
            "rows": rows(review.broad_scopes),
            "count": review.counts["broad_scopes"],
            "scopes": True,
        },
        {
            "id": "legacy",
            "title": "Imported from UTMStack",
            "description": "Rotate: plaintext was stored by UTMStack. Rotating gives an "
            "agk_ key; the old key keeps working for the grace period.",
            "empty": "No live key still has the secret UTMStack stored.",
            "rows": rows(review.legacy),
            "count": review.counts["legacy"],
        },
        {
            "id": "beyond-expiry-policy",
            "title": "Expiry beyond the policy",
            "description": "Live keys without an expiry or expiring later than the "
            "maximum lifetime allows (an import keeps UTMStack's expiry): set one.",
            "empty": "Every live key expires within the maximum lifetime.",
            "rows": rows(review.beyond_expiry_policy),
            "count": review.counts["beyond_expiry_policy"],
        },
    ]
    return render(
        request,
        "keys_review.html",
        {"sections": sections, "values": values, "errors": {}, "limit": review.limit},
    )


def _badge(key: ApiKeyView, expiring_by: datetime) -> str:
    expiring = (
        key.status == "active" and key.expires_at is not None and key.expires_at <= expiring_by
    )
    return "expiring" if expiring else key.status


def _bounded_int(
    params: QueryParams, name: str, default: int, lowest: int, errors: dict[str, str]
) -> int:
    raw = params.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdecimal() or len(raw) > 9 or not lowest <= int(raw) <= MAX_DAYS:
        errors[name] = f"Enter a whole number of days from {lowest} to {MAX_DAYS}."
        return default
    return int(raw)


# -- alerts -----------------------------------------------------------------------------
