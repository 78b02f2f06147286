"""FLOPs (multiply-adds) and parameters of a config's model, per module:
``python tools/analysis_tools/get_flops.py CONFIG [--shape H [W]] [--cfg-options ...]``
(same as ``vistra get-flops``).
"""

import sys

from vistra.cli.get_flops import main

if __name__ == "__main__":
    sys.exit(main())
