"""Upstream optimizer parameter groups, for comparison with vistra's constructors.

``oracle.py optim groups CONFIG [CONFIG ...]``
    builds each config's model and its ``optim_wrapper`` with the upstream packages and
    prints ``{config: {param_name: {"lr", "weight_decay", "lr_scale", "group_name"}}}``
    (``{"error": ...}`` for a config that fails). Frozen parameters that the constructor
    leaves out do not appear. ``AmpOptimWrapper`` is built as ``OptimWrapper``: AMP needs
    a GPU in MMEngine and does not change the parameter groups.
"""

from __future__ import annotations

import json
import sys

from oracle_models import _logs_to_stderr, build_model, load_config


def param_groups(config: str) -> dict[str, dict]:
    cfg = load_config(config)
    model = build_model(cfg)
    from mmengine.optim import build_optim_wrapper

    optim_cfg = cfg.optim_wrapper.copy()
    if optim_cfg.get("type") == "AmpOptimWrapper":
        optim_cfg["type"] = "OptimWrapper"
        optim_cfg.pop("loss_scale", None)
    wrapper = build_optim_wrapper(model, optim_cfg)
    names = {id(p): n for n, p in model.named_parameters()}
    result: dict[str, dict] = {}
    for group in wrapper.optimizer.param_groups:
        for param in group["params"]:
            result[names[id(param)]] = {
                "lr": group["lr"],
                "weight_decay": group.get("weight_decay"),
                "lr_scale": group.get("lr_scale"),
                "group_name": group.get("group_name"),
            }
    return result


def cmd_groups(args: list[str]) -> int:
    result = {}
    for path in args:
        try:
            with _logs_to_stderr():
                result[path] = param_groups(path)
        except Exception as exc:  # noqa: BLE001 - reported per config
            result[path] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    json.dump(result, sys.stdout)
    return 0


def main(argv: list[str]) -> int:
    commands = {"groups": cmd_groups}
    if not argv or argv[0] not in commands:
        print(f"usage: oracle.py optim {{{','.join(commands)}}} CONFIG ...", file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])
