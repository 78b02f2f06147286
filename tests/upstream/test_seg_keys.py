"""Over MMSegmentation's config tree: every config whose model vistra builds has exactly
MMSegmentation's state_dict keys and shapes (the oracle's ``models keys``, one process for
all configs). The default suite takes a fixed spread sample of the tree;
VISTRA_UPSTREAM_FULL=1 takes every config."""

from __future__ import annotations

from pathlib import Path

import pytest
from oracle_support import FULL, config_tree, report, run_oracle_json, sample
from seg_zoo import vistra_keys

SAMPLE = 16  # configs of the ~680 in the default suite (all but the out-of-scope ones build)


def _configs() -> list[Path]:
    tree = config_tree("mmseg")
    return sorted(p for p in tree.rglob("*.py") if "_base_" not in p.relative_to(tree).parts)


@pytest.fixture(scope="module")
def tree_keys():
    """(sampled configs, {config: vistra keys} for those vistra builds, {config: error})."""
    chosen = sample(_configs(), SAMPLE)
    built, errors = {}, {}
    for path in chosen:
        try:
            built[str(path)] = vistra_keys(path)
        except Exception as exc:  # noqa: BLE001 - counted, and shown on failure
            errors[str(path)] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return chosen, built, errors


def test_keys_and_shapes_equal_upstream(tree_keys):
    chosen, built, _ = tree_keys
    assert built, "vistra builds none of the sampled MMSegmentation configs"
    upstream = run_oracle_json("models", "keys", *built, timeout=1800)
    root = config_tree("mmseg")
    differ = {}
    for path, keys in built.items():
        theirs = upstream[path]
        if "error" in theirs:
            differ[path] = f"upstream cannot build it: {theirs['error']}"
        elif theirs != keys:
            differ[path] = _difference(keys, theirs)
    scope = "all" if FULL else "sampled"
    report(
        f"mmseg keys: vistra builds {len(built)}/{len(chosen)} {scope} configs; keys and "
        f"shapes equal upstream's for {len(built) - len(differ)}/{len(built)}"
    )
    shown = {str(Path(p).relative_to(root)): d for p, d in differ.items()}
    assert not differ, f"{len(differ)} config(s) differ from MMSegmentation: {shown}"


def _difference(mine: dict, theirs: dict) -> str:
    missing = sorted(set(theirs) - set(mine))
    extra = sorted(set(mine) - set(theirs))
    shapes = [f"{k} {mine[k]} vs {theirs[k]}" for k in sorted(set(mine) & set(theirs))
              if mine[k] != theirs[k]]  # fmt: skip
    return f"vistra lacks {missing[:4]}, has extra {extra[:4]}, shapes differ {shapes[:4]}"


def test_unbuildable_configs_fail_with_a_message_naming_the_config_key(tree_keys):
    """What vistra cannot build it says where (an unknown type or argument, a value it
    rejects: the config key), never crashes on from deep inside."""
    _, _, errors = tree_keys
    odd = {
        p: e
        for p, e in errors.items()
        if "(config key '" not in e and not e.startswith("CustomImportError")
    }
    assert not odd, f"configs that fail without naming the config key: {odd}"
