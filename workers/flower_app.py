"""The Celery app as Flower runs it (``celery -A mountsync.workers.flower_app flower``).

Flower inspects workers with up to eight concurrent broadcast calls next to its event consumer;
with the small broker pool the workers use (``broker_pool_limit`` 4) those calls wait for each
other and ``/api/workers?refresh=1`` never answers. Flower gets a pool of its own size.
"""

from __future__ import annotations

from mountsync.workers.app import app

app.conf.broker_pool_limit = 16

__all__ = ["app"]
