"""``mountsync demo`` (``run``) and the embedded Redis and PostgreSQL it falls back to (``embedded``)."""
