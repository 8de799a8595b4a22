"""Shipped recipes: templates users start from (installed with the package)."""
