"""Tests of the integrators' SDK and CLI (authgate.client)."""
