"""Which agent a Locust user is (pure): one pool of agent indexes for the whole run.

Agent k is node k % nodes and identity k. The pool lives in one place (the Locust master,
or the only process of a local run) and every worker asks it for an index when a user
starts and gives it back when the user stops, so N agents are N distinct agents however
many processes or machines run them, and a user started after another stopped takes the
freed index (a step shape going down and up again brings back the same agents).
"""

from __future__ import annotations

import heapq


class IndexPool:
    """Lowest free index first."""

    def __init__(self) -> None:
        self._free: list[int] = []
        self._next = 0
        self._taken: set[int] = set()

    def take(self) -> int:
        k = heapq.heappop(self._free) if self._free else self._next
        if k == self._next:
            self._next += 1
        self._taken.add(k)
        return k

    def give(self, k: int) -> None:
        """Return k to the pool; giving back an index that is not out is ignored (a late or
        repeated release must not hand one index to two agents)."""
        if k in self._taken:
            self._taken.remove(k)
            heapq.heappush(self._free, k)

    @property
    def in_use(self) -> int:
        return len(self._taken)
