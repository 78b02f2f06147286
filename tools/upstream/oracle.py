"""Entry point of the upstream oracle: ``python tools/upstream/oracle.py TOPIC [args]``.

Runs in its own process with the pinned upstream packages on ``sys.path`` (see
``tools/upstream/run.sh``); vistra is never imported here. Each topic is a module
``oracle_<topic>.py`` beside this file with a ``main(argv: list[str]) -> int``; the
commands read and write files (JSON, ``.pth``) so that tests compare without sharing a
process with upstream code.
"""

from __future__ import annotations

import importlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle_env  # noqa: E402,F401  (must come before any upstream import)


def main(argv: list[str]) -> int:
    topics = sorted(
        name[len("oracle_") : -3]
        for name in os.listdir(os.path.dirname(os.path.abspath(__file__)))
        if name.startswith("oracle_") and name.endswith(".py") and name != "oracle_env.py"
    )
    if not argv or argv[0] not in topics:
        print(f"usage: oracle.py {{{','.join(topics)}}} [args]", file=sys.stderr)
        return 2
    module = importlib.import_module(f"oracle_{argv[0]}")
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
