"""The cyclic garbage collector of a command whose process ends when it does (cas-sync,
cas-index: their console entry points run through `run_once`).

Such a run builds its objects once and drops them at the end; it makes few reference
cycles. With the default thresholds the collector ran some sixty times in a cold sync of
1,800 files, and once more over every object when the interpreter finalized. Here the
young generation is collected every YOUNG net allocations, and what is alive when the
command returns is frozen, so that the interpreter's last collection skips it (the
process is about to end: its memory goes back to the system either way). Not for the
server (cas-server keeps the defaults) nor for calls of `main` inside a longer process,
such as the tests: they would keep the frozen objects.
"""

from __future__ import annotations

import gc

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Callable

YOUNG = 100_000  # the default is 700


def run_once(main: Callable[[], int]) -> int:
    """`main()` in a process that ends with it: its exit status."""
    gc.set_threshold(YOUNG, 50, 100)
    try:
        return main()
    finally:
        gc.freeze()
