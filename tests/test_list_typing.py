"""The ThreadSafeList stubs type-check a usage example under mypy --strict."""

from __future__ import annotations

from conftest import MypyRun

GOOD = """
    from collections.abc import MutableSequence
    from nogilsafe import ThreadSafeList

    lst: ThreadSafeList[int] = ThreadSafeList([3, 1, 2])
    lst.append(4)
    lst.extend(range(3))
    first: int = lst[0]
    part: ThreadSafeList[int] = lst[1:3]
    lst[0:2] = [7, 8]
    del lst[::2]
    lst.sort(key=lambda v: -v, reverse=True)
    added: bool = lst.append_if_absent(5)
    n: int = lst.extend_if_absent([5, 6])
    maybe: int | None = lst.pop_or()
    dflt: int | str = lst.pop_or("empty", 0)
    new: int = lst.update_at(0, lambda v: v + 1)
    ok: bool = lst.compare_and_set(0, 1, 2)
    gone: int = lst.remove_if(lambda v: v > 100)
    items: list[int] = lst.drain() + lst.snapshot()
    both: ThreadSafeList[int] = lst + [1] + lst
    lst += [1]
    lst *= 2
    view: ThreadSafeList[int] = lst.local()
    seq: MutableSequence[int] = lst
    for x in reversed(lst):
        print(x + 1, len(lst), x in lst, lst.index(x), lst.count(x), lst == [1], lst < lst)


    class Jobs(ThreadSafeList[str]):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name


    jobs = Jobs("queue")
    jobs_view: Jobs = jobs.local()
    plain: ThreadSafeList[str] = jobs.copy()
    print(jobs_view.name, plain)
"""

BAD = """
    from nogilsafe import ThreadSafeList

    lst: ThreadSafeList[int] = ThreadSafeList()
    lst.append("x")
    s: str = lst.pop()
"""


def test_usage_example_type_checks(mypy_check: MypyRun) -> None:
    out, status = mypy_check(GOOD)
    assert status == 0, out


def test_wrong_element_type_is_rejected(mypy_check: MypyRun) -> None:
    out, status = mypy_check(BAD)
    assert status == 1, out
    assert 'Argument 1 to "append" of "ThreadSafeList" has incompatible type "str"' in out
    assert (
        'Incompatible types in assignment (expression has type "int", variable has type "str")'
        in out
    )
