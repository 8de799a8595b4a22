"""Cluster mode: several nodes trained on as one (issue 16)."""
