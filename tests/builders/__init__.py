"""Builders shared by several test modules (one module per area), so no test module imports
another test module."""
