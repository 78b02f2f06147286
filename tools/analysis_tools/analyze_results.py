"""Draw the most confident right and wrong predictions:
``python tools/analysis_tools/analyze_results.py CONFIG RESULT --out-dir DIR [--topk 20]``
(same flags as ``vistra analyze-results``)."""

import sys

from vistra.cli.analyze_results import main

if __name__ == "__main__":
    sys.exit(main())
