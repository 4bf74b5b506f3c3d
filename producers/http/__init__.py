"""``mountsync serve``: one FastAPI application for the push receivers, health, metrics and /api/v1."""
