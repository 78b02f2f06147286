"""Inference images/s: ``python tools/analysis_tools/benchmark.py CONFIG [CHECKPOINT]
[--batch-size N] [--num-iters 200] [--num-warmup 5] [--log-interval 50] [--device D]
[--repeat-times N] [--work-dir D] [--cfg-options ...]`` (same as ``vistra benchmark``).
"""

import sys

from vistra.cli.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
