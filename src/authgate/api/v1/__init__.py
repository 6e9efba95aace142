"""UTMStack v12's API (``/api/v1``), served next to the v10/v11 one on the same users,
keys and tokens. Errors are ``{"error": "<message>"}`` (``api/errors.py``)."""
