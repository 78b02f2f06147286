"""State-dict keys and shapes of every MMPretrain config's model that vistra can build equal
MMPretrain's (``models keys``, one oracle call for all of them).

A config naming a model type vistra lacks counts as "not built"; the test output lists
those types, most frequent first: the model-zoo backlog. The default suite takes a fixed
spread sample of the tree, ``VISTRA_UPSTREAM_FULL=1`` every config, and
``VISTRA_CLS_FOLDERS=repvgg,mobileone`` every config of the named folders (while working on
a family).
"""

from __future__ import annotations

import collections
import os
import re
from pathlib import Path

from numeric_support import build_vistra_model
from oracle_support import FULL, config_tree, report, run_oracle_json, sample

from vistra.config import Config
from vistra.registry import MODELS, default_scope

SAMPLE = 24
# weight initialisers, and the data a retriever's prototype or a tokenizer config carries
SKIPPED_KEYS = ("init_cfg", "prototype", "pipeline", "dataset", "sampler")
UNKNOWN_TYPE = re.compile(r"unknown \w[\w ]* type '([^']+)'")


def _types(node, out: set[str]) -> None:
    """Every ``type`` name in a model config, those under SKIPPED_KEYS aside."""
    if isinstance(node, dict):
        if isinstance(node.get("type"), str):
            out.add(node["type"])
        for key, value in node.items():
            if key not in SKIPPED_KEYS:
                _types(value, out)
    elif isinstance(node, list | tuple):
        for value in node:
            _types(value, out)


def _missing_types(cfg) -> list[str]:
    names: set[str] = set()
    _types(dict(cfg["model"]), names)
    with default_scope(cfg.get("default_scope")):
        return sorted(n for n in names if MODELS.get(n.rsplit(".", 1)[-1]) is None)


def _try_build(path) -> tuple[dict | None, list[str], str | None]:
    """(keys and shapes, missing types, other build error) of one config."""
    try:
        cfg = Config.fromfile(str(path))
    except Exception as exc:  # noqa: BLE001 - e.g. a base config of another package (mmdet::)
        return None, [], f"config: {type(exc).__name__}: {str(exc)[:200]}"
    if not isinstance(cfg.get("model"), dict):
        return None, [], "no model dict"
    missing = _missing_types(cfg)
    if missing:
        return None, missing, None
    try:
        model = build_vistra_model(path)
    except Exception as exc:  # noqa: BLE001 - reported per config
        found = UNKNOWN_TYPE.search(str(exc))
        if found:
            return None, [found.group(1)], None
        return None, [], f"{type(exc).__name__}: {str(exc)[:300]}"
    keys = {k: list(v.shape) for k, v in model.state_dict().items()}
    del model
    return keys, [], None


def test_keys_over_the_mmpretrain_tree():
    root = config_tree("mmpretrain")
    configs = sorted(p for p in root.rglob("*.py") if "_base_" not in p.parts)
    folders = [f for f in os.environ.get("VISTRA_CLS_FOLDERS", "").split(",") if f]
    if folders:
        configs = [p for p in configs if p.relative_to(root).parts[0] in folders]
        assert configs, f"VISTRA_CLS_FOLDERS={folders}: no configs in those folders"
    chosen = configs if folders else sample(configs, SAMPLE)
    built: dict[str, dict] = {}
    missing_count: collections.Counter[str] = collections.Counter()
    errors: dict[str, str] = {}
    for path in chosen:
        keys, missing, error = _try_build(path)
        name = str(path.relative_to(root))
        missing_count.update(missing)
        if error:
            errors[name] = error
        if keys is not None:
            built[str(path)] = keys
    upstream = run_oracle_json("models", "keys", *built) if built else {}
    differ, upstream_fails = [], {}
    for path, keys in built.items():
        theirs = upstream.get(path, {"error": "no answer"})
        if "error" in theirs:  # nothing to compare with (e.g. LeViT's deploy configs)
            upstream_fails[str(Path(path).relative_to(root))] = theirs["error"]
        elif keys != theirs:
            differ.append(f"{path}: {_describe(keys, theirs)}")
    n, m = len(built), len(chosen)
    k = n - len(differ) - len(upstream_fails)
    scope = (
        f"folders {folders}"
        if folders
        else "the whole tree"
        if FULL
        else f"a sample of {m} of {len(configs)}"
    )
    report(
        f"MMPretrain configs ({scope}): buildable {n}/{m}, keys equal {k}/{n - len(upstream_fails)}"
        f" (MMPretrain itself cannot build {len(upstream_fails)} of them)"
    )
    for name, error in upstream_fails.items():
        report(f"  MMPretrain cannot build {name}: {error[:200]}")
    backlog = ", ".join(f"{t} ({c})" for t, c in missing_count.most_common(20))
    report(f"  model types vistra lacks, most frequent first: {backlog}")
    for name, error in errors.items():
        report(f"  not built ({name}): {error}")
    assert n, "no MMPretrain config could be built"
    assert not differ, "\n".join(differ[:10])


def _describe(ours: dict, theirs: dict) -> str:
    if "error" in theirs:
        return f"upstream failed: {theirs['error']}"
    only_ours, only_theirs = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
    shapes = [f"{k} {ours[k]} vs {theirs[k]}" for k in ours if k in theirs and ours[k] != theirs[k]]
    return f"vistra only {only_ours[:5]}, upstream only {only_theirs[:5]}, shapes {shapes[:5]}"
