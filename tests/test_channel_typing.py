"""Channel's stubs type-check real usage under mypy --strict, and catch the wrong item type."""

from __future__ import annotations

from pathlib import Path

from conftest import MypyRun

USAGE = Path(__file__).parent / "typing" / "channel_usage.py"


def test_usage_type_checks(mypy_check: MypyRun) -> None:
    out, status = mypy_check(USAGE)
    assert status == 0, out


def test_a_wrong_item_type_is_caught(mypy_check: MypyRun) -> None:
    out, status = mypy_check(
        """
        from nogilsafe import Channel

        ch: Channel[int] = Channel()
        ch.put("x")
        ch.put_nowait(b"x")
        s: str = ch.get()
        many: list[str] = ch.get_many(3)

        async def main() -> None:
            await ch.put_async("x")
            t: str = await ch.get_async()
        """
    )
    assert status == 1, out
    assert 'Argument 1 to "put" of "Channel" has incompatible type "str"; expected "int"' in out
    assert 'Argument 1 to "put_nowait" of "Channel"' in out
    assert 'Argument 1 to "put_async" of "Channel"' in out
    assert out.count("Incompatible types in assignment") == 3, out


def test_a_wrong_maxsize_and_timeout_are_caught(mypy_check: MypyRun) -> None:
    out, status = mypy_check(
        """
        from nogilsafe import Channel

        ch: Channel[int] = Channel("16")
        ch.get(timeout="1")
        ch.get_many(2.5)
        ch.maxsize = 3
        """
    )
    assert status == 1, out
    assert out.count("error:") == 4, out
