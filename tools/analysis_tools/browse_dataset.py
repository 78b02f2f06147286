"""Draw a dataset's pipeline output to PNGs: ``python tools/analysis_tools/browse_dataset.py CONFIG -o DIR [flags]``
(same flags as ``vistra browse-dataset``; MMPretrain's and MMSegmentation's spellings)."""

import sys

from vistra.cli.browse_dataset import main

if __name__ == "__main__":
    sys.exit(main())
