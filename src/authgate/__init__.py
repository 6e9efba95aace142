"""authgate: self-hosted API authentication (JWT bearer tokens and managed API keys)."""

from importlib.metadata import PackageNotFoundError, version


def _installed_version() -> str:
    # The server distribution, else authgate-sdk alone (the SDK, authgate-client and
    # the guard without the server); both are released together with one version.
    for distribution in ("authgate", "authgate-sdk"):
        try:
            return version(distribution)
        except PackageNotFoundError:
            continue
    return "0.0.0"  # running from a source tree without installation


__version__ = _installed_version()

__all__ = ["__version__"]
