"""Write a 0.x config in the 1.x schema: ``python tools/migrate_config.py OLD.py NEW.py``
(same flags as ``vistra migrate-config``)."""

import sys

from vistra.cli.migrate_config import main

if __name__ == "__main__":
    sys.exit(main())
