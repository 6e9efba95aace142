"""Which headers describe the request forward-auth checks (``UpstreamRequestReader``)."""

from __future__ import annotations

import pytest

from authgate.exceptions import AmbiguousUpstreamRequest, ValidationFailed
from authgate.reasons import Reason
from authgate.services import upstream_request
from authgate.services.upstream_request import UpstreamRequest, UpstreamRequestReader

NGINX = UpstreamRequestReader.for_proxy("nginx")
TRAEFIK = UpstreamRequestReader.for_proxy("traefik")
CADDY = UpstreamRequestReader.for_proxy("caddy")


RawHeaders = list[tuple[bytes, bytes]]


def headers(**values: str | list[str]) -> RawHeaders:
    """``x_original_uri="/a"`` -> ``[(b"x-original-uri", b"/a")]``, as ASGI gives them
    (among other headers)."""
    raw = [(b"host", b"upstream.example"), (b"authorization", b"Bearer x")]
    for name, value in values.items():
        for one in value if isinstance(value, list) else [value]:
            raw.append((name.replace("_", "-").encode(), one.encode("latin-1")))
    return raw


def test_each_proxy_reads_its_own_pair() -> None:
    original = headers(x_original_method="POST", x_original_uri="/api/x?y=1")
    assert NGINX.read(original) == UpstreamRequest("POST", "/api/x?y=1")
    forwarded = headers(x_forwarded_method="DELETE", x_forwarded_uri="/api/x")
    assert TRAEFIK.read(forwarded) == UpstreamRequest("DELETE", "/api/x")
    assert CADDY.read(forwarded) == UpstreamRequest("DELETE", "/api/x")


def test_both_pairs_may_be_sent_when_they_agree() -> None:
    """nginx's example sets both pairs; the guard sends both: read alike everywhere."""
    both = headers(
        x_original_method="GET",
        x_original_uri="/admin/x",
        x_forwarded_method="GET",
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
    reader: UpstreamRequestReader, sent: RawHeaders, header: str
) -> None:
    with pytest.raises(AmbiguousUpstreamRequest) as refused:
        reader.read(sent)
    assert refused.value.code == "ambiguous_upstream_request"
    assert refused.value.reason == "conflicting_upstream_header"
    assert refused.value.header == header


@pytest.mark.parametrize(
    ("sent", "header"),
    [
        (
            headers(x_forwarded_method="GET", x_forwarded_uri=["/public/x", "/admin/x"]),
            "X-Forwarded-Uri",
        ),
        (headers(x_forwarded_method=["GET", "DELETE"], x_forwarded_uri="/x"), "X-Forwarded-Method"),
        (headers(x_forwarded_method="GET", x_forwarded_uri=["/x", "/x"]), "X-Forwarded-Uri"),
    ],
)
def test_a_header_sent_twice_is_refused(sent: RawHeaders, header: str) -> None:
    """A proxy that appends where it should replace, plus the client's own copy."""
    with pytest.raises(AmbiguousUpstreamRequest) as refused:
        TRAEFIK.read(sent)
    assert refused.value.reason == "duplicate_upstream_header"
    assert refused.value.header == header


def test_the_other_pair_sent_twice_must_agree_each_time() -> None:
    sent = headers(
        x_original_method="GET",
        x_original_uri="/admin/x",
        x_forwarded_uri=["/admin/x", "/public/x"],
    )
    with pytest.raises(AmbiguousUpstreamRequest, match="X-Forwarded-Uri"):
        NGINX.read(sent)


def test_the_claimed_target_is_the_read_headers_value() -> None:
    sent = headers(x_original_uri="/admin/x?q=1", x_forwarded_uri="/public/x")
    assert NGINX.claimed_target(sent) == "/admin/x?q=1"
    assert TRAEFIK.claimed_target(sent) == "/public/x"
    assert NGINX.claimed_target(headers()) is None


@pytest.mark.parametrize(
    "sent",
    [
        headers(),
        headers(x_original_uri="/api/x"),  # nginx's subrequest is a GET: no fallback
        headers(x_original_method="GET"),
    ],
)
def test_the_read_pair_is_required(sent: RawHeaders) -> None:
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
    sent = headers(x_upstream_method="PUT", x_upstream_uri="/a")
    assert reader.read(sent) == UpstreamRequest("PUT", "/a")
    for other in ("x_original_uri", "x_forwarded_uri", "x_original_method"):
        with pytest.raises(AmbiguousUpstreamRequest):
            reader.read(sent + headers(**{other: "/b"}))


def test_a_malformed_method_or_an_overlong_uri_is_a_validation_error() -> None:
    with pytest.raises(ValidationFailed):
        NGINX.read(headers(x_original_method="G E T", x_original_uri="/"))
    with pytest.raises(ValidationFailed, match="too long"):
        NGINX.read(headers(x_original_method="GET", x_original_uri="/" + "a" * 9000))


# -- the method: upper case only, and its overrides ----------------------------------------------


@pytest.mark.parametrize("method", ["get", "Get", "delete", "pOST", "propfind"])
def test_a_method_not_in_upper_case_is_refused(method: str) -> None:
    """Attack review: ``get`` counted as the safe GET, but Go and Starlette upstreams
    take it for another method (a handler's non-GET branch, a write); Symfony and
    Laravel for the upper-case one. No single reading is right: refused, as ambiguous."""
    for reader, sent in (
        (NGINX, headers(x_original_method=method, x_original_uri="/api/x")),
        (CADDY, headers(x_forwarded_method=method, x_forwarded_uri="/api/x")),
    ):
        with pytest.raises(AmbiguousUpstreamRequest) as refused:
            reader.read(sent)
        assert refused.value.reason is Reason.METHOD_NOT_UPPER_CASE
        assert refused.value.header == reader.method_header


@pytest.mark.parametrize(
    ("uri", "overrides"),
    [
        ("/api/orders/1?_method=DELETE", ("DELETE",)),
        ("/api/orders/1?page=2&_method=delete", ("DELETE",)),  # upper-cased, as frameworks do
        ("/api/orders/1?_METHOD=Put", ("PUT",)),  # the name in any case
        ("/api/orders/1?%5Fmethod=PATCH", ("PATCH",)),  # percent-encoded name
        ("/api/orders/1?_meth%6Fd=DELETE", ("DELETE",)),
        ("/api/orders/1?_method=%44ELETE", ("DELETE",)),  # percent-encoded value
        ("/api/orders/1?.method=DELETE", ("DELETE",)),  # PHP reads it as _method
        ("/api/orders/1?+_method=DELETE", ("DELETE",)),  # PHP drops leading spaces
        ("/api/orders/1?_method[]=DELETE", ("DELETE",)),
        ("/api/orders/1?a=1;_method=DELETE", ("DELETE",)),
        ("/api/orders/1?_method=PUT&_method=DELETE", ("PUT", "DELETE")),  # each one
        ("/api/orders/1?_method=POST", ()),  # the method sent
        ("/api/orders/1?method=DELETE&x_method=DELETE&_methods=DELETE", ()),
        ("/api/orders/_method=DELETE", ()),  # in the path, not the query
        ("/api/orders/1", ()),
    ],
)
def test_query_method_overrides_are_read(uri: str, overrides: tuple[str, ...]) -> None:
    """Laravel (by default), Symfony (http_method_override) and Express's
    method-override run ``POST /x?_method=DELETE`` as a DELETE."""
    read = NGINX.read(headers(x_original_method="POST", x_original_uri=uri))
    assert read == UpstreamRequest("POST", uri, overrides)


@pytest.mark.parametrize("name", ["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"])
def test_method_override_headers_are_read(name: str) -> None:
    """nginx and Caddy pass the client's headers on to the auth request: an override
    header authgate sees is one the upstream may honour, unless the proxy removes it."""
    sent = headers(x_original_method="POST", x_original_uri="/api/orders/1")
    sent.append((name.lower().encode(), b"delete"))
    assert NGINX.read(sent) == UpstreamRequest("POST", "/api/orders/1", ("DELETE",))
    both = [*sent, (b"x-http-method-override", b"PUT")]
    assert NGINX.read(both).overrides == ("DELETE", "PUT")  # each one, in order


@pytest.mark.parametrize(
    ("extra", "uri", "header"),
    [
        ([], "/api/orders/1?_method=", "X-Original-URI"),
        ([], "/api/orders/1?_method", "X-Original-URI"),
        ([], "/api/orders/1?_method=DEL%20ETE", "X-Original-URI"),
        ([], "/api/orders/1?_method=%00", "X-Original-URI"),
        ([], "/api/orders/1?_method=+DELETE", "X-Original-URI"),
        ([(b"x-http-method-override", b"")], "/api/orders/1", "X-HTTP-Method-Override"),
        ([(b"x-http-method", b"DELETE, PUT")], "/api/orders/1", "X-HTTP-Method"),
    ],
)
def test_a_method_override_naming_no_method_is_refused(
    extra: RawHeaders, uri: str, header: str
) -> None:
    """Symfony refuses such a request, Rack and Express run the method sent: refused."""
    with pytest.raises(AmbiguousUpstreamRequest) as refused:
        NGINX.read(headers(x_original_method="POST", x_original_uri=uri) + extra)
    assert refused.value.reason is Reason.INVALID_METHOD_OVERRIDE
    assert refused.value.header == header


def test_a_pair_read_again_is_remembered_but_every_header_is_still_checked() -> None:
    """The reading of a (method, URI) pair is remembered (a proxy asks about the same few
    again and again); what else the request carries is looked at every time: a
    disagreeing other pair, a header sent twice and a method override still count after
    the pair was read alone."""
    reader = UpstreamRequestReader.for_proxy("traefik")
    alone = headers(x_forwarded_method="GET", x_forwarded_uri="/public/x")
    first = reader.read(alone)
    assert first == UpstreamRequest("GET", "/public/x")
    assert reader.read(list(alone)) is first
    with pytest.raises(AmbiguousUpstreamRequest) as conflict:
        reader.read(alone + headers(x_original_uri="/admin/x"))
    assert conflict.value.reason is Reason.CONFLICTING_UPSTREAM_HEADER
    with pytest.raises(AmbiguousUpstreamRequest) as twice:
        reader.read(alone + headers(x_forwarded_uri="/public/x"))
    assert twice.value.reason is Reason.DUPLICATE_UPSTREAM_HEADER
    overridden = reader.read(alone + headers(x_http_method_override="DELETE"))
    assert overridden == UpstreamRequest("GET", "/public/x", ("DELETE",))
    assert reader.read(alone) is first
    # From the query: part of the pair itself, remembered with it.
    query = headers(x_forwarded_method="POST", x_forwarded_uri="/a?_method=DELETE")
    assert reader.read(query).overrides == ("DELETE",)
    assert reader.read(query).overrides == ("DELETE",)


def test_remembered_pairs_are_bounded() -> None:
    reader = UpstreamRequestReader.for_proxy("nginx")
    long_uri = "/" + "a" * upstream_request.MAX_REMEMBERED_TARGET
    sent = headers(x_original_method="GET", x_original_uri=long_uri)
    assert reader.read(sent) is not reader.read(sent)  # too long to be remembered
    first = headers(x_original_method="GET", x_original_uri="/0")
    remembered = reader.read(first)
    for number in range(1, upstream_request.MAX_REMEMBERED_PAIRS + 1):
        reader.read(headers(x_original_method="GET", x_original_uri=f"/{number}"))
    assert len(reader._read_alone) == upstream_request.MAX_REMEMBERED_PAIRS
    again = reader.read(first)  # the oldest went first
    assert again == remembered
    assert again is not remembered
