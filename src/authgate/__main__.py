"""``python -m authgate`` runs the server CLI."""

from authgate.cli import main

main()
