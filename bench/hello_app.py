"""A bare Starlette "hello" endpoint, served the way ``authgate serve`` serves authgate.

The baseline of bench/forward_auth.py. It runs under the same uvicorn settings as
authgate's ``serve`` (src/authgate/cli/server.py): uvicorn's default loop (uvloop, which
``uvicorn[standard]`` installs), authgate's HTTP protocol (httptools with bounds on the
request head, default limits), one worker, no access log, no ``Server`` header, no
proxy-header rewriting. So a ratio
against it shows what authgate's own work costs, not what the server stack costs.
Every path and method answers 200 "hello", so it also serves as nginx's upstream.

    .venv/bin/python bench/hello_app.py --port 9000
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from authgate.cli.http_protocol import bounded_head_protocol
from authgate.http_config import HttpConfig

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


app = Starlette(routes=[Route("/{path:path}", hello, methods=METHODS)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        workers=1,
        proxy_headers=False,
        server_header=False,
        access_log=False,
        log_level="warning",
        http=bounded_head_protocol(
            max_head_bytes=HttpConfig.model_fields["max_header_bytes"].default,
            head_timeout=HttpConfig.model_fields["header_timeout_seconds"].default,
        ),
    )


if __name__ == "__main__":
    main()
