"""Stopping a run cleanly on SIGTERM or SIGINT: the handler only notes the signal, the training loop acts on
it between steps (it saves ``last.pt`` and raises KeyboardInterrupt), and under torchrun every process stops
at the same step when any of them got one."""
from __future__ import annotations

import signal

import torch

from . import distributed as dist

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """``with StopSignals(info):`` installs the handlers (the previous ones come back on exit);
    ``received`` is the signal number noted, or None."""

    def __init__(self, info: dist.DistInfo):
        self.info = info
        self.received: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> "StopSignals":
        self._previous = {s: signal.signal(s, self.note) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def note(self, signum, frame=None) -> None:
        self.received = signum

    def should_stop(self) -> bool:
        """Whether any process got a signal (a collective call: every process makes it at the same step)."""
        flag = torch.tensor(float(self.received is not None))
        if self.info.enabled:
            flag = dist.all_reduce_sum(flag)
        if flag.item() and self.received is None:
            self.received = signal.SIGTERM
        return bool(flag.item())
