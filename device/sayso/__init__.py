"""sayso: an offline voice appliance that can be interrupted and remembers what was heard."""

__version__ = "0.1.0"
"""The one place the version is set: pyproject.toml reads it (dynamic version), `sayso --version` prints it."""
