"""Django settings of the P4 peer (see __init__.py for why each choice).

The database path and the secret key come from the environment that bench/peer_drf.py
sets: the database is a temporary SQLite file of one run, the secret key a random one
of that run (Django refuses to start without one; nothing here signs anything).
"""

import os

SECRET_KEY = os.environ["DRF_PEER_SECRET_KEY"]
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "rest_framework",
    "rest_framework_api_key",
]
# No sessions, CSRF, security or common middleware: each would add work per request that
# authgate's side has no counterpart of on this endpoint.
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "drf_peer.urls"
WSGI_APPLICATION = "drf_peer.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["DRF_PEER_DATABASE"],
        # Keep the connection open across requests (Django's default, 0, opens and closes
        # one per request, which would slow the peer down).
        "CONN_MAX_AGE": None,
    }
}

USE_TZ = True
TIME_ZONE = "UTC"
USE_I18N = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REST_FRAMEWORK = {
    # The key check is the HasAPIKey permission alone, as djangorestframework-api-key's
    # documentation sets it up; no authentication class runs (and so no user model).
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework_api_key.permissions.HasAPIKey"],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
