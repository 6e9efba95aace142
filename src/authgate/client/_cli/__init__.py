"""The ``authgate-client`` command line (typer), built on ``authgate.client.Client``."""

from authgate.client._cli._app import app, main

__all__ = ["app", "main"]
