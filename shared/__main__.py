"""``python -m mountsync.shared`` runs the mountsync CLI (same as the ``mountsync`` console script)."""

from mountsync.shared.cli import main

main()
