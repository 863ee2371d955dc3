"""Type-checked by tests/test_once_typing.py: the once-cell API as users write it."""

from __future__ import annotations

from typing import assert_type

from nogilsafe import AsyncOnceCell, AsyncSingleton, OnceCell, async_singleton, run_once, singleton


class Config:
    pass


cell: OnceCell[Config] = OnceCell()
assert_type(cell.get_or_init(Config), Config)
assert_type(cell.get_or_init(Config, timeout=1.0), Config)
assert_type(cell.get(), Config | None)
assert_type(cell.set(Config()), bool)
assert_type(cell.take(), Config | None)
assert_type(cell.local(), OnceCell[Config])

acell: AsyncOnceCell[int] = AsyncOnceCell()


async def make() -> int:
    return 1


@singleton
def config() -> Config:
    return Config()


@async_singleton
async def client() -> int:
    return 2


class Service(AsyncSingleton):
    pass


class Sub(Service):
    pass


class Resource:
    @run_once
    def close(self) -> None:
        pass


async def use() -> None:
    assert_type(await acell.get_or_init(make), int)
    assert_type(await acell.get_or_init(make, timeout=0.5), int)
    assert_type(acell.get(), int | None)
    assert_type(config(), Config)
    config.reset()
    assert_type(await client(), int)
    client.reset()
    assert_type(await Service.instance(), Service)
    assert_type(await Sub.instance(), Sub)
    assert_type(await Sub.get_instance(), Sub)
    Sub.reset_instance()
    Resource().close()
