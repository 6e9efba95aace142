"""P4's peer: a minimal Django + DRF + djangorestframework-api-key project of our own.

It runs in its own virtual environment (bench/peer_drf.py creates it; the pinned
versions are in ``requirements.txt`` beside this file), never in authgate's. The
settings give the peer its fastest reasonable configuration, so that the P4 ratio does
not flatter authgate: no middleware, no authentication classes (only the ``HasAPIKey``
permission decides), JSON renderer only, persistent SQLite connection, DEBUG off.
"""
