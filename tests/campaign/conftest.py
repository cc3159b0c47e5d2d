"""Fixtures of the engine tests: the same scenarios on the memory and the SQLite stores."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from tests.campaign.simulation import World


@pytest.fixture(params=["memory", "sqlite"])
def world(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[World]:
    """The same scenarios against both stores (the contract)."""
    made = World(sqlite_path=None if request.param == "memory" else str(tmp_path / "fota.db"))
    yield made
    if request.param == "sqlite":
        made.db.close()


@pytest.fixture(params=["memory", "sqlite"])
def make_world(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Any]:
    """A factory of worlds on one store kind; the engine scenarios run on both."""
    made: list[World] = []

    def build(**kwargs: Any) -> World:
        path = None if request.param == "memory" else str(tmp_path / f"fota-{len(made)}.db")
        made.append(World(sqlite_path=path, **kwargs))
        return made[-1]
    yield build
    for each in made:
        if request.param == "sqlite":
            each.db.close()
