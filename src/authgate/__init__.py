"""authgate: self-hosted API authentication (JWT bearer tokens and managed API keys)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("authgate")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["__version__"]
