"""Export a trained model: ``python tools/deployment/export.py CONFIG CKPT --format F``
(same flags as ``vistra export``)."""

import sys

from vistra.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
