"""MMSegmentation checkpoints load strictly into vistra and compute the same numbers, and
checkpoints vistra writes load strictly into MMSegmentation and compute the same numbers.

For each model the oracle (tools/upstream/oracle_models.py, one process for all models)
builds the upstream model of the config file, gives every weight and BN statistic a
seeded random value and writes ``upstream.pth``, the input batch and its outputs.

(a) upstream -> vistra: vistra builds the *same config file*; keys and shapes equal the
    checkpoint's; it loads with vistra's loader (PSPNet through ``Runner.load_checkpoint``
    with ``strict``, as ``vistra test CONFIG CKPT`` does) and the report says 0 missing,
    unexpected, mismatched and remapped; the decode-head logits (``mode='tensor'``) and
    the ``mode='predict'`` logits agree to 1e-4 and the predictions are equal wherever
    the upstream logits decide them by more than that (random weights leave a few
    near-ties among Segmenter's 150 normalised class masks). (PointRend
    has no ``'tensor'`` upstream: MMSegmentation's CascadeEncoderDecoder calls
    ``PointHead.forward`` with the wrong arguments in ``mode='tensor'``.)
(b) vistra -> upstream: vistra's checkpoint writer saves the model, the oracle loads it
    strictly into MMSegmentation and the outputs agree again.
"""

from __future__ import annotations

import logging
import time

import pytest
import seg_zoo
import torch
from numeric_support import build_vistra_model, last_tensor, max_abs_diff
from oracle_support import FULL, config_tree, report, run_oracle_json

from vistra.checkpoint import extract_state_dict, load_checkpoint_file, load_state_dict
from vistra.checkpoint import save_checkpoint as vistra_save

# The families of the segmentation zoo (tests/helpers/seg_zoo.py): the default suite takes
# its sample, VISTRA_UPSTREAM_FULL=1 every family, VISTRA_SEG_ONLY=name,... the ones named.
# Each family is compared twice: with its config's own test_cfg (whole-image inference for
# nearly all) and with sliding-window inference (``SLIDE``, windows overlapping, the last
# one clipped to the image), so both of the EncoderDecoder's inference paths are checked.
FAMILIES = seg_zoo.selected(FULL)
SLIDE = dict(crop_size=(32, 32), stride=(20, 24))
MODELS = {name: rel for name, rel in FAMILIES.items()}
MODELS.update({f"{name}@slide": rel for name, rel in FAMILIES.items()})
THROUGH_RUNNER = "pspnet-r50-d8"
# upstream's mode='tensor' fails for these (see above); their '@slide' twins too
NO_TENSOR_MODE = {"pointrend-r50"}
TOLERANCE = 1e-4  # float32
# the oracle's seed before each forward (SegNeXt draws random NMF bases at every forward)
FORWARD_SEED = 0
# Small and not square (a swapped H/W shows); a multiple of 16 for UNet's five stages. A
# dilated ResNet-50 still sees a 4x6 map, Segmenter a 2x3 patch grid.
INPUT_SIZE = (32, 48)
# LR-ASPP pools its deepest map with a fixed 49x49 window (as upstream writes it), which
# needs an input of at least 392 pixels a side; MobileNetV3-small is still fast there.
LARGER = {
    "mobilenet-v3-d8-s-lraspp": dict(size=(400, 448), crop_size=(400, 400), stride=(200, 240))
}
# BEiT's (and MMSegmentation's MAE's) relative position bias is one table per patch grid,
# fixed by ``img_size`` (upstream does not resize it at run time either): the whole-image
# twin is built for the 32x48 input, the '@slide' twin for its 32x32 windows, which also
# means no ``mode='tensor'`` there (it runs the whole input).
GRID_SIZED = {"beit-base-upernet", "mae-base-upernet"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{name: (config path, folder with upstream.pth, input.pt, upstream_out.pt)}."""
    root = tmp_path_factory.mktemp("seg_numeric")
    jobs = {name: (config_tree("mmseg") / rel, root / name) for name, rel in MODELS.items()}
    spec = [
        dict(
            config=str(c),
            outdir=str(d),
            size=list(LARGER.get(_family(name), {}).get("size", INPUT_SIZE)),
            batch=2,
            cfg_options=_options(name),
            **_kinds(name),
        )
        for name, (c, d) in jobs.items()
    ]
    status = _batch("export-batch", spec, root / "export.json")
    failed = {k: v for k, v in status.items() if v != "ok"}
    assert not failed, f"oracle export failed: {failed}"
    return jobs


@pytest.fixture(scope="module")
def vistra_side(exported, tmp_path_factory):
    """Load each upstream checkpoint into vistra, compute, and save vistra's checkpoint."""
    results = {}
    for name, (config, folder) in exported.items():
        start = time.perf_counter()
        if name == THROUGH_RUNNER:
            model, load_report = _load_through_runner(config, folder, tmp_path_factory)
        else:
            model, load_report = _load_with_vistra_loader(config, folder, _options(name))
        inputs = torch.load(folder / "input.pt", weights_only=True)
        outs = _outputs(model, inputs, tensor=_tensor_mode(name))
        ckpt = folder / "vistra.pth"
        vistra_save({"meta": {"source": "vistra"}, "state_dict": model.state_dict()}, ckpt)
        upstream = torch.load(folder / "upstream_out.pt", weights_only=True)
        results[name] = dict(
            keys={k: tuple(v.shape) for k, v in model.state_dict().items()},
            report=load_report,
            diff=max_abs_diff(outs, upstream),
            decided_differently=_decided_differently(outs, upstream),
            seconds=time.perf_counter() - start,
        )
    return results


@pytest.fixture(scope="module")
def upstream_from_vistra(exported, vistra_side, tmp_path_factory):
    """The oracle loads vistra's checkpoints strictly; {name: status}."""
    spec = [
        dict(
            config=str(config),
            checkpoint=str(folder / "vistra.pth"),
            input=str(folder / "input.pt"),
            out=str(folder / "upstream_from_vistra.pt"),
            cfg_options=_options(name),
            **_kinds(name),
        )
        for name, (config, folder) in exported.items()
    ]
    root = tmp_path_factory.mktemp("seg_numeric_run")
    status = _batch("run-batch", spec, root / "run.json")
    return {
        name: status[str(folder / "upstream_from_vistra.pt")]
        for name, (_, folder) in exported.items()
    }


def _family(name: str) -> str:
    return name.split("@")[0]


def _options(name: str) -> list[str]:
    """``--cfg-options`` of a job: sliding-window inference for the '@slide' twins."""
    slide = name.endswith("@slide")
    window = {**SLIDE, **LARGER.get(_family(name), {})}
    grid = []
    if _family(name) in GRID_SIZED:
        size = window["crop_size"] if slide else INPUT_SIZE
        grid = ["model.backbone.img_size=({},{})".format(*size)]
    if not slide:
        return grid
    return grid + [
        "model.test_cfg.mode=slide",
        "model.test_cfg.crop_size=({},{})".format(*window["crop_size"]),
        "model.test_cfg.stride=({},{})".format(*window["stride"]),
    ]


def _kinds(name: str) -> dict:
    """Which outputs the oracle writes for a model (see oracle_models.outputs)."""
    return dict(tensor=_tensor_mode(name), seg_logits=True)


def _tensor_mode(name: str) -> bool:
    """Whether a job compares ``mode='tensor'`` (see NO_TENSOR_MODE and GRID_SIZED)."""
    if _family(name) in GRID_SIZED and name.endswith("@slide"):
        return False
    return _family(name) not in NO_TENSOR_MODE


def _outputs(model, inputs: torch.Tensor, tensor: bool) -> dict[str, torch.Tensor]:
    """vistra's twin of the oracle's outputs: 'tensor', 'pred_sem_seg', 'seg_logits'."""
    from vistra.data.structures import DataSample

    out = {}
    h, w = inputs.shape[-2:]
    meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w))
    with torch.no_grad():
        if tensor:
            torch.manual_seed(FORWARD_SEED)
            out["tensor"] = last_tensor(model(inputs, mode="tensor"))
        samples = [DataSample(metainfo=dict(meta)) for _ in range(inputs.shape[0])]
        torch.manual_seed(FORWARD_SEED)
        preds = model(inputs, samples, mode="predict")
    out["pred_sem_seg"] = torch.stack([p.pred_sem_seg.data for p in preds])
    out["seg_logits"] = torch.stack([p.seg_logits.data for p in preds])
    return out


def _check(diff: dict[str, float]) -> None:
    for key in ("tensor", "seg_logits"):
        assert diff.get(key, 0.0) <= TOLERANCE, diff


def _decided_differently(got: dict, upstream: dict) -> tuple[int, int]:
    """(pixels whose prediction differs where upstream's top-2 logit margin exceeds twice
    the tolerance, pixels whose prediction differs at all)."""
    top2 = upstream["seg_logits"].topk(2, dim=1).values
    decided = (top2[:, 0] - top2[:, 1]) > 2 * TOLERANCE
    differ = got["pred_sem_seg"][:, 0] != upstream["pred_sem_seg"][:, 0]
    return int((differ & decided).sum()), int(differ.sum())


def _batch(command: str, spec: list[dict], path) -> dict[str, str]:
    import json

    path.write_text(json.dumps(spec))
    return run_oracle_json("models", command, path, timeout=900)


def _load_with_vistra_loader(config, folder, options: list[str]):
    from vistra.config.cfg_options import parse_cfg_options

    model = build_vistra_model(config, parse_cfg_options(options) if options else None)
    state = extract_state_dict(load_checkpoint_file(folder / "upstream.pth"))
    return model, load_state_dict(model, state, source="upstream.pth")


def _load_through_runner(config, folder, tmp_path_factory):
    """As ``vistra test CONFIG upstream.pth`` loads: Runner, ``load_from``, strict."""
    from vistra.config import Config
    from vistra.engine.runner import Runner

    cfg = Config.fromfile(str(config))
    cfg.work_dir = str(tmp_path_factory.mktemp("runner"))
    cfg.launcher = "none"
    cfg.load_from = str(folder / "upstream.pth")
    cfg.model.pretrained = None  # no download; every weight comes from load_from
    runner = Runner.from_config(cfg, purpose=None)  # weights only: the data is not here
    try:
        load_report = runner.load_checkpoint(cfg.load_from, strict=True)
    finally:
        logging.getLogger("vistra").handlers.clear()
    from numeric_support import _revert_sync_bn

    model = _revert_sync_bn(runner.model).eval()
    return model, load_report


@pytest.mark.parametrize("name", list(MODELS))
def test_upstream_checkpoint_loads_strictly_into_vistra(name, exported, vistra_side):
    side = vistra_side[name]
    ckpt = extract_state_dict(load_checkpoint_file(exported[name][1] / "upstream.pth"))
    assert side["keys"] == {k: tuple(v.shape) for k, v in ckpt.items()}
    rep = side["report"]
    assert (rep.missing, rep.unexpected, rep.mismatched, rep.remapped) == ([], [], [], [])
    assert len(rep.loaded) == len(ckpt)


@pytest.mark.parametrize("name", list(MODELS))
def test_vistra_computes_upstream_outputs(name, vistra_side):
    diff, (decided, ties) = vistra_side[name]["diff"], vistra_side[name]["decided_differently"]
    report(
        f"seg numeric {name}: upstream->vistra max abs diff {_fmt(diff)}; "
        f"{ties} pixel(s) predicted differently, all at near-ties"
        if ties and not decided
        else f"seg numeric {name}: upstream->vistra max abs diff {_fmt(diff)}"
    )
    _check(diff)
    assert decided == 0, f"{decided} decided pixels predicted differently ({diff})"


@pytest.mark.parametrize("name", list(MODELS))
def test_vistra_checkpoint_loads_strictly_into_upstream(name, exported, upstream_from_vistra):
    assert upstream_from_vistra[name] == "ok", upstream_from_vistra[name]
    folder = exported[name][1]
    got = torch.load(folder / "upstream_from_vistra.pt", weights_only=True)
    diff = max_abs_diff(got, torch.load(folder / "upstream_out.pt", weights_only=True))
    report(f"seg numeric {name}: vistra->upstream max abs diff {_fmt(diff)}")
    _check(diff)
    assert diff["pred_sem_seg"] == 0, diff  # the same weights in the same code


def _fmt(diff: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2e}" for k, v in diff.items())
