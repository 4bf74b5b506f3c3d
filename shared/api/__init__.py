"""Building blocks of the HTTP API (``/api/v1``) that producers and workers share: bearer-token
authentication, catalog access per request, the one error body, paging parameters.

The app itself is assembled in ``producers/http/app.py``; routers whose logic lives in
``workers/`` (datasets, frames, alerts) plug in through the ``mountsync.api`` entry-point group,
as CLI commands do through ``mountsync.cli``.
"""
