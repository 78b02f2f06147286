"""Plot or time training logs: ``python tools/analysis_tools/analyze_logs.py
plot_curve|cal_train_time JSON_LOGS... [flags]`` (same as ``vistra analyze-logs``).

MMPretrain's sub-commands and flags; a JSON log is a run's ``vis_data/scalars.json``,
its ``<timestamp>`` folder or a work dir.
"""

import sys

from vistra.cli.analyze_logs import main

if __name__ == "__main__":
    sys.exit(main())
