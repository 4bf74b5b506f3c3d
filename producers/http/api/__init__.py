"""``/api/v1`` routers that need only ``shared/``: mounts and objects, the change feed, migrations."""
