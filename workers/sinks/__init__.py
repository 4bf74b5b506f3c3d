"""Sinks: durable consumers of the change log that deliver it to receivers (webhooks, connectors)."""
