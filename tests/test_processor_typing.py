"""SequentialProcessor's annotations type-check real usage under mypy --strict."""

from __future__ import annotations

from pathlib import Path

from conftest import MypyRun

USAGE = Path(__file__).parent / "typing" / "processor_usage.py"


def test_usage_type_checks(mypy_check: MypyRun) -> None:
    out, status = mypy_check(USAGE)
    assert status == 0, out


def test_wrong_types_are_caught(mypy_check: MypyRun) -> None:
    out, status = mypy_check(
        """
        import asyncio
        from nogilsafe import SequentialProcessor

        def render(order_id: int) -> str:
            return str(order_id)

        p: SequentialProcessor[int, str] = SequentialProcessor(render)
        p.submit("not an int")
        n: int = p.submit(1).result()
        SequentialProcessor(render, loop=asyncio.new_event_loop())
        """
    )
    assert status == 1, out
    assert 'Argument 1 to "submit" of "SequentialProcessor" has incompatible type "str"' in out
    assert out.count("Incompatible types in assignment") == 1, out
    assert "Awaitable" in out, out  # loop= only with an async def process
