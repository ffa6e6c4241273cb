"""Entry point: ``python examples/s4rec/evaluate.py --help`` (the code is in ``s4rec_example/evaluate.py``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from s4rec_example.evaluate import main  # noqa: E402

if __name__ == "__main__":
    main()
