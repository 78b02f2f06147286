"""Test a checkpoint: ``python tools/test.py CONFIG CHECKPOINT [flags]`` (as ``vistra test``)."""

import sys

from vistra.cli.test import main

if __name__ == "__main__":
    sys.exit(main())
