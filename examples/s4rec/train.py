"""Entry point: ``python examples/s4rec/train.py --help`` (the code is in ``s4rec_example/cli.py``)."""

import os
import signal
import sys
from pathlib import Path

# Before torch is imported (libgomp reads it once, when it starts): OpenMP worker threads
# sleep at barriers instead of spin-waiting. With the default policy, a 2-thread run on a
# machine whose other core is busy spends its time spinning against the other job, 13-56x
# slower than with PASSIVE (measured on the example's training step); an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from s4rec_example.cli import main, raise_on_sigterm  # noqa: E402


def _main_as_worker() -> None:
    """``main()`` in a ``torchrun`` worker, left with ``os._exit``.

    A gloo worker can abort at interpreter shutdown ("terminate called without an active
    exception", SIGABRT) after its work is done and its process group destroyed: C++ objects
    of the group are torn down while the interpreter is half gone (seen in about 1 of 10
    2-process CPU jobs on a loaded 2-core machine, never in the Python code). Everything the
    run writes is written and flushed before this point, so the worker skips the interpreter's
    teardown and reports its own status instead.
    """
    import logging
    import traceback

    status = 0
    try:
        main()
    except SystemExit as stop:
        if isinstance(stop.code, int) or stop.code is None:
            status = stop.code or 0
        else:
            print(stop.code, file=sys.stderr)
            status = 1
    except KeyboardInterrupt:
        status = 130
    except BaseException:  # the traceback the launcher would have shown
        traceback.print_exc()
        status = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        _main_as_worker()
    else:
        signal.signal(signal.SIGTERM, raise_on_sigterm)  # unwinds like Ctrl-C: temp files removed, one line
        main()
