"""The OpenAPI document at /v3/api-docs, the offline Swagger UI, and a schemathesis run of
every documented operation against the running app (SQLite only)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx2
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.errors import InvalidSchema
from schemathesis.core.parameters import ParameterLocation
from schemathesis.core.result import Err, Ok
from schemathesis.python import asgi as schemathesis_asgi
from schemathesis.schemas import APIOperation, BaseSchema
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from authgate.app import OPENAPI_URL, create_app
from authgate.container import Services
from authgate.exceptions import NotFound
from authgate.security.principal import ROLE_ADMIN, ROLE_USER
from authgate.services.api_key_views import KeySpec
from authgate.services.user_fields import NewUser, UserView
from tests.conftest import (
    ADMIN_PASSWORD,
    FakeClock,
    Harness,
    SqliteTemplates,
    bearer,
    run_in_own_loop,
)
from tests.conftest import test_settings as make_settings  # not collected as a test

SWAGGER_UI_URL = "/swagger-ui/index.html"
ERROR_BODY_REF = {"$ref": "#/components/schemas/ErrorBody"}
V12_ERROR_BODY_REF = {"$ref": "#/components/schemas/V12ErrorBody"}
LOGIN_OPERATION = "POST /api/authenticate"
# Operations whose 401 is about a credential in the body, not the caller: an admin can
# earn it (a wrong password, an unknown refresh token).
BODY_CREDENTIAL_OPERATIONS = frozenset(
    {
        LOGIN_OPERATION,
        "POST /api/v1/auth/login",
        "POST /api/v1/auth/refresh",
        "POST /api/v1/auth/change-password",
        "POST /api/v1/auth/tfa/verify-code",
        "POST /api/v1/tfa/disable",
    }
)
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}

# Operations that need a caller; each must accept either scheme.
PROTECTED = [
    ("get", "/api/auth/verify"),
    ("get", "/api/authenticate"),
    ("post", "/api/logout"),
    ("get", "/api/account"),
    ("post", "/api/account"),
    ("get", "/api/check-credentials"),
    ("post", "/api/check-credentials"),
    ("post", "/api/account/change-password"),
    ("post", "/api/account/logout-all"),
    ("get", "/api/users"),
    ("post", "/api/users"),
    ("put", "/api/users"),
    ("post", "/api/users/local"),
    ("get", "/api/users/authorities"),
    ("get", "/api/users/filter/{login}"),
    ("get", "/api/users/{login}"),
    ("put", "/api/users/{login}"),
    ("delete", "/api/users/{login}"),
    ("put", "/api/users/{login}/password"),
    ("post", "/api/api-keys"),
    ("get", "/api/api-keys"),
    ("post", "/api/api-keys/usage"),
    ("get", "/api/api-keys/usage"),
    ("get", "/api/api-keys/{key_id}"),
    ("put", "/api/api-keys/{key_id}"),
    ("delete", "/api/api-keys/{key_id}"),
    ("post", "/api/api-keys/{key_id}/generate"),
    ("post", "/api/api-keys/{key_id}/resume"),
    ("get", "/api/api-keys/review"),
    ("get", "/api/audit-events"),
    ("get", "/api/audit-events/export"),
    ("get", "/api/audit-events/verify"),
    ("post", "/api/audit-events/verify"),
    ("get", "/api/audit-events/checkpoints"),
    ("get", "/api/alert-rules"),
    ("post", "/api/alert-rules"),
    ("get", "/api/alert-rules/{id}"),
    ("put", "/api/alert-rules/{id}"),
    ("delete", "/api/alert-rules/{id}"),
    ("get", "/api/alerts"),
    ("post", "/api/alert-sinks/test"),
    ("get", "/management/prometheus"),
    ("get", "/api/v1/auth/me"),
    ("put", "/api/v1/auth/me"),
    ("get", "/api/v1/auth/authenticate"),
    ("post", "/api/v1/auth/change-password"),
    ("get", "/api/v1/auth/sessions"),
    ("delete", "/api/v1/auth/sessions"),
    ("delete", "/api/v1/auth/sessions/{session_id}"),
    ("post", "/api/v1/api-keys"),
    ("get", "/api/v1/api-keys"),
    ("get", "/api/v1/api-keys/{key_id}"),
    ("put", "/api/v1/api-keys/{key_id}"),
    ("delete", "/api/v1/api-keys/{key_id}"),
    ("post", "/api/v1/api-keys/{key_id}/generate"),
    ("get", "/api/v1/users"),
    ("post", "/api/v1/users"),
    ("get", "/api/v1/users/{user_id}"),
    ("put", "/api/v1/users/{user_id}"),
    ("delete", "/api/v1/users/{user_id}"),
    ("put", "/api/v1/users/{user_id}/roles"),
    ("get", "/api/v1/roles"),
    ("get", "/api/v1/roles/permissions"),
    ("get", "/api/v1/roles/{role_id}"),
    ("post", "/api/v1/roles"),
    ("put", "/api/v1/roles/{role_id}"),
    ("delete", "/api/v1/roles/{role_id}"),
    ("post", "/api/v1/tfa/enroll"),
    ("post", "/api/v1/tfa/disable"),
    ("post", "/api/v1/users/{user_id}/tfa/disable"),
    ("post", "/api/tfa/init"),
    ("post", "/api/tfa/verify"),
    ("post", "/api/tfa/complete"),
    ("get", "/api/account/tfa"),
    ("post", "/api/account/tfa/recovery-codes"),
    ("post", "/api/account/tfa/disable"),
    ("delete", "/api/users/{login}/tfa"),
    ("get", "/api/service-credentials"),
    ("post", "/api/service-credentials"),
    ("get", "/api/service-credentials/{credential_id}"),
    ("put", "/api/service-credentials/{credential_id}"),
    ("delete", "/api/service-credentials/{credential_id}"),
    ("post", "/api/service-credentials/{credential_id}/rotate"),
]
# Internal endpoints: a service credential in X-Internal-Key only (401 without, as v12).
INTERNAL = [("post", "/api/v1/api-keys/authenticate")]
# v12's custom roles: authgate has only built-in ones, so every change is 403, as v12
# answers for its system roles.
ROLE_CHANGES = [
    ("post", "/api/v1/roles"),
    ("put", "/api/v1/roles/{role_id}"),
    ("delete", "/api/v1/roles/{role_id}"),
]
# The second step of a login: a pre-verification token only.
PRE_VERIFICATION = [
    ("get", "/api/tfa/verifyCode"),
    ("post", "/api/tfa/verify-code"),
    ("get", "/api/tfa/refresh"),
    ("post", "/api/enrollment/tfa"),
]
# Routes answering validation errors with 422 (the rest answer 400, as JHipster does).
UNPROCESSABLE_PREFIXES = (
    "/api/api-keys",
    "/api/alert-rules",
    "/api/alerts",
    "/api/alert-sinks",
    "/api/service-credentials",
)
PUBLIC = [
    ("post", "/api/authenticate"),
    ("post", "/api/account/reset-password/init"),
    ("post", "/api/account/reset-password/finish"),
    ("get", "/api/ping"),
    ("get", "/management/health"),
    ("get", "/management/health/liveness"),
    ("get", "/management/health/readiness"),
    ("get", "/management/info"),
    ("get", "/.well-known/jwks.json"),
    ("post", "/api/v1/auth/login"),
    ("post", "/api/v1/auth/refresh"),
    ("post", "/api/v1/auth/logout"),
    ("post", "/api/v1/auth/tfa/verify-code"),
    ("post", "/api/v1/auth/reset-password/init"),
    ("post", "/api/v1/auth/reset-password/finish"),
    ("get", "/api/v1/health"),
    ("get", "/api/v1/idp-providers"),
]


@pytest.fixture
def database_url(tmp_path: Path, sqlite_templates: SqliteTemplates) -> str:
    """SQLite only: nothing in this module depends on the database engine."""
    sqlite_templates.copy_to(tmp_path / "test.db")
    return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield method, path, operation


def scheme_names(requirements: list[dict[str, list[str]]] | None) -> set[str]:
    return {name for requirement in requirements or [] for name in requirement}


@pytest.fixture(scope="module")
def served_document(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The OpenAPI document as a client fetches it, from an app started once for the
    module: generating it takes ~0.2 s, and ~200 tests below only read it."""
    directory = tmp_path_factory.mktemp("openapi")

    async def fetch() -> bytes:
        settings = make_settings(
            directory / "data", database_url=f"sqlite+aiosqlite:///{directory / 'test.db'}"
        )
        app = create_app(settings, clock=FakeClock())
        async with app.router.lifespan_context(app):
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(
                transport=transport, base_url="http://testserver"
            ) as client:
                response = await client.get(OPENAPI_URL)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json")
        return response.content

    return run_in_own_loop(fetch)


@pytest.fixture
def document(served_document: bytes) -> dict[str, Any]:
    """The document, parsed afresh for each test (none can see another's changes)."""
    result: dict[str, Any] = json.loads(served_document)
    return result


# -- the OpenAPI document ------------------------------------------------------------------


async def test_security_schemes_are_bearer_jwt_and_utm_api_key(document: dict[str, Any]) -> None:
    """The document declares bearerAuth (HTTP bearer, JWT) and ApiKeyAuth (header Utm-Api-Key)."""
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"]["type"] == "http"
    assert schemes["bearerAuth"]["scheme"] == "bearer"
    assert schemes["bearerAuth"]["bearerFormat"] == "JWT"
    assert schemes["ApiKeyAuth"]["type"] == "apiKey"
    assert schemes["ApiKeyAuth"]["in"] == "header"
    assert schemes["ApiKeyAuth"]["name"] == "Utm-Api-Key"


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_protected_operation_lists_both_schemes(
    document: dict[str, Any], method: str, path: str
) -> None:
    """An operation that requires authentication lists bearerAuth and ApiKeyAuth in security."""
    operation = document["paths"][path][method]
    assert scheme_names(operation.get("security")) == {"bearerAuth", "ApiKeyAuth"}


@pytest.mark.parametrize(("method", "path"), PUBLIC)
async def test_public_operation_lists_no_security(
    document: dict[str, Any], method: str, path: str
) -> None:
    """A public operation has no security requirement, neither its own nor a global one."""
    operation = document["paths"][path][method]
    assert scheme_names(operation.get("security", document.get("security"))) == set()


async def test_every_operation_is_classified(document: dict[str, Any]) -> None:
    """Every documented operation is known here as either protected or public."""
    documented = {(method, path) for method, path, _ in operations(document)}
    assert documented == set(PROTECTED) | set(PUBLIC) | set(PRE_VERIFICATION) | set(INTERNAL)


async def test_head_is_not_documented_beside_get(
    document: dict[str, Any], harness: Harness
) -> None:
    """Every GET route answers HEAD (api/routing.py), yet the document lists GET alone:
    HEAD is implied (RFC 9110 9.3.2), and as an operation of its own it would repeat the
    GET's operationId (a warning, an error here)."""
    found = list(operations(document))
    assert [path for method, path, _ in found if method == "head"] == []
    operation_ids = [operation["operationId"] for _, _, operation in found]
    assert len(operation_ids) == len(set(operation_ids))
    served = await harness.client.head("/api/account")
    assert served.status_code == 401  # answered (as GET is), not 405


@pytest.mark.parametrize(("method", "path"), INTERNAL)
async def test_internal_operations_list_only_the_internal_key_scheme(
    document: dict[str, Any], method: str, path: str
) -> None:
    """An internal endpoint declares internalKeyAuth (header X-Internal-Key) only."""
    operation = document["paths"][path][method]
    assert scheme_names(operation.get("security")) == {"internalKeyAuth"}
    scheme = document["components"]["securitySchemes"]["internalKeyAuth"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "X-Internal-Key")


@pytest.mark.parametrize(("method", "path"), PRE_VERIFICATION)
async def test_second_step_operations_list_only_the_pre_verification_scheme(
    document: dict[str, Any], method: str, path: str
) -> None:
    """The second-factor step declares preVerificationAuth, and nothing else does."""
    operation = document["paths"][path][method]
    assert scheme_names(operation.get("security")) == {"preVerificationAuth"}
    scheme = document["components"]["securitySchemes"]["preVerificationAuth"]
    assert scheme["scheme"] == "bearer"
    assert "ROLE_PRE_VERIFICATION_USER" in scheme["description"]


async def test_security_declared_exactly_where_credentials_are_required(
    harness: Harness, document: dict[str, Any]
) -> None:
    """An operation declares security exactly when it answers 401 to a call without credentials."""
    mismatches = []
    for method, path, operation in operations(document):
        url = path.replace("{login}", "admin").replace("{key_id}", "1").replace("{rule_id}", "1")
        response = await harness.client.request(method.upper(), url)
        requires_credentials = response.status_code == 401
        declares_security = bool(scheme_names(operation.get("security", document.get("security"))))
        if requires_credentials != declares_security:
            mismatches.append(f"{method.upper()} {path}: {response.status_code}")
    assert mismatches == []


async def test_only_configuration_operations_document_422(document: dict[str, Any]) -> None:
    """422 only on the API key and alert routes (with ErrorBody); FastAPI schemas are gone."""
    with_422 = [
        f"{method.upper()} {path}"
        for method, path, operation in operations(document)
        if "422" in operation["responses"] and not path.startswith(UNPROCESSABLE_PREFIXES)
    ]
    assert with_422 == []
    for method, path, operation in operations(document):
        if path.startswith(UNPROCESSABLE_PREFIXES) and "422" in operation["responses"]:
            schema = operation["responses"]["422"]["content"]["application/json"]["schema"]
            assert schema == ERROR_BODY_REF, f"{method} {path}"
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert "ValidationError" not in schemas


async def test_operations_with_input_document_400_error_body(document: dict[str, Any]) -> None:
    """Every operation with a body or parameters documents its validation status (400;
    422 on the API key routes) with the ErrorBody schema."""
    with_input = [
        (method, path, operation)
        for method, path, operation in operations(document)
        if "requestBody" in operation or operation.get("parameters")
    ]
    assert len(with_input) >= 8  # authenticate, change-password and the six /api/users ones
    missing = []
    for method, path, operation in with_input:
        if (method, path) == ("post", "/api/account/reset-password/init"):
            continue  # never 400, by design: always 200, whatever the body (issue 13)
        status = "422" if path.startswith(UNPROCESSABLE_PREFIXES) else "400"
        response = operation["responses"].get(status, {})
        schema = response.get("content", {}).get("application/json", {}).get("schema")
        expected = V12_ERROR_BODY_REF if path.startswith("/api/v1/") else ERROR_BODY_REF
        if schema != expected:
            missing.append(f"{method.upper()} {path}")
    assert missing == []
    assert {"timestamp", "status", "error", "code", "message", "detail", "path"} <= set(
        document["components"]["schemas"]["ErrorBody"]["required"]
    )


# -- Swagger UI ------------------------------------------------------------------------------


class AssetCollector(HTMLParser):
    """Collects the URLs that script, link and img elements load."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attribute = {"script": "src", "img": "src", "link": "href"}.get(tag)
        for name, value in attrs:
            if name == attribute and value:
                self.urls.append((tag, value))


async def test_swagger_ui_page_points_at_the_document(harness: Harness) -> None:
    """The Swagger UI page is HTML that loads the OpenAPI document from /v3/api-docs."""
    response = await harness.client.get(SWAGGER_UI_URL)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert f"'{OPENAPI_URL}'" in response.text or f'"{OPENAPI_URL}"' in response.text


async def test_swagger_ui_page_has_no_absolute_url(harness: Harness) -> None:
    """The Swagger UI page names no http:// or https:// URL, so it works offline."""
    response = await harness.client.get(SWAGGER_UI_URL)
    assert response.status_code == 200
    assert re.findall(r"https?://\S*", response.text, flags=re.IGNORECASE) == []


async def test_swagger_ui_assets_are_served_by_the_app(harness: Harness) -> None:
    """Every script, stylesheet and image the Swagger UI page loads is served here with 200."""
    page = await harness.client.get(SWAGGER_UI_URL)
    collector = AssetCollector()
    collector.feed(page.text)
    tags = {tag for tag, _ in collector.urls}
    assert {"script", "link"} <= tags
    for _, url in collector.urls:
        assert url.startswith("/"), url
        assert not url.startswith("//"), url
        response = await harness.client.get(url)
        assert response.status_code == 200, url
        assert response.content, url


@pytest.mark.parametrize("url", ["/swagger-ui/", "/swagger-ui"])
async def test_swagger_ui_directory_redirects_to_index(harness: Harness, url: str) -> None:
    """The Swagger UI directory URL redirects to /swagger-ui/index.html."""
    response = await harness.client.get(url)
    assert response.is_redirect
    assert response.headers["location"] == SWAGGER_UI_URL


# -- schemathesis over every operation ---------------------------------------------------------

# Every check schemathesis offers that judges this API by its document, except:
# * positive_data_acceptance: some rules cannot be stated in JSON Schema (an expiry in
#   the future and within the configured lifetime, a CIDR without host bits), so a
#   schema-valid request may rightly be refused;
# * negative_data_rejection: like UTMStack (Jackson), scalars are coerced ("true",
#   0/1 for booleans, "5" for numbers), which that check counts as a failure;
# * use_after_free, ensure_resource_availability, object_level_authorization: stateful
#   runs over links and several identities, not single calls.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    missing_required_header,
    unsupported_method,
    allow_header_conformance,
    ignored_auth,
]
STRANGER_CHECKS = [check for check in CHECKS if check is not ignored_auth]


@dataclass
class FuzzTarget:
    """The app schemathesis calls, its services, and the admin every case acts as."""

    app: FastAPI
    services: Services
    clock: FakeClock
    admin: UserView | None = None

    def admin_headers(self) -> dict[str, str]:
        """A freshly minted admin token, so earlier logouts cannot affect this case."""
        assert self.admin is not None, "the app's lifespan has not started"
        # Time passes between cases: a token minted in the instant of an earlier case's
        # "log out everywhere" or password change would count as revoked.
        self.clock.advance(seconds=1)
        token = self.services.tokens.issue(self.admin, remember_me=False).token
        return {"Authorization": f"Bearer {token}"}


async def ensure_admin(services: Services) -> UserView:
    """The admin every case acts as, owning API key 1 (which key paths also aim at)."""
    try:
        return await services.users.get_user("admin")
    except NotFound:
        admin = await services.users.create_user(
            NewUser(
                login="admin",
                email="admin@example.com",
                password=ADMIN_PASSWORD,
                authorities=frozenset({ROLE_ADMIN, ROLE_USER}),
            )
        )
        await services.api_keys.create(
            admin.id,
            KeySpec(name="fuzzed", expires_at=services.clock() + timedelta(days=30)),
        )
        return admin


@pytest.fixture
def fuzz_target(tmp_path: Path) -> FuzzTarget:
    """The app on its own SQLite file; its lifespan (run by schemathesis) also creates the admin."""
    app_settings = make_settings(
        tmp_path / "data",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 's.db'}",
        # ignored_auth sends junk credentials on purpose: blocking the address for them
        # (429, the protection working) would hide what the check looks for.
        key_ip_max_failures=100_000,
    )
    clock = FakeClock()
    app = create_app(app_settings, clock=clock)
    target = FuzzTarget(app=app, services=app.state.services, clock=clock)
    start_app = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan_with_admin(running: FastAPI) -> AsyncIterator[Any]:
        # The admin is created on the app's own loop, with the app's own services.
        async with start_app(running) as state:
            target.admin = await ensure_admin(target.services)
            yield state

    app.router.lifespan_context = lifespan_with_admin
    return target


@pytest.fixture
def api_schema(fuzz_target: FuzzTarget) -> Iterator[BaseSchema]:
    """The app's own document; loading it starts the app's lifespan, which ends with the test."""
    yield schemathesis.openapi.from_asgi(OPENAPI_URL, fuzz_target.app)
    schemathesis_asgi.shutdown_lifespans()


Operation = APIOperation[Any, Any, Any, Any]


def case_strategy(operation: Operation) -> st.SearchStrategy[schemathesis.Case[Operation]]:
    """Valid and invalid requests for one operation; user paths also aim at the admin, since
    generated logins almost never exist and the success responses need checking too."""
    strategies = [
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    ]
    if "{login}" in operation.path:
        strategies.append(
            operation.as_strategy(GenerationMode.POSITIVE, path_parameters={"login": "admin"})
        )
    if "{key_id}" in operation.path:
        strategies.append(
            operation.as_strategy(GenerationMode.POSITIVE, path_parameters={"key_id": 1})
        )
    if operation.path == "/api/users/{login}":
        # The invalid login "authorities" (the document excludes it) is not this operation
        # at all but GET /api/users/authorities, checked as such, as in UTMStack.
        return st.one_of(strategies).filter(
            lambda case: (case.path_parameters or {}).get("login") != "authorities"
        )
    return st.one_of(strategies)


def readable(result: Ok[Operation] | Err[InvalidSchema]) -> Operation:
    """The operation, or the error that makes it unreadable raised."""
    if isinstance(result, Err):
        raise result.err()
    return result.ok()


def keep_acting_admin_an_admin(case: schemathesis.Case[Operation]) -> None:
    """Once other admins exist (generated by POST /api/users), a generated PUT could demote
    or deactivate the admin every case acts as; keep those two fields out of such bodies.
    PUT /api/users with an id renames the user to the body's login: the admin's tokens
    name "admin", so keep the login out of a body that has an id."""
    login = str((case.path_parameters or {}).get("login", "")).strip().lower()
    targets_admin = (
        case.operation.label == "PUT /api/users/{login}" and login == "admin"
    ) or case.operation.label == "PUT /api/users"  # the body's id or login may be the admin's
    if targets_admin and isinstance(case.body, dict):
        kept_out = {"authorities", "activated"}
        if case.operation.label == "PUT /api/users" and "id" in case.body:
            kept_out.add("login")
        case.body = {k: v for k, v in case.body.items() if k not in kept_out}


# `schemathesis.pytest.from_fixture(...).parametrize()` cannot run under pytest 9.2 (it sets
# `Function._nodeid`, which pytest removed), so each operation gets its own Hypothesis test here.
async def test_undocumented_methods_answer_405_with_the_documented_allow(
    harness: Harness, document: dict[str, Any], admin_token: str
) -> None:
    """Every method a documented path does not serve is 405, and ``Allow`` lists exactly
    the documented methods, and HEAD where GET is (implied, not documented: see
    test_head_is_not_documented_beside_get); a literal path such as /api/api-keys/review
    is not taken for the template /api/api-keys/{key_id} it also fits."""
    mismatches = []
    for path, item in document["paths"].items():
        if path == "/api/auth/verify":
            continue  # every method, by design: Traefik forwards the original one
        documented = {method.upper() for method in item if method in HTTP_METHODS}
        allowed_here = documented | ({"HEAD"} if "GET" in documented else set())
        served = set(documented)
        if path == "/api/users/authorities":
            # As in UTMStack, PUT and DELETE of this path are /api/users/{login} with the
            # login "authorities" (which no user may have: 404).
            served |= {"PUT", "DELETE"}
        elif path == "/api/users/local":
            # Likewise GET, PUT and DELETE of it are the user "local"'s (404 here).
            served |= {"GET", "PUT", "DELETE"}
        url = path.replace("{login}", "admin").replace("{key_id}", "1").replace("{rule_id}", "1")
        for method in sorted({"GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"} - served):
            response = await harness.client.request(method, url, headers=bearer(admin_token))
            allowed = set(response.headers.get("allow", "").replace(" ", "").split(","))
            if response.status_code != 405 or allowed != allowed_here:
                mismatches.append(f"{method} {url}: {response.status_code} Allow {allowed}")
    assert mismatches == []


@pytest.mark.slow  # ~30 s: left out by `make test-fast`
def test_every_operation_conforms_to_the_document(
    api_schema: BaseSchema, fuzz_target: FuzzTarget, subtests: pytest.Subtests
) -> None:
    """As an admin (never refused) and as a stranger (401), every operation answers without
    5xx, with a documented status code, headers, body schema and content type; an
    operation that declares security refuses requests without valid credentials."""
    loaded = [readable(result) for result in api_schema.get_all_operations()]
    documented = operations(fuzz_target.app.openapi())
    assert {op.label for op in loaded} == {f"{m.upper()} {path}" for m, path, _ in documented}
    for operation in loaded:

        @settings(
            max_examples=40,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        @given(case=case_strategy(operation), as_admin=st.integers(0, 3).map(bool))
        def call_operation(case: schemathesis.Case[Operation], as_admin: bool) -> None:
            if not as_admin:
                # A stranger: no credentials, or the junk key schemathesis generates.
                # Protected operations answer 401, as documented, in JSON.
                response = case.call_and_validate(checks=STRANGER_CHECKS)
                # (A path that fits no route, such as /api/api-keys/false, is a 404.)
                on_route = case.meta is None or not case.meta.is_negative_at(ParameterLocation.PATH)
                if (case.method.lower(), case.path) in PROTECTED and on_route:
                    assert response.status_code == 401, response.text
                return
            # Schemathesis fills the ApiKeyAuth header with junk; the admin's bearer token
            # is what these cases authenticate with (Utm-Api-Key would take precedence).
            if case.headers:
                # (a plain dict, as schemathesis accepts, for its CaseInsensitiveDict)
                case.headers = {  # type: ignore[assignment]
                    name: value
                    for name, value in case.headers.items()
                    if name.lower() != "utm-api-key"
                }
            keep_acting_admin_an_admin(case)
            response = case.call_and_validate(headers=fuzz_target.admin_headers(), checks=CHECKS)
            # The only 401s an admin can earn: the login, and the second step of a login,
            # which takes a pre-verification token and never an access token.
            second_step = (case.method.lower(), case.operation.path) in PRE_VERIFICATION
            # An internal endpoint takes a service credential, never an admin's token.
            internal = (case.method.lower(), case.operation.path) in INTERNAL
            refused = (case.method.lower(), case.operation.path) in ROLE_CHANGES
            exempt = second_step or internal or refused
            if case.operation.label not in BODY_CREDENTIAL_OPERATIONS and not exempt:
                assert response.status_code not in (401, 403), response.text

        with subtests.test(msg=operation.label):
            call_operation()


def _schema(document: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    name = reference["$ref"].rsplit("/", 1)[1]
    schema: dict[str, Any] = document["components"]["schemas"][name]
    return schema


def _body_schema(document: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    content = document["paths"][path][method]["requestBody"]["content"]
    return _schema(document, content["application/json"]["schema"])


async def test_what_the_server_checks_beyond_the_types_is_documented(
    document: dict[str, Any],
) -> None:
    """A client generated from the document sends what the server takes (fuzz review):
    v12 logout's refresh token required, v12 ids as UUIDs, the second factor's methods
    and stages as patterns (any case, as read), a service credential's endpoints at
    least one, an API key's expiry said to be required by default."""
    logout = _body_schema(document, "/api/v1/auth/logout", "post")
    assert logout["required"] == ["refresh_token"]
    assert "default" not in logout["properties"]["refresh_token"]
    assert logout["properties"]["refresh_token"]["minLength"] == 1
    for path, method in (
        ("/api/v1/users/{user_id}", "get"),
        ("/api/v1/roles/{role_id}", "get"),
        ("/api/v1/auth/sessions/{session_id}", "delete"),
    ):
        (parameter,) = document["paths"][path][method]["parameters"]
        assert parameter["schema"]["format"] == "uuid", path
    method = _body_schema(document, "/api/tfa/init", "post")["properties"]["method"]
    assert re.fullmatch(method["pattern"], " totp ")
    assert not re.fullmatch(method["pattern"], "sms")
    enrol = _body_schema(document, "/api/v1/tfa/enroll", "post")["properties"]
    assert re.fullmatch(enrol["stage"]["pattern"], "verify")
    assert not re.fullmatch(enrol["type"]["pattern"], "")
    endpoints = _body_schema(document, "/api/service-credentials", "post")["properties"]
    assert endpoints["endpoints"]["minItems"] == 1
    key = _body_schema(document, "/api/api-keys", "post")["properties"]["expiresAt"]
    assert "Required" in key["description"]
