"""The canonical upstream path forward-auth rules are matched on (``security.paths``)."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from authgate.exceptions import AmbiguousUpstreamPath, AmbiguousUpstreamRequest, ValidationFailed
from authgate.reasons import Reason
from authgate.security.paths import (
    canonical_method,
    canonical_path,
    canonical_text_path,
    case_folded,
    segment_prefixes,
)
from tests.security.path_variants import target_variant


@pytest.mark.parametrize(
    ("target", "path"),
    [
        # the query and the absolute form
        ("/api/x?a=1", "/api/x"),
        ("/api/x?next=/../admin#frag", "/api/x"),
        ("http://upstream.example/admin/x?q", "/admin/x"),
        ("HTTPS://upstream.example", "/"),
        ("", "/"),
        ("/", "/"),
        ("api/x", "/api/x"),
        ("/a/b/", "/a/b/"),
        ("/.well-known/x", "/.well-known/x"),
        ("/files/v1.0/..x", "/files/v1.0/..x"),
        # case is kept (matching folds it)
        ("/ADMIN/x", "/ADMIN/x"),
        # percent-encoding, decoded once as UTF-8
        ("/%61dmin", "/admin"),
        ("/caf%C3%A9", "/café"),
        ("/caf\xc3\xa9", "/café"),  # raw UTF-8 bytes, as ASGI decodes a header (latin-1)
        ("/100%25", "/100%"),
        ("/bad%ZZescape", "/bad%ZZescape"),
        ("/a%2", "/a%2"),
    ],
)
def test_targets_every_server_reads_alike_are_accepted(target: str, path: str) -> None:
    assert canonical_path(target) == path


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("/public%2f..%2fadmin", "path_encoded_separator"),
        ("/public/..%2Fadmin", "path_encoded_separator"),
        ("/public/..%5cadmin", "path_encoded_separator"),
        ("/admin%3bx/secret", "path_encoded_separator"),
        ("/admin%3f/x", "path_encoded_separator"),
        ("/admin%3F/x", "path_encoded_separator"),
        ("/public%23/../admin", "path_encoded_separator"),
        ("/%u0061dmin", "path_encoded_separator"),
        ("/public/%252e%252e/admin", "path_double_encoded"),
        ("/%2561dmin", "path_double_encoded"),
        ("/%25%32%65", "path_double_encoded"),
        ("/public\\..\\admin", "path_backslash"),
        ("/admin%00.png", "path_control_character"),
        ("/admin\x00", "path_control_character"),
        ("/admin%0d%0aX-Injected: 1", "path_control_character"),
        ("/a%09b", "path_control_character"),
        ("/a%C2%85b", "path_control_character"),  # U+0085, a C1 control
        ("/a%ff", "path_not_utf8"),
        ("/a%C3", "path_not_utf8"),
        ("/a/\u0100", "path_not_bytes"),
        ("/public/x#/../../admin", "path_fragment"),
        # Servers that resolve dot segments read these as /admin/..., servers that do
        # not (Starlette, Express) as /public/... or /admin/...: no single reading.
        ("/admin/..;/users", "path_parameter"),
        ("/secret/..;/x", "path_parameter"),
        ("/public/..;/admin/x", "path_parameter"),
        ("/public/..;a=b/admin/x", "path_parameter"),
        ("/;/admin/x", "path_parameter"),
        ("/admin;jsessionid=abc/users", "path_parameter"),
        ("/api/orders;x", "path_parameter"),
        ("/secret/%2e%2e/x", "path_dot_segment"),
        ("/secret/.%2e/x", "path_dot_segment"),
        ("/public/../admin/x", "path_dot_segment"),
        ("/a/b/..", "path_dot_segment"),
        ("/..", "path_dot_segment"),
        ("/a/./b", "path_dot_segment"),
        ("/a/b/.", "path_dot_segment"),
        ("/a/%2E/b", "path_dot_segment"),
        ("//admin/x", "path_empty_segment"),
        ("//", "path_empty_segment"),
        ("http://upstream.example//", "path_empty_segment"),
        ("/admin//x", "path_empty_segment"),
        ("/admin//", "path_empty_segment"),
        ("/admin./x", "path_trailing_dot"),
        ("/admin../x", "path_trailing_dot"),
        ("/admin%20/x", "path_trailing_dot"),
        ("/...", "path_trailing_dot"),
        ("/%20/admin", "path_trailing_dot"),
        ("/" + "a" * 8200, "path_too_long"),
    ],
)
def test_targets_servers_read_differently_are_refused(target: str, reason: str) -> None:
    with pytest.raises(AmbiguousUpstreamPath) as refused:
        canonical_path(target)
    assert refused.value.reason == reason
    assert refused.value.code == "ambiguous_upstream_path"


@pytest.mark.parametrize(
    ("path", "folded"),
    [
        ("/ADMIN/X", "/admin/x"),
        ("/\u017fecret", "/secret"),  # long s: Java's equalsIgnoreCase finds it equal to s
        ("/adm\u0131n", "/admin"),  # dotless i
        ("/ADM\u0130N", "/admin"),  # dotted capital I
        ("/\u212aeys", "/keys"),  # Kelvin sign
        ("/Café", "/café"),
    ],
)
def test_case_folding_takes_ascii_lookalike_letters_for_ascii(path: str, folded: str) -> None:
    assert case_folded(path) == folded


def test_rule_prefixes_are_read_as_text() -> None:
    assert canonical_text_path("/café/") == "/café/"
    assert canonical_text_path("/admin") == "/admin"


def test_segment_prefixes_end_on_segment_boundaries() -> None:
    assert list(segment_prefixes("/a/b/c")) == ["/a/b/c", "/a/b", "/a", "/"]
    assert list(segment_prefixes("/a/b/")) == ["/a/b", "/a", "/"]
    assert list(segment_prefixes("/")) == ["/"]
    assert "/admin" not in set(segment_prefixes("/administrator/x"))


@pytest.mark.parametrize(
    ("given", "method"), [("POST", "POST"), (" GET ", "GET"), ("PROPFIND", "PROPFIND")]
)
def test_methods_are_upper_case(given: str, method: str) -> None:
    assert canonical_method(given) == method


@pytest.mark.parametrize("given", ["post", " Get ", "gET", "propfind"])
def test_methods_in_another_case_are_refused_as_ambiguous(given: str) -> None:
    """``get`` is not GET to Go or Starlette, and is GET to Symfony: refused, never
    taken for the safe GET (attack review)."""
    with pytest.raises(AmbiguousUpstreamRequest) as refused:
        canonical_method(given)
    assert refused.value.reason is Reason.METHOD_NOT_UPPER_CASE


@pytest.mark.parametrize("given", ["", "G E T", "GET1", "X" * 21, "ÉTÉ", "po\u00dft"])
def test_malformed_methods_are_refused(given: str) -> None:
    with pytest.raises(ValidationFailed):
        canonical_method(given)


# -- properties ------------------------------------------------------------------------------

PROTECTED = ["/admin", "/admin/secret", "/internal", "/api/orders", "/api/orders/17/items"]


def _covered_by(path: str, prefix: str) -> bool:
    folded = case_folded(path).rstrip("/") or "/"
    return folded == prefix or folded.startswith(prefix + "/")


@given(
    st.sampled_from(PROTECTED).flatmap(lambda path: st.tuples(st.just(path), target_variant(path)))
)
@example(("/admin/secret", "/public/..;/admin/secret"))
@example(("/admin/secret", "/public/%2e%2e;/admin/secret"))
@example(("/admin/secret", "/;/ADMIN./secret"))
@example(("/api/orders", "/api/%6frders;x"))
def test_no_variant_of_a_protected_path_escapes_its_prefix(drawn: tuple[str, str]) -> None:
    """Whatever encoding, params, dots, case or detours a target uses to name a protected
    path, its canonical form is still under that path's first segment (and the whole
    path), or it is refused."""
    protected, target = drawn
    try:
        path = canonical_path(target)
    except AmbiguousUpstreamPath:
        return
    assert _covered_by(path, protected), (target, path)


@given(
    st.sampled_from(PROTECTED),
    st.lists(
        st.sampled_from(["..", "..;", "%2e%2e", ".%2e", ".", "", ";x", "..;a=b", "x", "%2E"]),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from(["users", "public/x", ""]),
)
@example("/admin", ["..;"], "users")
@example("/admin", ["%2e%2e"], "x")
def test_no_target_read_under_a_protected_path_is_taken_out_of_it(
    protected: str, detour: list[str], rest: str
) -> None:
    """The other direction: a server that resolves no dot segments (Starlette, Express)
    serves ``/admin/..;/users`` from whatever is mounted at ``/admin``; the path authgate
    accepts for it is under ``/admin`` too, or it is refused."""
    target = protected + "/" + "/".join([*detour, rest])
    try:
        path = canonical_path(target)
    except AmbiguousUpstreamPath:
        return
    assert _covered_by(path, protected), (target, path)


@given(st.text(max_size=80))
@example("/a/%2e%2e/%2e%2e/b")
@example("/;;/..;")
def test_accepted_paths_are_read_alike_by_every_server(text: str) -> None:
    """Any text: refused, or a path that needs no normalising - absolute, no empty, dot or
    ;param segments, no trailing dots or spaces, no escapes, backslashes or controls - so
    servers that resolve dot segments, strip params or merge slashes and servers that do
    none of it read the same path; it is its own reading."""
    target = text.encode("utf-8").decode("latin-1")
    try:
        path = canonical_path(target)
    except AmbiguousUpstreamPath:
        return
    assert path.startswith("/")
    assert "//" not in path
    segments = path.strip("/").split("/") if path != "/" else []
    assert all(segment not in ("", ".", "..") for segment in segments)
    assert all(not segment.endswith((".", " ")) for segment in segments)
    assert ";" not in path
    assert "\\" not in path
    assert not any(ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F for char in path)
    assert canonical_text_path(path) == path
