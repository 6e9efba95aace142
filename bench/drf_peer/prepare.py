"""Creates the peer's SQLite schema and one API key; prints the key as JSON.

Run in the peer's virtual environment, with bench/ on ``sys.path`` and the environment
of settings.py set (bench/peer_drf.py does all three).
"""

import json
import os
import sys

import django
from django.core.management import call_command


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "drf_peer.settings")
    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    from rest_framework_api_key.models import APIKey  # needs django.setup() first

    _, key = APIKey.objects.create_key(name="benchmark")
    sys.stdout.write(json.dumps({"key": key}) + "\n")


if __name__ == "__main__":
    main()
