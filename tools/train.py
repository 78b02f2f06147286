"""Train a model: ``python tools/train.py CONFIG [flags]`` (same flags as ``vistra train``)."""

import sys

from vistra.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
