"""``python -m shared`` runs the mountsync CLI (same as the ``mountsync`` console script)."""

from shared.cli import main

main()
