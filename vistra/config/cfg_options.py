"""The ``--cfg-options KEY=VALUE ...`` grammar (MMEngine's ``DictAction``).

Each token is split at its first ``=``. The key is a dotted path into the config
(``model.backbone.depth``; digit parts index lists; ``model._delete_=True`` empties a dict).
The value is read as follows:

- quotes around it are stripped and every space is removed;
- ``[...]`` is a list, ``(...)`` a tuple, nested to any depth (``[(1,2),(3,4)]``), items split
  at top-level commas only; ``[]`` and ``()`` are empty;
- a bare ``a,b`` (a top-level comma) is a list;
- anything else is a scalar: ``int``, else ``float``, else ``true``/``false`` in any case as a
  bool, ``None`` as None, else the string itself.

Where MMEngine crashes or silently mangles the value (unbalanced brackets, ``dict(...)``
values, brackets that do not enclose a whole item) this module raises a ConfigError that
names the token. Repeated ``--cfg-options`` flags add up; a later key wins.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from vistra.config.errors import ConfigError

_PAIRS = {"(": ")", "[": "]"}
_CLOSERS = {")": "(", "]": "["}


def parse_cfg_options(tokens: Sequence[str]) -> dict[str, Any]:
    """``['a.b=1', 'c=[x,y]']`` -> ``{'a.b': 1, 'c': ['x', 'y']}`` (dotted keys kept flat)."""
    if isinstance(tokens, str):
        tokens = [tokens]
    options: dict[str, Any] = {}
    for token in tokens:
        key, sep, value = token.partition("=")
        if not sep:
            raise ConfigError(
                f"--cfg-options item {token!r} has no '='; expected KEY=VALUE, "
                "e.g. model.backbone.depth=50"
            )
        if not key or "" in key.split("."):
            raise ConfigError(
                f"--cfg-options item {token!r}: invalid key {key!r}; expected dotted names "
                "like optim_wrapper.optimizer.lr"
            )
        options[key] = parse_value(value, token)
    return options


def parse_value(text: str, token: str | None = None) -> Any:
    """One option value, by the rules of this module; ``token`` names it in errors."""
    token = text if token is None else token
    val = text.strip("'\"").replace(" ", "")
    _reject_dict(val, token)
    if val[:1] in _PAIRS and _closing_index(val) == len(val) - 1:
        items = [parse_value(item, token) for item in _split_items(val[1:-1], token)]
        return tuple(items) if val[0] == "(" else items
    if "," not in val:
        return parse_scalar(val)
    items = _split_items(val, token)
    if items == [val]:  # no comma outside brackets: nothing to split
        raise ConfigError(
            f"--cfg-options item {token!r}: cannot read {val!r}: brackets must enclose a whole "
            "value or a whole list item, e.g. k=[1,2] or k=[(1,2),(3,4)]"
        )
    return [parse_value(item, token) for item in items]


def parse_scalar(val: str) -> Any:
    """int, else float, else bool (``true``/``false``, any case), ``None``, else the string."""
    try:
        return int(val)
    except ValueError:
        pass
    try:
        return float(val)
    except ValueError:
        pass
    if val.lower() in ("true", "false"):
        return val.lower() == "true"
    if val == "None":
        return None
    return val


def _reject_dict(val: str, token: str) -> None:
    is_call = val.startswith("dict(")
    is_literal = val.startswith("{") and val.endswith("}") and ":" in val
    if is_call or is_literal:
        raise ConfigError(
            f"--cfg-options item {token!r}: dict values are not supported; set the keys one by "
            "one instead, e.g. model.head.loss.type=CrossEntropyLoss model.head.loss.loss_weight=1.0"
        )


def _closing_index(val: str) -> int | None:
    """Index of the bracket that closes ``val[0]``, or None when it is never closed properly."""
    stack: list[str] = []
    for i, ch in enumerate(val):
        if ch in _PAIRS:
            stack.append(ch)
        elif ch in _CLOSERS:
            if not stack or stack.pop() != _CLOSERS[ch]:
                return None
            if not stack:
                return i
    return None


def _split_items(val: str, token: str) -> list[str]:
    """Split at commas outside brackets; a trailing empty item (``1,2,``) is dropped."""
    items: list[str] = []
    stack: list[str] = []
    start = 0
    for i, ch in enumerate(val):
        if ch in _PAIRS:
            stack.append(ch)
        elif ch in _CLOSERS:
            if not stack or stack.pop() != _CLOSERS[ch]:
                raise _unbalanced(val, token)
        elif ch == "," and not stack:
            items.append(val[start:i])
            start = i + 1
    if stack:
        raise _unbalanced(val, token)
    items.append(val[start:])
    if items[-1] == "":
        items.pop()
    return items


def _unbalanced(val: str, token: str) -> ConfigError:
    return ConfigError(
        f"--cfg-options item {token!r}: unbalanced brackets in {val!r}; every '[' and '(' "
        "needs its matching ']' or ')'"
    )


class CfgOptionsAction(argparse.Action):
    """argparse action for ``--cfg-options``: ``nargs='+'`` tokens -> a dict of dotted keys.

    Use as ``parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction)``.
    Repeating the flag extends the dict; a bad token is an argparse error naming it.
    """

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        options = dict(getattr(namespace, self.dest, None) or {})
        if values is not None:
            tokens = [values] if isinstance(values, str) else list(values)
            try:
                options.update(parse_cfg_options(tokens))
            except ConfigError as e:
                raise argparse.ArgumentError(self, str(e)) from None
        setattr(namespace, self.dest, options)


# The name scripts ported from MMEngine import.
DictAction = CfgOptionsAction
