"""Keep the backbone of a pre-training checkpoint, for a linear probe, fine-tuning or kNN.

    python tools/model_converters/extract_backbone_weights.py CHECKPOINT OUTPUT [--prefix backbone]

MMSelfSup's tool of the same name and arguments: every ``backbone.*`` entry of
CHECKPOINT's ``state_dict`` is written to OUTPUT without its ``backbone.`` prefix, as
``{'meta', 'state_dict'}``; the rest (neck, head, momentum encoder, memory bank, queues,
optimizer) is dropped. A benchmark config then loads OUTPUT through
``model.backbone.init_cfg=dict(type='Pretrained', checkpoint=OUTPUT)`` (or the whole
classifier's ``load_from`` after ``--prefix ''``; see ``docs/en/selfsup.md``).

Better than the original: the checkpoint is read safely (``weights_only``), OUTPUT is
written atomically and never over CHECKPOINT, ``--prefix`` picks another part (e.g.
``target_net.module.0`` for BYOL's momentum encoder), and a prefix that matches nothing
fails with the prefixes the checkpoint does have.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from vistra.cli.common import ArgumentParser, UsageError, run_reporting_errors


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a pre-training checkpoint (path or URL)")
    parser.add_argument("output", help="where to write the backbone's weights (.pth)")
    parser.add_argument(
        "--prefix",
        default="backbone",
        help="the part to keep, as its key prefix without the final dot (default: backbone)",
    )
    return parser.parse_args(argv)


def top_level_prefixes(keys: list[str]) -> list[str]:
    """The first key component of ``keys`` with counts, most frequent first."""
    counts = Counter(k.split(".", 1)[0] for k in keys)
    return [f"{name} ({n})" for name, n in counts.most_common()]


def extract(state_dict: dict, prefix: str) -> dict:
    """The entries under ``prefix.``, with it removed."""
    head = f"{prefix}." if prefix else ""
    return {k[len(head) :]: v for k, v in state_dict.items() if k.startswith(head)}


def convert(checkpoint: str, output: str, prefix: str = "backbone") -> tuple[Path, int]:
    """Write OUTPUT from CHECKPOINT; returns (OUTPUT, number of tensors kept)."""
    from vistra.checkpoint import (
        CheckpointError,
        extract_state_dict,
        load_checkpoint_file,
        save_checkpoint,
    )

    out = Path(output).expanduser()
    if out.suffix not in (".pth", ".tar"):
        raise UsageError(f"OUTPUT {output} must name a checkpoint file ending in .pth")
    if out.is_dir():
        raise UsageError(f"OUTPUT {output} is a directory; give a file name ending in .pth")
    if "://" not in checkpoint and out.exists() and out.resolve() == Path(checkpoint).resolve():
        raise UsageError(f"OUTPUT {output} is CHECKPOINT itself; write to another file")
    prefix = prefix.rstrip(".")
    ckpt = load_checkpoint_file(checkpoint)
    state = extract_state_dict(ckpt)
    # a checkpoint saved from a DDP-wrapped model has every key under ``module.``
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    kept = extract(state, prefix)
    if not kept:
        raise CheckpointError(
            f"{checkpoint} has no weights under {prefix!r}; its top-level prefixes are "
            f"{', '.join(top_level_prefixes(list(state)))} (choose one with --prefix)"
        )
    meta = {"extracted_from": str(checkpoint), "prefix": prefix}
    source_meta = ckpt.get("meta") if isinstance(ckpt, dict) else None
    if isinstance(source_meta, dict) and isinstance(source_meta.get("config"), str):
        meta["config"] = source_meta["config"]
    save_checkpoint({"meta": meta, "state_dict": kept}, out)
    return out, len(kept)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def run() -> None:
        out, count = convert(args.checkpoint, args.output, args.prefix)
        print(f"{count} tensors of {args.prefix or 'the model'} saved to {out}")

    return run_reporting_errors(run)


if __name__ == "__main__":
    sys.exit(main())
