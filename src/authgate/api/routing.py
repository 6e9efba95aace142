"""The route class every API and page route of authgate is built from: FastAPI's
``APIRoute``, also answering HEAD wherever it answers GET.

A general-purpose server must support HEAD (RFC 9110 9.1): GET without the body
(9.3.2), as Spring MVC answers it for every GET mapping of UTMStack. Starlette's own
``Route`` adds HEAD to a GET route's methods; FastAPI's ``APIRoute`` does not
(fastapi#1773): a GET-only ``APIRoute`` answers HEAD with 405.

:class:`AuthgateRoute` does what Starlette does, once, when the route is built: matching
a request costs what it did (one set lookup), and a HEAD request runs the GET's handler
itself. So it gets the same authentication and authorization (HEAD is a safe method,
``services/gate.py``), the same audit and usage records (the usage naming the method
HEAD), the same status and headers, ``Content-Length`` of the GET's body included.
Dropping the body is the server's part: uvicorn's protocols, ``authgate serve``'s among
them (``cli/http_protocol.py``), write no body bytes for a HEAD request, and neither
does httpx's ASGI transport in the tests.

The OpenAPI document does not list HEAD beside GET (``api/openapi.py``): it is implied.
"""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute


class AuthgateRoute(APIRoute):
    """An ``APIRoute`` that answers HEAD wherever it answers GET. Public routes use it as
    it is; every access-checking route class derives from it (``api/access.py``,
    ``web/pages.py``, ``api/v1/internal.py``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Added after FastAPI named the operation after its methods: its operationId
        # takes the first method of the set, which with HEAD in it could be either.
        methods = self.methods
        if methods is not None and "GET" in methods:
            methods.add("HEAD")
