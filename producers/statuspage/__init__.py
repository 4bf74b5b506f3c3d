"""The status page ``mountsync serve`` shows at ``/``: mounts, alerts, quarantined datasets,
migrations, sinks and dead letters, rendered on the server from the ``/api/v1`` routes (the page is
one more client of the API, signed in with an API token) and kept current by a long poll."""
