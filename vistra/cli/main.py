"""``vistra <command>``: train, test, check, print-config, migrate-config, list-models."""

from __future__ import annotations

import os
import sys

COMMANDS = {
    "train": "vistra.cli.train",
    "test": "vistra.cli.test",
    "check": "vistra.cli.check",
    "print-config": "vistra.cli.print_config",
    "migrate-config": "vistra.cli.migrate_config",
    "list-models": "vistra.cli.list_models",
}

USAGE = """usage: vistra [--debug] <command> [args]

commands:
  train CONFIG [flags]            train a model (vistra train -h for the flags)
  test CONFIG CHECKPOINT [flags]  test a checkpoint
  check CONFIG [train flags]      validate a config before training (--data: read every sample)
  print-config CONFIG [flags]     print the merged config
  migrate-config OLD.py NEW.py    write a 0.x (MMCV runner) config in the 1.x schema
  list-models [PATTERN] [flags]   the model-zoo configs vistra ships or can load, with URLs

Errors are one line; --debug (or VISTRA_DEBUG=1) prints the full traceback.
"""


def main(argv: list[str] | None = None) -> int:
    import importlib

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--debug"]:  # `vistra --debug train ...` as well as `vistra train ... --debug`
        os.environ["VISTRA_DEBUG"] = "1"
        argv = argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        import vistra

        print(f"vistra {vistra.__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        from vistra.registry import did_you_mean

        print(
            f"error: unknown command {command!r}.{did_you_mean(command, list(COMMANDS))}\n\n{USAGE}",
            file=sys.stderr,
        )
        return 2
    return importlib.import_module(COMMANDS[command]).main(rest)


if __name__ == "__main__":
    raise SystemExit(main())
