"""Forward-auth rules on canonical upstream paths, without HTTP."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from authgate.exceptions import AmbiguousUpstreamPath, InsufficientScope, PermissionDenied
from authgate.security.principal import Principal
from authgate.services.forward_auth import (
    ForwardAuthConfig,
    ForwardAuthPolicy,
    ForwardAuthRuleSetting,
    Requirement,
    Unmatched,
)
from authgate.services.upstream_request import MAX_REMEMBERED_TARGET, UpstreamRequest
from tests.security.path_variants import method_variant, target_variant

Rule = ForwardAuthRuleSetting


def key(*scopes: str, roles: tuple[str, ...] = ("ROLE_USER",)) -> Principal:
    return Principal(
        user_id=1,
        login="alice",
        authorities=frozenset(roles),
        method="api_key",
        credential_id="abcdefghijkl",
        expires_at=datetime(2030, 1, 1, tzinfo=UTC),
        scopes=frozenset(scopes),
    )


def user(*roles: str) -> Principal:
    return Principal(
        user_id=2,
        login="bob",
        authorities=frozenset(roles or ("ROLE_USER",)),
        method="jwt",
        credential_id="jti",
        expires_at=None,
    )


def test_the_longest_prefix_wins_and_methods_narrow_a_rule() -> None:
    policy = ForwardAuthPolicy(
        [
            Rule(path_prefix="/api/", scopes=["write"]),
            Rule(path_prefix="/api/", methods=["get", "HEAD"], scopes=["read"]),
            Rule(path_prefix="/api/reports/", scopes=["reports"]),
        ]
    )
    # Same prefix: the first rule whose methods match (no methods: any) decides.
    assert policy.requirement("GET", "/api/x").scopes == {"write"}
    assert policy.requirement("GET", "/api/reports/1").scopes == {"reports"}
    assert policy.requirement("GET", "/api/reports").scopes == {"reports"}  # the directory
    assert policy.requirement("GET", "/api/reportsX").scopes == {"write"}


def test_methods_are_matched_in_upper_case() -> None:
    policy = ForwardAuthPolicy([Rule(path_prefix="/", methods=["get"], scopes=["read"])])
    assert policy.requirement("GET", "/x").scopes == {"read"}
    assert policy.requirement("POST", "/x").rule == "default"


def test_unmatched_requests_follow_authgates_own_rule_or_are_denied() -> None:
    lenient = ForwardAuthPolicy()
    lenient.requirement("GET", "/x").check(key("read"))
    with pytest.raises(InsufficientScope):
        lenient.requirement("POST", "/x").check(key("read"))
    lenient.requirement("POST", "/x").check(key("write"))
    lenient.requirement("POST", "/x").check(user())  # a user's token: full rights

    strict = ForwardAuthPolicy(unmatched="deny")
    with pytest.raises(PermissionDenied):
        strict.requirement("GET", "/x").check(user("ROLE_ADMIN"))


def test_scopes_bind_keys_and_roles_bind_everyone() -> None:
    policy = ForwardAuthPolicy(
        [
            Rule(path_prefix="/orders/", scopes=["orders:write", "read"]),
            Rule(path_prefix="/admin/", roles=["ROLE_ADMIN"]),
            Rule(path_prefix="/off/", allow=False),
        ]
    )
    orders = policy.requirement("POST", "/orders/1")
    orders.check(key("orders:write", "read"))
    with pytest.raises(InsufficientScope, match="orders:write"):
        orders.check(key("read", "write"))
    orders.check(user())

    admin = policy.requirement("GET", "/admin/users")
    admin.check(user("ROLE_ADMIN"))
    admin.check(key("read", roles=("ROLE_ADMIN", "ROLE_USER")))
    with pytest.raises(PermissionDenied, match="ROLE_ADMIN"):
        admin.check(user("ROLE_USER"))
    with pytest.raises(PermissionDenied):
        admin.check(key("read", "write", "admin"))  # the key's owner lacks the role

    with pytest.raises(PermissionDenied):
        policy.requirement("GET", "/off/x").check(user("ROLE_ADMIN"))


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_a_read_key_stays_on_safe_methods_under_a_rule_without_scopes(method: str) -> None:
    """A rule that names no scopes (roles only, a permission, or nothing) holds keys to
    ``write`` for unsafe methods, as unmatched paths do: a ``read`` key (even with
    ``admin``, owned by an admin) never changes anything there. A rule that names its
    scopes decides alone, so a narrow ``orders:write`` key still may write orders."""
    admin_owned = ("ROLE_ADMIN", "ROLE_USER")
    policy = ForwardAuthPolicy(
        [
            Rule(path_prefix="/public/"),
            Rule(path_prefix="/admin/", roles=["ROLE_ADMIN"]),
            Rule(path_prefix="/reports/", permission="audit.read"),
            Rule(path_prefix="/orders/", methods=[method], scopes=["orders:write"]),
        ]
    )
    for path in ("/public/x", "/admin/users", "/reports/1"):
        requirement = policy.requirement(method, path)
        with pytest.raises(InsufficientScope, match="write"):
            requirement.check(key("read", "admin", roles=admin_owned))
        requirement.check(key("read", "write", "admin", roles=admin_owned))
        requirement.check(user(*admin_owned))  # a user's token: full rights
        # Reading stays open to the read key.
        policy.requirement("GET", path).check(key("read", "admin", roles=admin_owned))
    policy.requirement(method, "/orders/1").check(key("orders:write"))
    with pytest.raises(InsufficientScope, match="orders:write"):
        policy.requirement(method, "/orders/1").check(key("read", "write"))


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_a_key_reads_only_with_read_or_write_where_no_rule_names_its_scopes(method: str) -> None:
    """Safe methods under a rule that names no scopes, and unmatched paths, hold keys to
    ``read`` or ``write`` (as authgate's own API does): a key with only ``orders:write``
    (or only ``admin``) goes only where a rule names its scopes."""
    admin_owned = ("ROLE_ADMIN", "ROLE_USER")
    policy = ForwardAuthPolicy(
        [
            Rule(path_prefix="/admin/", roles=["ROLE_ADMIN"]),
            Rule(path_prefix="/orders/", scopes=["orders:write"]),
        ]
    )
    for path in ("/admin/users", "/elsewhere"):
        requirement = policy.requirement(method, path)
        for narrow in (key("orders:write", roles=admin_owned), key("admin", roles=admin_owned)):
            with pytest.raises(InsufficientScope, match="read or write"):
                requirement.check(narrow)
        requirement.check(key("read", roles=admin_owned))
        requirement.check(key("write", roles=admin_owned))
        requirement.check(user(*admin_owned))
    policy.requirement(method, "/orders/1").check(key("orders:write"))


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_rule_naming_its_scopes_for_get_decides_head_alone(method: str) -> None:
    """HEAD is also read without the GET rule (the unmatched default): that reading
    does not add ``read or write`` to a key the GET rule's own scope lets in (found by
    the diff review: HEAD was refused)."""
    path = "/orders/1"
    policy = ForwardAuthPolicy(
        [Rule(path_prefix="/orders/", methods=["GET"], scopes=["orders:read"])]
    )
    requirement = policy.requirement(method, path)
    requirement.check(key("orders:read"))
    with pytest.raises(InsufficientScope, match="orders:read"):
        requirement.check(key("read", "write"))


def test_another_case_of_a_scoped_path_keeps_both_requirements() -> None:
    """A case-sensitive upstream serves /projects/PUBLIC/x as the project "PUBLIC", not
    the public one: a key with only the public rule's scope does not get there for
    being let in by the case-folded reading (the second diff review: it did)."""
    policy = ForwardAuthPolicy(
        [
            Rule(path_prefix="/projects/public", methods=["GET"], scopes=["public:read"]),
            Rule(path_prefix="/projects", roles=["ROLE_USER"]),
        ]
    )
    policy.requirement("GET", "/projects/public/x").check(key("public:read"))
    for path in ("/projects/PUBLIC/x", "/projects/other/x"):
        with pytest.raises(InsufficientScope, match="read or write"):
            policy.requirement("GET", path).check(key("public:read"))


@pytest.mark.parametrize("method", ["G T", "GET1", "ÉTÉ", "X" * 21])
def test_rule_methods_must_be_http_methods(method: str) -> None:
    with pytest.raises(ValueError, match="not an HTTP method"):
        Rule(path_prefix="/", methods=[method])


@pytest.mark.parametrize("prefix", ["api/", "/a b", "/x?y", ""])
def test_rule_prefixes_must_be_paths(prefix: str) -> None:
    with pytest.raises(ValueError, match="path_prefix"):
        Rule(path_prefix=prefix)


@pytest.mark.parametrize(
    "prefix", ["/a/../b", "/admin;x", "/a//b", "/a/./b", "/admin.", "/%61dmin"]
)
def test_rule_prefixes_must_be_canonical(prefix: str) -> None:
    """A prefix is matched against canonical paths: one that is not canonical itself
    could never match as written."""
    with pytest.raises(ValueError, match="path_prefix"):
        Rule(path_prefix=prefix)


# -- matching on the canonical path (issue 10, item 2) -----------------------------------------

ISSUE_RULES = [
    Rule(path_prefix="/public/"),
    Rule(path_prefix="/admin/", roles=["ROLE_ADMIN"]),
    Rule(path_prefix="/internal", allow=False),
    Rule(path_prefix="/api/", methods=["GET", "HEAD"], scopes=["read"]),
    Rule(path_prefix="/api/orders", methods=["POST", "PUT", "DELETE"], scopes=["orders:write"]),
]


def decide(policy: ForwardAuthPolicy, method: str, target: str) -> Requirement:
    """The requirement for a request as a proxy describes it (method and raw target)."""
    path = policy.upstream_path(UpstreamRequest(method=method, target=target))
    return policy.requirement(method, path)


@pytest.mark.parametrize("unmatched", ["authenticated", "deny"])
@pytest.mark.parametrize("admin_prefix", ["/admin/", "/admin"])
@pytest.mark.parametrize(
    "target", ["/ADMIN/x", "/Admin/x", "/%61dmin/x", "/adm%C4%B1n/x", "/admin", "/admin/"]
)
def test_spellings_of_the_admin_path_are_held_to_the_admin_rule(
    target: str, admin_prefix: str, unmatched: str
) -> None:
    """A ROLE_USER caller is refused, in both rule forms and both unmatched modes; an
    admin passes (the rule, not a refusal, decided) where the path is the rule's in
    exact case too. A spelling in another case is, to a case-sensitive upstream, a path
    no rule covers: with ``unmatched = "deny"`` even an admin is refused there."""
    rules = [rule for rule in ISSUE_RULES if not rule.path_prefix.startswith("/admin")]
    rules.append(Rule(path_prefix=admin_prefix, roles=["ROLE_ADMIN"]))
    policy = ForwardAuthPolicy(rules, unmatched="deny" if unmatched == "deny" else "authenticated")
    requirement = decide(policy, "GET", target)
    with pytest.raises(PermissionDenied, match="ROLE_ADMIN"):
        requirement.check(user("ROLE_USER"))
    exact_case = target in ("/%61dmin/x", "/admin", "/admin/")
    if exact_case or unmatched == "authenticated":
        requirement.check(user("ROLE_ADMIN", "ROLE_USER"))
    else:
        with pytest.raises(PermissionDenied, match="No credential"):
            requirement.check(user("ROLE_ADMIN", "ROLE_USER"))


@pytest.mark.parametrize("target", ["/INTERNAL", "/internal", "/Internal/x", "/%69nternal/x"])
def test_a_refusing_rule_cannot_be_dodged_by_case_or_encoding(target: str) -> None:
    policy = ForwardAuthPolicy(ISSUE_RULES)
    with pytest.raises(PermissionDenied):
        decide(policy, "GET", target).check(user("ROLE_ADMIN"))


@pytest.mark.parametrize(
    ("method", "target", "exact_case"),
    [
        ("POST", "/api/Orders", False),
        ("POST", "/api/%6frders", True),
        ("post", "/api/orders", True),
        ("Post", "/API/ORDERS/17", False),
    ],
)
def test_api_key_scope_rules_hold_for_every_spelling(
    method: str, target: str, exact_case: bool
) -> None:
    """``orders:write`` is needed in every spelling; in another case than the rule's,
    the path is also what a case-sensitive upstream serves under ``/api`` (or no rule),
    where a POST needs ``write``."""
    policy = ForwardAuthPolicy(ISSUE_RULES)
    requirement = decide(policy, method.upper(), target)
    with pytest.raises(InsufficientScope, match="orders:write"):
        requirement.check(key("read", "write"))
    if exact_case:
        requirement.check(key("orders:write"))
    else:
        with pytest.raises(InsufficientScope, match="scope write"):
            requirement.check(key("orders:write"))
        requirement.check(key("orders:write", "write"))


FILES_RULES = [
    Rule(path_prefix="/files", roles=["ROLE_ADMIN"]),
    Rule(path_prefix="/files/public"),
]


@pytest.mark.parametrize(
    "target", ["/files/PUBLIC/x", "/files/Public/x", "/files/publ%C4%B1c/x", "/files/PUBL%C4%B0C/x"]
)
def test_a_looser_rule_does_not_cover_another_case_of_its_path(target: str) -> None:
    """Attack review: ``/files/PUBLIC/x`` was held only to the open ``/files/public``
    rule, while a case-sensitive upstream (Tomcat) serves it from ``/files``, which needs
    ROLE_ADMIN. Both readings' rules must now be met."""
    policy = ForwardAuthPolicy(FILES_RULES)
    with pytest.raises(PermissionDenied, match="ROLE_ADMIN"):
        decide(policy, "GET", target).check(user("ROLE_USER"))
    decide(policy, "GET", target).check(user("ROLE_ADMIN"))
    decide(policy, "GET", "/files/public/x").check(user("ROLE_USER"))


@pytest.mark.parametrize("target", ["/Files/Public/x", "/file%C5%BF/public/x", "/FILES/public"])
def test_another_case_of_a_ruled_path_is_unmatched_too_for_deny(target: str) -> None:
    """Attack review: with ``unmatched = "deny"``, ``/Files/Public/x`` was allowed by the
    ``/files/public`` rule, though to a case-sensitive upstream no rule covers it."""
    policy = ForwardAuthPolicy(FILES_RULES, unmatched="deny")
    with pytest.raises(PermissionDenied, match="No credential"):
        decide(policy, "GET", target).check(user("ROLE_ADMIN"))
    decide(policy, "GET", "/files/public/x").check(user("ROLE_USER"))


def test_case_sensitive_matching_reads_the_path_once() -> None:
    policy = ForwardAuthPolicy(FILES_RULES, case_sensitive=True)
    assert decide(policy, "GET", "/files/PUBLIC/x").roles == {"ROLE_ADMIN"}
    assert decide(policy, "GET", "/files/PUBLIC/x").also is None
    assert decide(policy, "GET", "/Files/x").rule == "default"


def test_prefixes_match_whole_segments() -> None:
    policy = ForwardAuthPolicy(
        [Rule(path_prefix="/admin", roles=["ROLE_ADMIN"]), Rule(path_prefix="/api/v1/")]
    )
    assert policy.requirement("GET", "/admin").roles == {"ROLE_ADMIN"}
    assert policy.requirement("GET", "/admin/").roles == {"ROLE_ADMIN"}
    assert policy.requirement("GET", "/admin/x/y").roles == {"ROLE_ADMIN"}
    assert policy.requirement("GET", "/administrator").rule == "default"
    assert policy.requirement("GET", "/admin-tools/x").rule == "default"
    assert policy.requirement("GET", "/api/v1").rule.startswith("/api/v1/")
    assert policy.requirement("GET", "/api/v10").rule == "default"


def test_rules_for_one_prefix_written_two_ways_keep_their_order() -> None:
    """``/api`` and ``/api/`` cover the same paths: the first listed whose methods match
    decides, as for any two rules with one prefix."""
    policy = ForwardAuthPolicy(
        [
            Rule(path_prefix="/api", methods=["GET"], scopes=["read"]),
            Rule(path_prefix="/api/", scopes=["write"]),
        ]
    )
    assert policy.requirement("GET", "/api/x").scopes == {"read"}
    assert policy.requirement("DELETE", "/api/x").scopes == {"write"}


def test_matching_may_be_case_sensitive() -> None:
    """For upstreams that tell /ADMIN from /admin (Tomcat does), by setting."""
    rules = [Rule(path_prefix="/admin", roles=["ROLE_ADMIN"])]
    assert ForwardAuthPolicy(rules).requirement("GET", "/ADMIN/x").roles == {"ROLE_ADMIN"}
    sensitive = ForwardAuthPolicy(rules, case_sensitive=True)
    assert sensitive.requirement("GET", "/ADMIN/x").rule == "default"
    assert sensitive.requirement("GET", "/admin/x").roles == {"ROLE_ADMIN"}


def test_an_ambiguous_path_is_refused_not_matched() -> None:
    """The reproductions of issue 10 (servlet containers read them as /admin/...) and
    of the attack review (Starlette serves /admin/..;/users from what is mounted at
    /admin), among others: no rule is matched for any of them."""
    policy = ForwardAuthPolicy(ISSUE_RULES, unmatched="deny")
    for target in (
        "/public/..%2fadmin/x",
        "/public/%252e%252e/admin",
        "/public\\..\\admin",
        "/admin;x/secret",
        "/admin;jsessionid=abc/users",
        "/admin./x",
        "/public/..;/admin/x",
        "/public/%2e%2e;/admin/x",
        "/;/admin/x",
        "/x/..;/admin/x",
        "/admin/..;/public/x",
        "/internal/%2e%2e/public",
        "/admin/./x",
        "//admin/x",
        "/api/orders;x",
    ):
        with pytest.raises(AmbiguousUpstreamPath):
            decide(policy, "GET", target)


# -- properties: no spelling of a protected request is allowed ------------------------------------

_POLICY = ForwardAuthPolicy(ISSUE_RULES, unmatched="authenticated")


def _spellings(path: str, method: str) -> st.SearchStrategy[tuple[str, str]]:
    return st.tuples(method_variant(method), target_variant(path))


@given(
    st.sampled_from(["/admin", "/admin/users/1", "/admin/x"]).flatmap(
        lambda p: _spellings(p, "GET")
    )
)
@example(("GET", "/public/..;/admin/x"))
def test_no_spelling_of_an_admin_path_lets_a_user_in(drawn: tuple[str, str]) -> None:
    method, target = drawn
    try:
        requirement = decide(_POLICY, method.strip().upper(), target)
    except AmbiguousUpstreamPath:
        return
    with pytest.raises(PermissionDenied):
        requirement.check(user("ROLE_USER"))


@given(st.sampled_from(["/internal", "/internal/metrics"]).flatmap(lambda p: _spellings(p, "GET")))
def test_no_spelling_of_a_refused_path_lets_anyone_in(drawn: tuple[str, str]) -> None:
    method, target = drawn
    try:
        requirement = decide(_POLICY, method.strip().upper(), target)
    except AmbiguousUpstreamPath:
        return
    with pytest.raises(PermissionDenied):
        requirement.check(user("ROLE_ADMIN", "ROLE_USER"))


@given(
    st.tuples(
        st.sampled_from(["/api/orders", "/api/orders/17", "/api/orders/17/items"]),
        st.sampled_from(["POST", "PUT", "DELETE"]),
    ).flatmap(lambda drawn: _spellings(*drawn))
)
@example(("post", "/api/Orders"))
@example(("POST", "/api/orders;x"))
@example(("POST", "/api/%6frders"))
@example(("POST", "/public/..;/api/orders"))
def test_no_spelling_of_an_order_write_passes_without_the_scope(drawn: tuple[str, str]) -> None:
    """API-key scope rules: a key with read and write but not orders:write never gets to
    change an order, however method and path are spelled."""
    method, target = drawn
    try:
        requirement = decide(_POLICY, method.strip().upper(), target)
    except AmbiguousUpstreamPath:
        return
    with pytest.raises(InsufficientScope):
        requirement.check(key("read", "write"))


def test_prefixes_whose_rules_leave_methods_to_others_are_warned_of() -> None:
    """The attack review's case: ``/admin`` with ``methods = ["GET"]`` and a role leaves
    POST to the unmatched default; the start-up log says so, once per prefix."""
    config = ForwardAuthConfig(
        rules=[
            Rule(path_prefix="/admin", methods=["GET"], roles=["ROLE_ADMIN"]),
            Rule(path_prefix="/ADMIN/", methods=["head"], roles=["ROLE_ADMIN"]),
            Rule(path_prefix="/api", methods=["GET"], scopes=["read"]),
            Rule(path_prefix="/api/", scopes=["write"]),
            Rule(path_prefix="/internal", allow=False),
        ]
    )
    (warning,) = config.warnings()
    assert warning.startswith("forward-auth rules for /admin name only GET, HEAD:")
    assert "forward_auth_unmatched (authenticated)" in warning
    policy = ForwardAuthPolicy(config.rules)
    with pytest.raises(InsufficientScope):  # POST falls to the default: keys need write
        policy.requirement("POST", "/admin/x").check(key("read"))
    policy.requirement("POST", "/admin/x").check(user("ROLE_USER"))


def test_roles_and_scopes_no_caller_can_have_are_warned_of() -> None:
    """The README-driven review: ``roles = ["ROLE_NOPE"]`` (a typo) refused everyone
    under its prefix with no word at start; a scope outside the built-in and
    ``api_key_extra_scopes`` likewise refused every key."""
    config = ForwardAuthConfig(
        rules=[
            Rule(path_prefix="/ops", roles=["ROLE_ADMIN", "ROLE_ADMN"]),
            Rule(path_prefix="/orders", scopes=["orders:write", "read"]),
            Rule(path_prefix="/fine", roles=["ROLE_USER"], scopes=["write"]),
        ]
    )
    assert config.warnings(frozenset({"read", "write", "admin", "orders:read"})) == [
        "forward-auth rule for /ops names the unknown role ROLE_ADMN: no user can have it",
        "forward-auth rule for /orders names the unknown scope orders:write: no API key "
        "can have it",
    ]
    assert config.warnings(frozenset({"read", "write", "admin", "orders:write"})) == [
        "forward-auth rule for /ops names the unknown role ROLE_ADMN: no user can have it",
    ]


def test_a_rule_naming_get_decides_head_too() -> None:
    """Upstreams answer HEAD with their GET handler: a GET-only role rule holds HEAD to
    the role (it fell to the unmatched default, any authenticated caller), and the
    start-up warning names HEAD among the methods decided there."""
    config = ForwardAuthConfig(
        rules=[Rule(path_prefix="/admin", methods=["GET"], roles=["ROLE_ADMIN"])]
    )
    (warning,) = config.warnings()
    assert warning.startswith("forward-auth rules for /admin name only GET, HEAD:")
    policy = ForwardAuthPolicy(config.rules)
    for method in ("GET", "HEAD"):
        with pytest.raises(PermissionDenied):
            policy.requirement(method, "/admin/x").check(user("ROLE_USER"))
        policy.requirement(method, "/admin/x").check(user("ROLE_ADMIN"))
    policy.requirement("OPTIONS", "/admin/x").check(user("ROLE_USER"))  # left to the default


@pytest.mark.parametrize("unmatched", ["authenticated", "deny"])
@pytest.mark.parametrize(
    "rules",
    [
        # An explicit HEAD rule after a GET rule at the same prefix.
        [
            Rule(path_prefix="/admin", methods=["GET"]),
            Rule(path_prefix="/admin", methods=["HEAD"], allow=False),
        ],
        # HEAD refused by a shorter prefix, a longer one naming only GET.
        [
            Rule(path_prefix="/", methods=["HEAD"], allow=False),
            Rule(path_prefix="/admin/", methods=["GET"]),
        ],
    ],
)
def test_head_taken_with_get_is_never_laxer_than_the_rules_as_written(
    rules: list[Rule], unmatched: Unmatched
) -> None:
    """Diff review: a GET rule that decides HEAD too silenced an explicit HEAD rule (the
    same prefix, later, or a shorter one): HEAD under /admin went from refused to allowed.
    Both readings must now be met."""
    policy = ForwardAuthPolicy(rules, unmatched=unmatched)
    with pytest.raises(PermissionDenied, match="No credential"):
        policy.requirement("HEAD", "/admin/x").check(user("ROLE_ADMIN"))
    policy.requirement("GET", "/admin/x").check(user("ROLE_USER"))


# -- method overrides: the request must be allowed as either method ----------------------------

OVERRIDE_RULES = [
    Rule(path_prefix="/api/orders", methods=["DELETE"], roles=["ROLE_ADMIN"]),
    Rule(path_prefix="/api/orders", methods=["POST"], scopes=["orders:write"]),
    Rule(path_prefix="/api/orders", methods=["GET", "HEAD"], scopes=["read"]),
]


def judge(policy: ForwardAuthPolicy, method: str, target: str, *overrides: str) -> Requirement:
    request = UpstreamRequest(method, target, overrides)
    return policy.request_requirement(request, policy.upstream_path(request))


def test_a_post_overridden_to_delete_needs_what_a_delete_needs() -> None:
    """Attack review: with DELETE for ROLE_ADMIN and POST for orders:write, ``POST
    /api/orders/1?_method=DELETE`` passed a ROLE_USER key with orders:write, and
    Laravel deleted the order. It is held to both rules now."""
    policy = ForwardAuthPolicy(OVERRIDE_RULES)
    writer = key("orders:write")
    judge(policy, "POST", "/api/orders/1").check(writer)
    with pytest.raises(PermissionDenied, match="ROLE_ADMIN"):
        judge(policy, "POST", "/api/orders/1?_method=DELETE", "DELETE").check(writer)
    admin_writer = key("orders:write", "write", roles=("ROLE_USER", "ROLE_ADMIN"))
    judge(policy, "POST", "/api/orders/1?_method=DELETE", "DELETE").check(admin_writer)
    # An admin without orders:write may DELETE, but not through a POST: it must pass
    # as the method sent too (an upstream ignoring the override runs a POST).
    admin_key = key("write", roles=("ROLE_USER", "ROLE_ADMIN"))
    judge(policy, "DELETE", "/api/orders/1").check(admin_key)
    with pytest.raises(InsufficientScope, match="orders:write"):
        judge(policy, "POST", "/api/orders/1", "DELETE").check(admin_key)


def test_a_read_overridden_to_a_write_needs_the_write_scope() -> None:
    """A GET with ``_method=DELETE`` under a rule without scopes: a read key was let
    through as a GET; as a DELETE it needs write."""
    policy = ForwardAuthPolicy([Rule(path_prefix="/api/")])
    judge(policy, "GET", "/api/x").check(key("read"))
    with pytest.raises(InsufficientScope, match="write"):
        judge(policy, "GET", "/api/x", "DELETE").check(key("read"))
    judge(policy, "GET", "/api/x", "DELETE").check(key("read", "write"))


def test_a_decision_is_remembered_per_request_read() -> None:
    """``decision``: the canonical path and the gate's requirement, remembered for the
    request object the reader hands out again for the same pair; an ambiguous path is
    refused every time, a request read anew (another object) is decided anew, and the
    remembered requirement still refuses what the rules refuse."""
    policy = ForwardAuthPolicy(OVERRIDE_RULES)
    request = UpstreamRequest("POST", "/api/orders/1?_method=DELETE", ("DELETE",))
    path, admits = policy.decision(request)
    assert path == "/api/orders/1"
    assert policy.decision(request) == (path, admits)
    for _ in range(2):
        with pytest.raises(PermissionDenied):
            admits(key("orders:write"), "POST")
        admits(key("orders:write", "write", roles=("ROLE_ADMIN",)), "POST")
    ambiguous = UpstreamRequest("GET", "/api/orders/../admin")
    for _ in range(2):
        with pytest.raises(AmbiguousUpstreamPath):
            policy.decision(ambiguous)
    equal = UpstreamRequest("POST", "/api/orders/1?_method=DELETE", ("DELETE",))
    assert policy.decision(equal)[0] == path
    long_target = UpstreamRequest("GET", "/api/orders/" + "x" * 600)
    policy.decision(long_target)
    assert all(entry[0] is not long_target for entry in policy._decisions.values())


def test_remembered_decisions_are_bounded() -> None:
    policy = ForwardAuthPolicy(OVERRIDE_RULES, cache_size=8)
    requests = [UpstreamRequest("GET", f"/api/orders/{number}") for number in range(20)]
    for request in requests:
        policy.decision(request)
    assert len(policy._decisions) == 8
    assert {entry[0] for entry in policy._decisions.values()} == set(requests[-8:])


def test_requirements_are_remembered_for_short_paths_only() -> None:
    """The (method, path) memo keeps paths up to ``MAX_REMEMBERED_TARGET`` characters:
    4,096 paths of up to a request head's 32 KiB would hold over 100 MB. A long path is
    decided anew each time, as the rules say."""
    policy = ForwardAuthPolicy(OVERRIDE_RULES)
    short = "/api/orders/1"
    long_path = "/api/orders/" + "x" * MAX_REMEMBERED_TARGET
    assert policy.requirement("GET", long_path) == policy.requirement("GET", short)
    policy.request_requirement(UpstreamRequest("POST", long_path, ("DELETE",)), long_path)
    assert policy._decide.cache_info().currsize == 1  # the short path's alone
    with pytest.raises(InsufficientScope, match="orders:write"):
        judge(policy, "POST", long_path, "DELETE").check(key("write"))
