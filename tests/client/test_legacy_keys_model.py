"""The SDK and authgate-client mark keys imported from UTMStack (``legacy``)."""

from __future__ import annotations

from authgate.client import ApiKey
from authgate.client._cli._keys import _key_rows, _status


def test_legacy_flag_is_read_and_shown() -> None:
    """``legacy`` comes from the DTO (absent on older servers: False); the CLI shows it
    in the status and advises rotation."""
    legacy = ApiKey.from_json({"id": 3, "name": "utm", "status": "active", "legacy": True})
    plain = ApiKey.from_json({"id": 4, "name": "new", "status": "active"})
    assert legacy.legacy is True
    assert plain.legacy is False
    assert _status(legacy) == "active (legacy)"
    assert _status(plain) == "active"
    rows = dict(_key_rows(legacy))
    assert rows["legacy"] == "rotate: plaintext was stored by UTMStack"
    assert "legacy" not in dict(_key_rows(plain))
