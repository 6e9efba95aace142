"""Which headers describe the request forward-auth checks (``UpstreamRequestReader``)."""

from __future__ import annotations

import pytest

from authgate.exceptions import AmbiguousUpstreamRequest, ValidationFailed
from authgate.services.upstream_request import UpstreamRequest, UpstreamRequestReader

NGINX = UpstreamRequestReader.for_proxy("nginx")
TRAEFIK = UpstreamRequestReader.for_proxy("traefik")
CADDY = UpstreamRequestReader.for_proxy("caddy")


def headers(**values: str | list[str]) -> dict[bytes, list[str]]:
    """``x_original_uri="/a"`` -> ``{b"x-original-uri": ["/a"]}``."""
    return {
        name.replace("_", "-").encode(): value if isinstance(value, list) else [value]
        for name, value in values.items()
    }


def test_each_proxy_reads_its_own_pair() -> None:
    original = headers(x_original_method="post", x_original_uri="/api/x?y=1")
    assert NGINX.read(original) == UpstreamRequest("POST", "/api/x?y=1")
    forwarded = headers(x_forwarded_method="DELETE", x_forwarded_uri="/api/x")
    assert TRAEFIK.read(forwarded) == UpstreamRequest("DELETE", "/api/x")
    assert CADDY.read(forwarded) == UpstreamRequest("DELETE", "/api/x")


def test_both_pairs_may_be_sent_when_they_agree() -> None:
    """nginx's example sets both pairs; the guard sends both: read alike everywhere."""
    both = headers(
        x_original_method="GET",
        x_original_uri="/admin/x",
        x_forwarded_method="get",
        x_forwarded_uri="/admin/x",
    )
    for reader in (NGINX, TRAEFIK, CADDY):
        assert reader.read(both) == UpstreamRequest("GET", "/admin/x")


@pytest.mark.parametrize(
    ("reader", "sent", "header"),
    [
        # issue 10 item 1: Traefik/Caddy pass the client's X-Original-URI on.
        (
            TRAEFIK,
            headers(
                x_forwarded_method="GET",
                x_forwarded_uri="/admin/x",
                x_original_uri="/public/x",
            ),
            "X-Original-URI",
        ),
        (
            CADDY,
            headers(
                x_forwarded_method="POST",
                x_forwarded_uri="/api/orders",
                x_original_method="GET",
            ),
            "X-Original-Method",
        ),
        # nginx configured, but a client's X-Forwarded-Uri came along and disagrees.
        (
            NGINX,
            headers(
                x_original_method="GET",
                x_original_uri="/admin/x",
                x_forwarded_uri="/public/x",
            ),
            "X-Forwarded-Uri",
        ),
        # the configured pair is missing while the other is there (wrong proxy setting).
        (NGINX, headers(x_forwarded_method="GET", x_forwarded_uri="/x"), "X-Forwarded-Method"),
        (TRAEFIK, headers(x_original_method="GET", x_original_uri="/x"), "X-Original-Method"),
    ],
)
def test_a_disagreeing_pair_is_refused(
    reader: UpstreamRequestReader, sent: dict[bytes, list[str]], header: str
) -> None:
    with pytest.raises(AmbiguousUpstreamRequest) as refused:
        reader.read(sent)
    assert refused.value.code == "ambiguous_upstream_request"
    assert refused.value.reason == "conflicting_upstream_header"
    assert refused.value.header == header


def test_a_header_sent_twice_is_refused() -> None:
    """A proxy that appends where it should replace, plus the client's own copy."""
    sent = headers(x_forwarded_method="GET", x_forwarded_uri=["/public/x", "/admin/x"])
    with pytest.raises(AmbiguousUpstreamRequest) as refused:
        TRAEFIK.read(sent)
    assert refused.value.reason == "duplicate_upstream_header"
    assert refused.value.header == "X-Forwarded-Uri"


@pytest.mark.parametrize(
    "sent",
    [
        headers(),
        headers(x_original_uri="/api/x"),  # nginx's subrequest is a GET: no fallback
        headers(x_original_method="GET"),
    ],
)
def test_the_read_pair_is_required(sent: dict[bytes, list[str]]) -> None:
    with pytest.raises(ValidationFailed) as refused:
        NGINX.read(sent)
    assert type(refused.value) is ValidationFailed
    assert "required" in refused.value.message
    assert "AUTHGATE_FORWARD_AUTH_PROXY=nginx" in refused.value.message


def test_header_names_may_be_given_explicitly() -> None:
    """A proxy with headers of its own: only those are read; both known pairs become
    "other" headers that must agree."""
    reader = UpstreamRequestReader.for_proxy(
        "nginx", method_header="X-Upstream-Method", uri_header="X-Upstream-Uri"
    )
    assert reader.header_names == {
        b"x-upstream-method",
        b"x-upstream-uri",
        b"x-original-method",
        b"x-original-uri",
        b"x-forwarded-method",
        b"x-forwarded-uri",
    }
    sent = headers(x_upstream_method="PUT", x_upstream_uri="/a")
    assert reader.read(sent) == UpstreamRequest("PUT", "/a")
    with pytest.raises(AmbiguousUpstreamRequest):
        reader.read({**sent, **headers(x_original_uri="/b")})


def test_a_malformed_method_or_an_overlong_uri_is_a_validation_error() -> None:
    with pytest.raises(ValidationFailed):
        NGINX.read(headers(x_original_method="G E T", x_original_uri="/"))
    with pytest.raises(ValidationFailed, match="too long"):
        NGINX.read(headers(x_original_method="GET", x_original_uri="/" + "a" * 9000))
