"""Reading overload: the answers of one endpoint over a sliding time window, and how long a pause lasts (capped
before it is jittered, so processes that share a server do not all wake at the same instant). See
``runner.dispatch`` for why."""

from __future__ import annotations

from collections import deque

#: a pause that reaches the cap ends somewhere in the top quarter below it, drawn per pause (see ``pause_for``)
CAP_SPREAD = 0.25
#: a hinted pause lasts the hint plus up to this share of it: never shorter than the server asked, and pools
#: (processes) given the same hint at the same moment do not all come back at the same instant
HINT_JITTER = 0.03


class AnswerWindow:
    """The answers of one endpoint over a sliding time window: how many, and how many were overload.

    A success and a failure are one entry each (``deque`` appends and pops are O(1), and an entry leaves the
    window once, so the cost per answer stays constant however busy the endpoint is)."""

    __slots__ = ("_entries", "overloads")

    def __init__(self) -> None:
        self._entries: deque[tuple[float, bool]] = deque()
        self.overloads = 0

    def record(self, now: float, overload: bool, window_s: float) -> None:
        self._entries.append((now, overload))
        self.overloads += overload
        self._expire(now - window_s)

    def _expire(self, horizon: float) -> None:
        entries = self._entries
        while entries and entries[0][0] < horizon:
            _, overload = entries.popleft()
            self.overloads -= overload

    def clear(self) -> None:
        self._entries.clear()
        self.overloads = 0

    @property
    def answers(self) -> int:
        return len(self._entries)

    def span(self, now: float) -> float:
        """Seconds since the oldest answer still in the window (0 when empty)."""
        return now - self._entries[0][0] if self._entries else 0.0


def pause_for(base: float, cap: float, u: float, *, hinted: bool) -> float:
    """How long to pause for a wanted pause of ``base`` seconds, given ``u``, a uniform draw in [0, 1).

    A hint is honoured: the pause is the hint plus up to ``HINT_JITTER`` of it, never shorter (only a hint within
    ``CAP_SPREAD`` of the cap may be cut a little). A backoff is jittered around its base (0.5x to 1.5x). The cap
    does not come after that jitter, as one fixed ``min(pause, cap)``: each pause has its own ceiling, drawn from
    the top ``CAP_SPREAD`` below ``cap``, so pauses that reach the cap (a hint beyond it, a long backoff) end at
    different times in different pools and processes, never all at exactly ``cap``."""
    wanted = base * (1.0 + HINT_JITTER * u) if hinted else base * (0.5 + u)
    return min(wanted, cap * (1.0 - CAP_SPREAD * u))
