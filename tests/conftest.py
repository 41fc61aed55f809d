"""Shared fixtures: the checkout's real models and small helpers for tests."""

from __future__ import annotations

import pytest

from sayso.manifest import ModelStore


@pytest.fixture(scope="session")
def store() -> ModelStore:
    """The default models that `make test` fetched before running the suite."""
    return ModelStore()
