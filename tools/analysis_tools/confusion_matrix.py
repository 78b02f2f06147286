"""Confusion matrix (PNG, CSV) of a classifier or a segmenter: ``python tools/analysis_tools/confusion_matrix.py CONFIG CHECKPOINT_OR_RESULT [SAVE_DIR] [flags]``
(same flags as ``vistra confusion-matrix``; MMPretrain's and MMSegmentation's forms both work)."""

import sys

from vistra.cli.confusion_matrix import main

if __name__ == "__main__":
    sys.exit(main())
