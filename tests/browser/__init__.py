"""Real-browser tests of the Settings UI and Swagger UI (Playwright driving Debian's Chromium)."""
