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
    "infer": "vistra.cli.infer",
    "export": "vistra.cli.export",
    "analyze-logs": "vistra.cli.analyze_logs",
    "get-flops": "vistra.cli.get_flops",
    "confusion-matrix": "vistra.cli.confusion_matrix",
    "browse-dataset": "vistra.cli.browse_dataset",
    "analyze-results": "vistra.cli.analyze_results",
    "benchmark": "vistra.cli.benchmark",
}

USAGE = """usage: vistra [--debug] <command> [args]

commands:
  train CONFIG [flags]            train a model (vistra train -h for the flags)
  test CONFIG CHECKPOINT [flags]  test a checkpoint
  check CONFIG [train flags]      validate a config before training (--data: read every sample)
  print-config CONFIG [flags]     print the merged config
  migrate-config OLD.py NEW.py    write a 0.x (MMCV runner) config in the 1.x schema
  list-models [PATTERN] [flags]   the model-zoo configs vistra ships or can load, with URLs
  infer CONFIG CKPT INPUT...      predict images, a folder or a list with a trained model
  export CONFIG CKPT --format F   export to onnx, torchscript, exported-program or safetensors
  analyze-logs plot_curve|cal_train_time LOG.json...   plot or time training logs
  get-flops CONFIG [--shape H W]  FLOPs and parameters per module
  confusion-matrix CONFIG PRED    confusion matrix (PNG, CSV) from `vistra test --out` results
  browse-dataset CONFIG           draw the training pipeline's output to PNGs
  analyze-results CONFIG PRED     draw the best and worst predictions
  benchmark CONFIG [CKPT]         inference images/s on the current device

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
