"""Browser-facing pages: the offline Swagger UI (and the Settings UI)."""
