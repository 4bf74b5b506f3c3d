"""Alignment guard: datasets, pinned frame manifests, change classification, alerts, quarantine."""
