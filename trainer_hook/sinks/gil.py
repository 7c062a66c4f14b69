"""How the background threads leave Python's GIL to the training thread between small pieces
of work.

`time.sleep(0)` releases the GIL, but the releasing thread usually takes it back before a
waiting thread wakes up, so the waiter gets it only when CPython forces a switch (after
`sys.getswitchinterval()`, 5 ms). A real pause of `PAUSE_S` lets a waiting training thread
run first; it costs the sender ~0.1 ms per step record, only while it has work.
"""

from __future__ import annotations

import time

PAUSE_S = 1e-4


def yield_gil() -> None:
    """Release the GIL long enough for a waiting thread to take it."""
    time.sleep(PAUSE_S)
