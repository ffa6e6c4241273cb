"""Entry point: ``python examples/s4rec/compare.py --help`` (the code is in ``s4rec_example/compare.py``)."""

import os
import sys
from pathlib import Path

# Before torch is imported (libgomp reads it once, when it starts): OpenMP worker threads
# sleep at barriers instead of spin-waiting. With the default policy, a 2-thread run on a
# machine whose other core is busy spends its time spinning against the other job, 13-56x
# slower than with PASSIVE (measured on the example's training step); an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from s4rec_example.compare import main  # noqa: E402

if __name__ == "__main__":
    main()
