"""Once-cells and singletons against ``copy``/``pickle`` and call signatures (issue 12, items 8-11)."""

from __future__ import annotations

import asyncio
import copy
import inspect
import pickle
from typing import Any

import pytest
from nogilsafe import AsyncOnceCell, OnceCell, async_singleton, singleton
from nogilsafe._once import (
    _BEGIN_OWNER,
    _BEGIN_READY,
    _BEGIN_WAIT,
    _OUTCOME_ABANDONED,
    _OUTCOME_FAILED,
    _OUTCOME_READY,
)


def cells() -> dict[str, Any]:
    sync_cell: OnceCell[int] = OnceCell()
    async_cell: AsyncOnceCell[int] = AsyncOnceCell()
    ready: OnceCell[int] = OnceCell()
    ready.set(1)
    return {
        "OnceCell": sync_cell,
        "OnceCell view": sync_cell.local(),
        "ready OnceCell": ready,
        "AsyncOnceCell": async_cell,
        "AsyncOnceCell view": async_cell.local(),
    }


@pytest.mark.parametrize("name", sorted(cells()))
@pytest.mark.parametrize("how", ["copy", "deepcopy", "pickle"])
def test_once_cells_refuse_copying_and_pickling(name: str, how: str) -> None:
    # A copy sharing the cell would be an alias (reset() through it empties the original); a
    # copy not sharing it would compute the "once" value twice. Both are refused, views too.
    cell = cells()[name]
    attempt = {"copy": copy.copy, "deepcopy": copy.deepcopy, "pickle": pickle.dumps}[how]
    with pytest.raises(TypeError, match=r"once-cell.*shared by identity"):
        attempt(cell)


def test_async_cell_copy_no_longer_aliases_the_original() -> None:
    cell: AsyncOnceCell[int] = AsyncOnceCell()
    cell.set(1)
    with pytest.raises(TypeError):
        copy.copy(cell).reset()
    assert cell.get() == 1


def test_protocol_codes_are_distinct_names() -> None:
    assert len({_BEGIN_READY, _BEGIN_OWNER, _BEGIN_WAIT}) == 3
    assert len({_OUTCOME_READY, _OUTCOME_FAILED, _OUTCOME_ABANDONED}) == 3


# --- @singleton / @async_singleton signatures (item 11) ---------------------------------------


def test_singleton_rejects_positional_arguments_naming_the_function() -> None:
    @singleton
    def config() -> dict[str, int]:
        return {"a": 1}

    # A plain zero-argument function says the same kind of thing:
    def plain() -> None:
        pass

    with pytest.raises(TypeError, match=r"plain\(\) takes 0 positional arguments"):
        plain("x")  # type: ignore[call-arg]
    for bad in ("x", 5, 0.5, None):
        with pytest.raises(TypeError, match=r"config\(\) takes no positional arguments"):
            config(bad)  # type: ignore[call-arg]
    assert not config.cell.is_initialized()  # nothing ran, 5 was not taken as a timeout
    assert config(timeout=1) == {"a": 1} and config() is config()
    with pytest.raises(ValueError, match="timeout"):
        config(timeout=-1)
    with pytest.raises(TypeError):
        config(other=1)  # type: ignore[call-arg]


def test_async_singleton_rejects_positional_arguments_naming_the_function() -> None:
    @async_singleton
    async def engine() -> str:
        return "engine"

    assert inspect.iscoroutinefunction(engine)

    async def main() -> None:
        for bad in ("x", 5):
            with pytest.raises(TypeError, match=r"engine\(\) takes no positional arguments"):
                await engine(bad)  # type: ignore[call-arg]
        assert not engine.cell.is_initialized()
        assert await engine(timeout=1) == "engine"
        assert await engine() == "engine"

    asyncio.run(main())
