"""Fixtures: a real SQLite store in tmp_path and an event bus over it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.events import EventBus
from gateway.store import Store


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "gateway.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[Store]:
    s = Store(db_path)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def bus(store: Store) -> AsyncIterator[EventBus]:
    b = EventBus(store)
    try:
        yield b
    finally:
        b.close()
