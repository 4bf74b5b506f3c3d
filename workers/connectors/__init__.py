"""Clients of the annotation platforms the sinks deliver to (Label Studio, Girder/DIVE)."""
