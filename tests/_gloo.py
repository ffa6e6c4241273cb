"""Shared plumbing of the tests that spawn gloo process groups on the CPU.

Two things made these tests flaky on a loaded 2-core machine (SIGABRT, "terminate called
without an active exception", in a child after its work was done):

* a ``DistributedDataParallel`` wrapper (or anything else holding the process group) that
  outlived ``destroy_process_group`` was only collected during interpreter shutdown, where
  gloo's threads tear down objects that need the GIL;
* nothing retried a child that a native crash killed, although such a crash says nothing
  about the law a test checks.

:func:`gloo_group` collects garbage and meets at a barrier before it destroys the group, and
:func:`spawn` reruns the whole group once when a child dies by a signal. A child that raises
a Python exception (a failing law, a wrong shape) is never retried: that is a real failure.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import os
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

RETRIES_AFTER_A_SIGNAL = 1


@contextlib.contextmanager
def gloo_group(rank: int, world: int, init_file: str, timeout_s: float | None = None) -> Iterator[None]:
    """One thread, a gloo group for the body, and a teardown that cannot race the group's threads.

    ``timeout_s`` bounds every collective (torch's default is 30 minutes): a test of "nobody is
    left waiting" sets it so that a regression fails in seconds instead of hanging the suite.
    """
    torch.set_num_threads(1)
    timeout = None if timeout_s is None else datetime.timedelta(seconds=timeout_s)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            **({} if timeout is None else {"timeout": timeout}))
    ok = False
    try:
        yield
        ok = True
    finally:
        gc.collect()  # DDP and its reducer hold the group in reference cycles: free them now
        if ok:
            dist.barrier()  # nobody leaves while a peer still talks to it
        dist.destroy_process_group()


def spawn(fn: Callable[..., Any], args: tuple[Any, ...], nprocs: int, init_file: str) -> None:
    """``mp.spawn(fn, args, nprocs, join=True)``, rerun once if a child is killed by a signal.

    ``init_file`` is the group's rendezvous file: it is removed before a rerun, since a stale
    one would join the new children to the dead group.
    """
    for attempt in range(RETRIES_AFTER_A_SIGNAL + 1):
        with contextlib.suppress(FileNotFoundError):
            os.remove(init_file)
        try:
            mp.spawn(fn, args=args, nprocs=nprocs, join=True)
            return
        except mp.ProcessExitedException as error:
            if not error.signal_name or attempt == RETRIES_AFTER_A_SIGNAL:
                raise
            warnings.warn(f"a gloo child died by {error.signal_name}; rerunning the group once",
                          RuntimeWarning, stacklevel=2)
