"""Check a config before training: ``python tools/check.py CONFIG [flags]`` (as ``vistra check``)."""

import sys

from vistra.cli.check import main

if __name__ == "__main__":
    sys.exit(main())
