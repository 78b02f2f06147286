"""Weights in checkpoints: extraction, key remapping and the load report."""

from collections import OrderedDict

import pytest
import torch
from torch import nn

from vistra.checkpoint import (
    DDP_PREFIX,
    CheckpointError,
    extract_state_dict,
    load_pretrained,
    load_state_dict,
    revise_keys,
)


def test_load_report_lists_every_kind_of_key():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    state = {"0.weight": torch.zeros(3, 4), "1.weight": torch.zeros(5, 3), "extra": torch.zeros(1)}
    report = load_state_dict(model, state, source="x.pth")
    assert report.loaded == ["0.weight"]
    assert report.unexpected == ["extra"]
    assert report.mismatched == [("1.weight", (5, 3), (2, 3))]
    assert sorted(report.missing) == ["0.bias", "1.bias"]
    assert set(report.unset) == {"0.bias", "1.bias", "1.weight"}
    table = report.table()
    for word in ("loaded", "missing", "unexpected", "shape mismatch", "1.weight"):
        assert word in table


def test_load_report_table_is_aligned_when_no_names_are_listed():
    model = nn.Linear(2, 2)
    table = load_state_dict(model, model.state_dict(), source="x.pth").table()
    lines = table.splitlines()[1:]
    assert len({len(line) for line in lines}) == 1, table  # every border and row as wide
    assert "| names |" in lines[1] and lines[0].endswith("-------+")


def test_load_pretrained_with_prefix(tmp_path):
    src = nn.Sequential(nn.Linear(2, 2))
    torch.save(
        {"state_dict": {f"module.backbone.{k}": v for k, v in src.state_dict().items()}},
        tmp_path / "p.pth",
    )
    dst = nn.Sequential(nn.Linear(2, 2))
    report = load_pretrained(dst, str(tmp_path / "p.pth"), prefix="backbone.")
    assert not report.unset and torch.equal(dst[0].weight, src[0].weight)
    with pytest.raises(CheckpointError, match="prefix"):
        load_pretrained(dst, str(tmp_path / "p.pth"), prefix="head.")


def test_revise_keys_strips_module_prefix():
    assert list(revise_keys({"module.a.b": 1, "c": 2})) == ["a.b", "c"]


def test_pretrained_that_loads_nothing_is_an_error(tmp_path):
    """A checkpoint of another model (or a wrong prefix) must not leave a silently random
    backbone behind a warning."""
    other = {"state_dict": {"backbone.conv.weight": torch.zeros(2, 2)}}
    path = tmp_path / "other.pth"
    torch.save(other, path)
    with pytest.raises(CheckpointError, match="has no weight for Linear.*another model"):
        load_pretrained(nn.Linear(2, 2), str(path), prefix="backbone.")


def test_ddp_prefix_strip_is_listed_as_remapped():
    model = nn.Linear(2, 2)
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    report = load_state_dict(nn.Linear(2, 2), state, source="ddp.pth", revise=DDP_PREFIX)
    assert not report.unset and not report.unexpected
    assert sorted(report.remapped) == [("module.bias", "bias"), ("module.weight", "weight")]
    row = next(line for line in report.table().splitlines() if "remapped" in line)
    assert "|     2 |" in row and "module.* -> *" in row


class _Renaming(nn.Module):
    """A module whose load hook converts an older key layout, as upstream modules do."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(2, 2)
        self.register_load_state_dict_pre_hook(self._convert)

    @staticmethod
    def _convert(module, state_dict, prefix, *args):
        for leaf in ("weight", "bias"):
            old = f"{prefix}fc.{leaf}"
            if old in state_dict:
                state_dict[f"{prefix}proj.{leaf}"] = state_dict.pop(old)


def test_renames_by_a_module_load_hook_are_listed_as_remapped():
    model = nn.Sequential(_Renaming())
    src = nn.Linear(2, 2)
    state = {"0.fc.weight": src.weight.detach().clone(), "0.fc.bias": src.bias.detach().clone()}
    report = load_state_dict(model, state, source="old.pth")
    assert not report.unset and not report.unexpected
    assert report.remapped == [("0.fc.bias", "0.proj.bias"), ("0.fc.weight", "0.proj.weight")]
    assert torch.equal(model[0].proj.weight, src.weight)
    assert "0.fc.bias -> 0.proj.bias" in report.table()
    # the recording hooks are gone afterwards
    assert len(model[0]._load_state_dict_pre_hooks) == 1


def test_plain_load_reports_nothing_remapped():
    model = nn.Linear(2, 2)
    report = load_state_dict(nn.Linear(2, 2), model.state_dict())
    assert report.remapped == []
    row = next(line for line in report.table().splitlines() if "remapped" in line)
    assert "|     0 |" in row


def test_state_dict_metadata_survives_extraction_and_revision():
    """Per-module versions (``_metadata``) drive upstream's layout conversions; keep them."""
    weights = nn.Linear(2, 2).state_dict()
    assert isinstance(weights, OrderedDict) and hasattr(weights, "_metadata")
    state = extract_state_dict({"state_dict": weights})
    assert state._metadata == weights._metadata
    assert revise_keys(state)._metadata == weights._metadata


class _OtherLayout(nn.Module):
    """The ``remap_state_dict`` protocol (vistra.models.layers.key_remap): keys of another
    layout, here with another shape under a name the model also has."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(3)
        self.conv = nn.Conv1d(3, 3, 1)

    def remap_state_dict(self, state_dict, prefix):
        renamed = []
        if f"{prefix}norm.weight" in state_dict and state_dict[f"{prefix}norm.weight"].ndim == 3:
            for leaf in ("weight", "bias"):  # the other layout: conv under 'norm'
                state_dict[f"{prefix}conv.{leaf}"] = state_dict.pop(f"{prefix}norm.{leaf}")
                renamed.append((f"{prefix}norm.{leaf}", f"{prefix}conv.{leaf}"))
        return renamed


def test_remap_state_dict_runs_before_shapes_are_compared():
    src = nn.Conv1d(3, 3, 1)
    state = {"0.norm.weight": src.weight.detach(), "0.norm.bias": src.bias.detach()}
    model = nn.Sequential(_OtherLayout())
    report = load_state_dict(model, state, source="other.pth")
    assert report.mismatched == [] and report.unexpected == []
    assert report.remapped == [("0.norm.weight", "0.conv.weight"), ("0.norm.bias", "0.conv.bias")]
    assert torch.equal(model[0].conv.weight, src.weight)
    assert "0.norm.weight" in state  # the caller's dict is left as it was
