"""The bad-input cases of ``tests/e2e/test_bad_inputs.py`` and ``docs/*/errors.md``.

Each :class:`Case` is one mistake a user makes: a command (``train``, ``test``,
``print-config``) on a config written by :func:`prepare` (the tiny classifier of
``e2e_support.TINY_CLS``, with the case's extra lines), its flags, maybe a bad data folder or
checkpoint file, and the pieces the one ``error:`` line must hold.

Every command runs in the case's own folder and names its files relative to it.
Placeholders in ``args`` and ``config``: ``{work}`` the work dir (``work_dir``, a copy of a
real run's: ``epoch_1.pth``, ``last_checkpoint``, a sentinel file), ``{ckpt}`` that run's
``epoch_1.pth``, ``{data}`` the CustomDataset folder that ``data_folder`` writes.

``python tests/helpers/bad_inputs.py`` runs every case and rewrites the tables of
``docs/en/errors.md`` and ``docs/zh_cn/errors.md`` with the messages vistra prints now.
"""

from __future__ import annotations

import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from e2e_support import REPO, TINY_CLS, Result, run_cli

NUM_CLASSES = 3
MAX_LINE = 400  # characters in an error line, ``error: `` included
BASE_NAME = "tiny.py"  # the good config every case config builds on (``_base_``)
SENTINEL = "notes.txt"
WORK = "work_dir"  # the pre-existing work dir, in each case folder


@dataclass(frozen=True)
class Case:
    name: str
    group: str  # config | flag | data | checkpoint
    command: str  # train | test | print-config
    args: tuple[str, ...]  # after the command; {placeholders} filled by prepare()
    pieces: tuple[str, ...]  # each must be in the error line
    fix: str  # one sentence for the docs (English)
    fix_zh: str  # the same in Chinese
    config: str = ""  # lines of the case's config (after ``_base_ = ['tiny.py']``)
    setup: str = ""  # a function of this module that makes bad files in the case folder
    raw: bool = False  # ``config`` is the whole file (no ``_base_`` line added)
    check: bool = True  # ``vistra check`` with the same arguments prints the same line
    check_data: bool = False  # ``vistra check --data`` finds it (an error line with the pieces)
    typed: str = ""  # what the user typed, for the docs (default: the arguments)
    typed_zh: str = ""  # the same in Chinese, where ``typed`` has words
    note: str = ""  # why check=False, or what else to know


def _cfg(name: str = "case.py") -> str:
    return name


def train(*flags: str, config: str = _cfg()) -> tuple[str, ...]:
    return ("train", config, "--work-dir", "{work}", *flags)


def test(ckpt: str, *flags: str, config: str = _cfg()) -> tuple[str, ...]:
    return ("test", config, ckpt, "--work-dir", "{work}", *flags)


def opts(*items: str) -> tuple[str, ...]:
    return ("--cfg-options", *items)


# A CustomDataset on an on-disk folder (train/<class>/*.png + meta/train.txt) for train
# and val; the data cases break one thing in it.
CUSTOM_DATA = """
train_dataloader = dict(dataset=dict(_delete_=True, type='CustomDataset', data_root='{root}',
    data_prefix='train', {ann}pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')]))
val_dataloader = dict(dataset=dict(_delete_=True, type='CustomDataset', data_root='{data}',
    data_prefix='val', pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')]))
test_dataloader = val_dataloader
"""


def custom_data(root: str = "{data}", ann: str = "") -> str:
    ann_arg = f"ann_file='{ann}', " if ann else ""
    return CUSTOM_DATA.format(root=root, ann=ann_arg, data="{data}")


CASES: list[Case] = [
    # ------------------------------------------------------------------ configs
    Case("config-file-missing", "config", "train", train(config="no_such_config.py"),
         ("no_such_config.py", "not found"),
         "Check the path; configs are looked up relative to the current folder.",
         "检查路径；配置文件路径相对于当前目录。"),
    Case("config-syntax-error", "config", "train", train(),
         ("case.py:1", "never closed"),
         "Fix the Python syntax at the line named (here an unclosed bracket).",
         "按报错所指的行修正 Python 语法（此处是未闭合的括号）。",
         config="model = dict(head=dict(num_classes=3)\noptim_wrapper = dict()\n", raw=True,
         typed="model = dict(head=dict(num_classes=3)  (no closing bracket)",
         typed_zh="model = dict(head=dict(num_classes=3)（缺右括号）"),
    Case("base-file-missing", "config", "train", train(),
         ("no_such_base.py",),
         "Point `_base_` at an existing file (relative to the config's folder).",
         "让 `_base_` 指向存在的文件（路径相对于该配置所在目录）。",
         config="_base_ = ['./tiny.py', './no_such_base.py']\n", raw=True,
         typed="_base_ = ['./tiny.py', './no_such_base.py']"),
    Case("base-placeholder-missing", "config", "train", train(),
         ("_base_.no_such_key",),
         "Use a variable the base config defines (`vistra print-config BASE` lists them).",
         "改用 base 配置里定义了的变量（`vistra print-config BASE` 可列出）。",
         config="train_dataloader = dict(batch_size={{_base_.no_such_key}})\n",
         typed="batch_size={{_base_.no_such_key}}"),
    Case("cfg-options-no-equals", "config", "train", train(*opts("model.backbone.depth")),
         ("model.backbone.depth", "KEY=VALUE"),
         "Write each option as KEY=VALUE.", "每个选项写成 KEY=VALUE。"),
    Case("cfg-options-unbalanced", "config", "train",
         train(*opts("model.backbone.out_indices=(3,")),
         ("model.backbone.out_indices=(3,",),
         "Close the bracket of a list/tuple value.", "补全列表/元组值的括号。"),
    Case("model-type-unknown", "config", "train", train(*opts("model.backbone.type=ResNet_CIFARR")),
         ("model.backbone", "ResNet_CIFARR", "ResNet_CIFAR"),
         "Use a registered type name; the message suggests the closest ones.",
         "使用已注册的类型名；报错给出最接近的名字。"),
    Case("backbone-arg-misspelt", "config", "train", train(*opts("model.backbone.depht=18")),
         ("model.backbone.depht", "depth"),
         "Spell the argument as the constructor does (ResNet_CIFAR passes **kwargs on to ResNet).",
         "按构造函数的参数名拼写（ResNet_CIFAR 把 **kwargs 传给 ResNet）。"),
    Case("head-arg-misspelt", "config", "train", train(*opts("model.head.num_clases=3")),
         ("model.head.num_clases", "num_classes"),
         "Spell the nested argument correctly; the message names its full key path.",
         "正确拼写嵌套参数；报错给出完整的键路径。"),
    Case("dataset-arg-misspelt", "config", "train",
         train(*opts("train_dataloader.dataset.num_sample=24")),
         ("train_dataloader.dataset.num_sample", "num_samples"),
         "Spell the dataset argument correctly (ShapesDataset passes **kwargs to BaseDataset).",
         "正确拼写数据集参数（ShapesDataset 把 **kwargs 传给 BaseDataset）。"),
    Case("backbone-depth-invalid", "config", "train", train(*opts("model.backbone.depth=17")),
         ("model.backbone.depth", "17", "50"),
         "Pick a depth from the arch table listed in the message.",
         "从报错列出的结构表中选择一个 depth。"),
    Case("max-epochs-not-a-number", "config", "train", train(*opts("train_cfg.max_epochs=abc")),
         ("train_cfg.max_epochs", "abc"),
         "Give max_epochs as a positive integer.", "max_epochs 需是正整数。"),
    Case("batch-size-zero", "config", "train", train(*opts("train_dataloader.batch_size=0")),
         ("train_dataloader.batch_size", "0"),
         "Give batch_size as a positive integer.", "batch_size 需是正整数。"),
    Case("lr-negative", "config", "train", train(*opts("optim_wrapper.optimizer.lr=-0.1")),
         ("optim_wrapper.optimizer", "-0.1"),
         "Give a non-negative learning rate.", "学习率不能为负。"),
    Case("optimizer-unknown", "config", "train", train(*opts("optim_wrapper.optimizer.type=SGDD")),
         ("optim_wrapper.optimizer", "SGDD", "SGD"),
         "Use a torch.optim optimizer name (or a registered one).",
         "使用 torch.optim 中的优化器名（或已注册的优化器）。"),
    Case("scheduler-unknown", "config", "train", train(*opts("param_scheduler.1.type=CosineLR")),
         ("param_scheduler", "CosineLR", "CosineAnnealingLR"),
         "Use a registered scheduler name (LinearLR, CosineAnnealingLR, PolyLR, MultiStepLR, ...).",
         "使用已注册的调度器名（LinearLR、CosineAnnealingLR、PolyLR、MultiStepLR 等）。"),
    Case("dataloader-key-unknown", "config", "train", train(*opts("train_dataloader.batchsize=4")),
         ("train_dataloader", "batchsize", "batch_size"),
         "Spell the dataloader key correctly.", "正确拼写 dataloader 的键。"),
    Case("transform-unknown", "config", "train",
         train(*opts("train_dataloader.dataset.pipeline.0.type=RandomFlp")),
         ("RandomFlp", "RandomFlip"),
         "Use a registered transform name.", "使用已注册的数据变换名。"),
    Case("val-triple-incomplete", "config", "train", train(*opts("val_evaluator=None")),
         ("val_evaluator", "val_dataloader"),
         "Set val_dataloader, val_cfg and val_evaluator together, or none of them (or --no-validate).",
         "val_dataloader、val_cfg、val_evaluator 要么都设置，要么都不设（或用 --no-validate）。"),
    Case("num-classes-head-vs-preprocessor", "config", "train",
         train(*opts("data_preprocessor.num_classes=5")),
         ("data_preprocessor.num_classes", "5", "model.head.num_classes"),
         "Give the head and the data preprocessor the same num_classes (Mixup one-hot encodes "
         "the labels with it).",
         "让 head 和 data_preprocessor 的 num_classes 一致（Mixup 用它对标签做 one-hot）。",
         config="model = dict(train_cfg=dict(augments=dict(type='Mixup', alpha=0.8)))\n",
         typed="data_preprocessor.num_classes=5 with Mixup (head: 3)",
         typed_zh="data_preprocessor.num_classes=5，并使用 Mixup（head 为 3 类）"),
    Case("num-classes-below-labels", "config", "train",
         train(*opts("model.head.num_classes=2", "data_preprocessor.num_classes=2")),
         ("model.head.num_classes", "2", "3"),
         "Set num_classes to the number of classes of the dataset.",
         "把 num_classes 设为数据集的类别数。"),
    Case("metric-unknown", "config", "train", train(*opts("val_evaluator.type=Acuracy")),
         ("val_evaluator", "Acuracy", "Accuracy"),
         "Use a registered metric type.", "使用已注册的评测指标类型。"),
    Case("hook-unknown", "config", "train",
         train(*opts("default_hooks.logger.type=LogerHook")),
         ("default_hooks.logger", "LogerHook", "LoggerHook"),
         "Use a registered hook type.", "使用已注册的钩子类型。"),
    Case("custom-imports-missing", "config", "train", train(),
         ("custom_imports", "no_such_plugin"),
         "Install the module or put its folder on PYTHONPATH (allow_failed_imports=True skips it).",
         "安装该模块或把其目录加入 PYTHONPATH（allow_failed_imports=True 可跳过）。",
         config="custom_imports = dict(imports=['no_such_plugin'])\n",
         typed="custom_imports = dict(imports=['no_such_plugin'])"),
    Case("print-config-file-missing", "config", "print-config", ("print-config", "nope.py"),
         ("nope.py", "not found"),
         "Check the path of the config.", "检查配置文件路径。"),
    Case("print-config-syntax-error", "config", "print-config", ("print-config", _cfg()),
         ("case.py:1", "unmatched"),
         "Fix the Python syntax at the line named.", "按报错所指的行修正 Python 语法。",
         config="optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.1)))\n", raw=True,
         typed="optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.1)))"),
    Case("print-config-bad-option", "config", "print-config",
         ("print-config", _cfg(), "--cfg-options", "model.backbone..depth=50"),
         ("model.backbone..depth",),
         "Write dotted keys without empty parts.", "点分隔的键中不能有空段。"),
    # -------------------------------------------------------------------- flags
    Case("flag-unknown", "flag", "train", train("--work-dri", "w2"),
         ("--work-dri", "--work-dir"),
         "Use one of the flags of `vistra train -h`; the message suggests the closest.",
         "使用 `vistra train -h` 列出的参数；报错给出最接近的参数。"),
    Case("flag-missing-value", "flag", "train", train("--seed", "abc"),
         ("--seed", "abc"),
         "Give --seed an integer.", "--seed 需给整数。"),
    Case("launcher-bogus", "flag", "train", train("--launcher", "bogus"),
         ("bogus", "pytorch"),
         "Use --launcher none, pytorch, slurm or mpi.", "--launcher 只能是 none、pytorch、slurm 或 mpi。"),
    Case("work-dir-is-a-file", "flag", "train",
         ("train", _cfg(), "--work-dir", "{work}/notes.txt"),
         ("notes.txt",),
         "Point --work-dir at a folder (or a path that does not exist yet).",
         "让 --work-dir 指向目录（或尚不存在的路径）。"),
    Case("resume-path-missing", "flag", "train", train("--resume", "nope.pth"),
         ("nope.pth",),
         "Give --resume an existing checkpoint, or no path to resume from the work dir's latest.",
         "--resume 给出存在的 checkpoint，或不带路径以从工作目录最新的 checkpoint 恢复。"),
    Case("load-from-missing", "flag", "train", train("--load-from", "nope.pth"),
         ("nope.pth",),
         "Give --load-from an existing checkpoint file or URL.",
         "--load-from 需给出存在的 checkpoint 文件或 URL。"),
    Case("load-from-and-resume", "flag", "train",
         train("--load-from", "{ckpt}", "--resume", "{ckpt}"),
         ("--load-from", "--resume"),
         "Give one of them: --resume PATH already loads PATH.",
         "二者只给一个：--resume PATH 已经会加载 PATH。"),
    Case("amp-without-optim-wrapper", "flag", "train", train("--amp"),
         ("--amp", "optim_wrapper"),
         "Add an optim_wrapper to the config, or drop --amp.",
         "在配置中加入 optim_wrapper，或去掉 --amp。",
         config="optim_wrapper = None\n", typed="--amp  (config: optim_wrapper = None)",
         typed_zh="--amp（配置中 optim_wrapper = None）"),
    Case("auto-scale-lr-without-base", "flag", "train", train("--auto-scale-lr"),
         ("--auto-scale-lr", "auto_scale_lr"),
         "Add auto_scale_lr = dict(base_batch_size=N) to the config, or drop the flag.",
         "在配置中加入 auto_scale_lr = dict(base_batch_size=N)，或去掉该参数。",
         config="auto_scale_lr = None\n", typed="--auto-scale-lr  (config: auto_scale_lr = None)",
         typed_zh="--auto-scale-lr（配置中 auto_scale_lr = None）"),
    Case("test-without-checkpoint", "flag", "test", ("test", _cfg(), "--work-dir", "{work}"),
         ("checkpoint",),
         "Give the checkpoint after the config: vistra test CONFIG CHECKPOINT.",
         "在配置之后给出 checkpoint：vistra test CONFIG CHECKPOINT。", check=False,
         note="`vistra check` takes the flags of `vistra train`, not a checkpoint"),
    Case("test-out-bad-extension", "flag", "test", test("{ckpt}", "--out", "preds.txt"),
         ("--out", ".txt"),
         "Use --out with .pkl/.json/.yaml, or a folder for per-image PNGs.",
         "--out 用 .pkl/.json/.yaml 文件，或用目录保存逐图 PNG。", check=False,
         note="a `vistra test` flag"),
    # --------------------------------------------------------------------- data
    Case("data-root-missing", "data", "train", train(),
         ("train_dataloader.dataset", "no_data"),
         "Point data_root at the dataset folder.", "让 data_root 指向数据集目录。",
         config=custom_data(root="no_data"), setup="data_folder",
         typed="data_root='no_data' (no such folder)",
         typed_zh="data_root='no_data'（目录不存在）"),
    Case("ann-file-missing", "data", "train", train(),
         ("train_dataloader.dataset", "meta/nope.txt"),
         "Point ann_file at the annotation list (relative to data_root).",
         "让 ann_file 指向标注列表（相对 data_root）。",
         config=custom_data(ann="meta/nope.txt"), setup="data_folder",
         typed="ann_file='meta/nope.txt' (no such file)",
         typed_zh="ann_file='meta/nope.txt'（文件不存在）"),
    Case("image-folder-empty", "data", "train", train(),
         ("train_dataloader.dataset", "found no image", "empty"),
         "Put the images under data_root/data_prefix/<class>/, or fix data_prefix.",
         "把图片放到 data_root/data_prefix/<类别>/ 下，或修正 data_prefix。",
         config=custom_data(root="empty"), setup="empty_folder",
         typed="data_root='empty' (class folders without images)",
         typed_zh="data_root='empty'（类别目录中没有图片）",
         check=False, check_data=True,
         note="found when the dataset is built (`vistra check --data` builds it)"),
    Case("ann-line-unparsable", "data", "train", train(),
         ("bad_line.txt:2", "cannot parse"),
         "Write one '<path> <integer label>' per line.", "每行写成 '<路径> <整数标签>'。",
         config=custom_data(ann="meta/bad_line.txt"), setup="data_folder",
         typed="meta/bad_line.txt line 2: 'square/000001.png circle'",
         typed_zh="meta/bad_line.txt 第 2 行：'square/000001.png circle'",
         check=False, check_data=True,
         note="found when the dataset is built (`vistra check --data` builds it)"),
    Case("ann-label-out-of-range", "data", "train", train(),
         ("label 7", "num_classes", "circle/000002.png"),
         "Fix the label, or raise num_classes (head, data_preprocessor) to the number of classes.",
         "修正标签，或把 num_classes（head、data_preprocessor）调到类别数。",
         config=custom_data(ann="meta/label_7.txt"), setup="data_folder", check=False,
         check_data=True, note="labels are read with the data: `vistra check --data` finds it",
         typed="meta/label_7.txt line 3: 'circle/000002.png 7' (3 classes)",
         typed_zh="meta/label_7.txt 第 3 行：'circle/000002.png 7'（共 3 类）"),
    Case("class-folders-vs-metainfo", "data", "train",
         train(*opts("train_dataloader.dataset.metainfo.classes=[a,b]")),
         ("3 class folders", "2 classes"),
         "Give metainfo.classes one name per class folder (or leave it out).",
         "metainfo.classes 的名字数要与类别目录数相同（或不设）。",
         config=custom_data(), setup="data_folder",
         check=False, check_data=True,
         note="found when the dataset is built (`vistra check --data` builds it)"),
    Case("image-file-missing", "data", "train", train(),
         ("000002.png",),
         "Restore the file or drop its line from the annotation list.",
         "恢复该文件，或从标注列表删去这一行。",
         config=custom_data(ann="meta/train.txt"), setup="image_missing", check=False,
         check_data=True,
         typed="train/circle/000002.png deleted after meta/train.txt was written",
         typed_zh="写好 meta/train.txt 后删除了 train/circle/000002.png",
         note="images are read only when training (`vistra check --data` reads them all)"),
    Case("image-corrupt", "data", "train", train(),
         ("000002.png",),
         "Replace the file, or set skip_corrupt=True on the dataset to skip such samples.",
         "替换该文件，或在数据集上设 skip_corrupt=True 跳过这类样本。",
         config=custom_data(), setup="image_corrupt", check=False, check_data=True,
         typed="train/circle/000002.png holds 40 bytes of garbage",
         typed_zh="train/circle/000002.png 只有 40 字节的乱码",
         note="images are read only when training (`vistra check --data` reads them all)"),
    Case("loss-nan", "data", "train", train(*opts("optim_wrapper.optimizer.lr=1e30")),
         ("train iter", "nan"),
         "Lower the learning rate (or clip gradients: optim_wrapper.clip_grad), check the data.",
         "降低学习率（或裁剪梯度：optim_wrapper.clip_grad），并检查数据。",
         check=False, note="a runtime fault"),
    Case("head-in-channels-mismatch", "data", "train", train(*opts("model.head.in_channels=32")),
         ("train iter", "in_channels"),
         "Set model.head.in_channels to the neck/backbone output width (here 64).",
         "把 model.head.in_channels 设为 neck/backbone 的输出通道数（此处 64）。",
         check=False, note="a runtime fault: shapes meet only in the first forward"),
    # -------------------------------------------------------------- checkpoints
    Case("test-checkpoint-missing", "checkpoint", "test", test("nope.pth"),
         ("nope.pth", "not found"),
         "Check the checkpoint path.", "检查 checkpoint 路径。", check=False,
         note="`vistra check` takes no checkpoint"),
    Case("test-checkpoint-is-a-folder", "checkpoint", "test", test("{work}"),
         ("work_dir", "folder", "epoch_1.pth"),
         "Give the checkpoint file, e.g. work_dir/epoch_1.pth.",
         "给出 checkpoint 文件，如 work_dir/epoch_1.pth。", check=False,
         note="`vistra check` takes no checkpoint"),
    Case("test-not-a-checkpoint", "checkpoint", "test", test("text.pth"),
         ("text.pth",),
         "Give a file written by torch.save (a vistra/OpenMMLab checkpoint).",
         "给出 torch.save 写出的文件（vistra/OpenMMLab checkpoint）。",
         setup="bad_checkpoints", check=False, note="checkpoints are read when the run starts",
         typed="a text file named text.pth",
         typed_zh="名为 text.pth 的文本文件"),
    Case("test-checkpoint-truncated", "checkpoint", "test", test("truncated.pth"),
         ("truncated.pth",),
         "Copy the checkpoint again; the file was cut short.",
         "重新复制 checkpoint；该文件不完整。",
         setup="bad_checkpoints", check=False, note="checkpoints are read when the run starts",
         typed="the first half of epoch_1.pth",
         typed_zh="epoch_1.pth 的前一半"),
    Case("test-checkpoint-other-model", "checkpoint", "test", test("other_model.pth"),
         ("other_model.pth", "unset"),
         "Test with a checkpoint of this model (the load table lists the keys left unset).",
         "使用本模型的 checkpoint（加载表列出未被设置的权重）。",
         setup="bad_checkpoints", check=False, note="checkpoints are read when the run starts",
         typed="a checkpoint whose keys are all of another model",
         typed_zh="键全部属于另一个模型的 checkpoint"),
    Case("test-checkpoint-unsafe-pickle", "checkpoint", "test", test("unsafe.pth"),
         ("unsafe.pth", "VISTRA_ALLOW_UNSAFE_LOAD"),
         "Only if you trust the file: VISTRA_ALLOW_UNSAFE_LOAD=1; better re-save it as tensors.",
         "仅在信任该文件时设 VISTRA_ALLOW_UNSAFE_LOAD=1；更好的做法是重新保存为纯张量。",
         setup="bad_checkpoints", check=False, note="checkpoints are read when the run starts",
         typed="a checkpoint pickling a Python object (not weights-only loadable)",
         typed_zh="pickle 了 Python 对象的 checkpoint（无法以 weights_only 加载）"),
    Case("test-checkpoint-shape-mismatch", "checkpoint", "test", test("shapes.pth"),
         ("shapes.pth", "head.fc.weight"),
         "Use a checkpoint of the same num_classes, or load it with the head left out.",
         "使用相同 num_classes 的 checkpoint，或加载时排除 head。",
         setup="bad_checkpoints", check=False, note="checkpoints are read when the run starts",
         typed="head.fc.weight of shape (5, 64) for a 3-class head",
         typed_zh="head.fc.weight 形状为 (5, 64)，而 head 为 3 类"),
    Case("resume-other-model", "checkpoint", "train", train("--resume", "shapes.pth"),
         ("shapes.pth", "head.fc.weight"),
         "Resume from a checkpoint of this very config.",
         "从同一配置训练出的 checkpoint 恢复。",
         setup="bad_checkpoints", check=False, note="checkpoints are read when the run starts"),
]  # fmt: skip


# ------------------------------------------------------------------------ set-ups
def data_folder(tmp: Path, ckpt: Path) -> None:
    """``data``: train/val class folders of PNGs plus meta/*.txt, some broken lists."""
    from vistra.data.datasets.shapes import write_shapes_dataset

    data = tmp / "data"
    write_shapes_dataset(data, "cls", num_train=8, num_val=4, img_size=32, num_classes=NUM_CLASSES)
    lines = (data / "meta" / "train.txt").read_text().splitlines()
    bad = list(lines)
    bad[1] = f"{lines[1].rsplit(' ', 1)[0].split('/')[0]}/000001.png circle"
    (data / "meta" / "bad_line.txt").write_text("\n".join(bad) + "\n")
    out_of_range = list(lines)
    out_of_range[2] = f"{lines[2].rsplit(' ', 1)[0]} 7"
    (data / "meta" / "label_7.txt").write_text("\n".join(out_of_range) + "\n")


def empty_folder(tmp: Path, ckpt: Path) -> None:
    data_folder(tmp, ckpt)
    for name in ("circle", "square", "triangle"):
        (tmp / "empty" / "train" / name).mkdir(parents=True)


def _third_train_image(tmp: Path) -> Path:
    rel = (tmp / "data" / "meta" / "train.txt").read_text().splitlines()[2].rsplit(" ", 1)[0]
    return tmp / "data" / "train" / rel


def image_missing(tmp: Path, ckpt: Path) -> None:
    data_folder(tmp, ckpt)
    _third_train_image(tmp).unlink()  # meta/train.txt still lists it


def image_corrupt(tmp: Path, ckpt: Path) -> None:
    data_folder(tmp, ckpt)
    _third_train_image(tmp).write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage!" * 4)


def bad_checkpoints(tmp: Path, ckpt: Path) -> None:
    import fractions

    import torch

    (tmp / "text.pth").write_text("these are my notes, not a checkpoint\n")
    raw = ckpt.read_bytes()
    (tmp / "truncated.pth").write_bytes(raw[: len(raw) // 2])
    good = torch.load(ckpt, map_location="cpu", weights_only=True)
    other = {f"encoder.layer{i}.weight": torch.zeros(4, 4) for i in range(3)}
    torch.save({"meta": {}, "state_dict": other}, tmp / "other_model.pth")
    torch.save({**good, "meta": {"ratio": fractions.Fraction(1, 3)}}, tmp / "unsafe.pth")
    shapes = dict(good, state_dict=dict(good["state_dict"]))
    shapes["state_dict"]["head.fc.weight"] = torch.zeros(5, 64)
    shapes["state_dict"]["head.fc.bias"] = torch.zeros(5)
    torch.save(shapes, tmp / "shapes.pth")


SETUPS = {f.__name__: f for f in (data_folder, empty_folder, image_missing, image_corrupt,
                                   bad_checkpoints)}  # fmt: skip


# ------------------------------------------------------------------------ running
def base_config() -> str:
    return TINY_CLS.format(num_classes=NUM_CLASSES, max_epochs=1, num_workers=0)


def prepare(case: Case, tmp: Path, work_src: Path) -> tuple[list[str], Path]:
    """Write the case's files under ``tmp``; its arguments and its (pre-existing) work dir."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / BASE_NAME).write_text(base_config())
    work = tmp / WORK
    shutil.copytree(work_src, work)  # copy2: bytes and mtimes as they were
    if case.setup:
        SETUPS[case.setup](tmp, work / "epoch_1.pth")
    # relative to the case folder, the commands' cwd: messages read as a user's would
    fill = dict(work=WORK, ckpt=f"{WORK}/epoch_1.pth", data="data")
    text = case.config if case.raw else f"_base_ = ['./{BASE_NAME}']\n{case.config}"
    (tmp / "case.py").write_text(_fill(text, fill))
    return [_fill(a, fill) for a in case.args], work


def _fill(text: str, values: dict[str, str]) -> str:
    """``{work}``-style placeholders only (configs hold other braces: ``{{_base_.x}}``)."""
    text = text.replace("", "")
    return re.sub(r"\{(work|ckpt|data)\}", lambda m: values[m.group(1)], text)


def check_args(args: list[str]) -> list[str]:
    """``vistra check`` with the arguments of the case's ``train``/``print-config``."""
    return ["check", *args[1:]]


def same_words(line: str, tmp: Path, command: str) -> str:
    """An error line with the program's name and the case folder taken out: argparse names
    the program (``vistra check: ...``), and print-config spells the config's path in full."""
    return line.replace(f"vistra {command}", "vistra").replace(f"{tmp}/", "")


def error_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def make_good_run(root: Path) -> Path:
    """A finished one-epoch run: the work dir every case starts from (plus a sentinel)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / BASE_NAME).write_text(base_config())
    work = root / WORK
    result = run_cli("train", root / BASE_NAME, "--work-dir", work, cwd=root)
    assert result.returncode == 0, result.output[-3000:]
    (work / SENTINEL).write_text("results I care about\n")
    return work


# ------------------------------------------------------------------------ the docs
DOCS = {"en": REPO / "docs" / "en" / "errors.md", "zh_cn": REPO / "docs" / "zh_cn" / "errors.md"}
START, END = "<!-- cases:start -->", "<!-- cases:end -->"
HEADERS = {
    "en": "| case | what you typed | the message | the fix |",
    "zh_cn": "| 情形 | 输入 | 报错信息 | 解决办法 |",
}


def typed_text(case: Case, lang: str = "en") -> str:
    if lang == "zh_cn" and case.typed_zh:
        return case.typed_zh
    if case.typed:
        return case.typed
    args = list(case.args)
    if "{work}" in args and args[args.index("{work}") - 1] == "--work-dir":
        del args[args.index("{work}") - 1 : args.index("{work}") + 1]
    return "vistra " + _fill(
        " ".join(args), dict(work=WORK, ckpt=f"{WORK}/epoch_1.pth", data="data")
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


GAP = {"en": "**to be improved:** {}", "zh_cn": "**待改进：** {}"}


def table(lang: str, messages: dict[str, str], gaps: dict[str, list[str]]) -> str:
    """The rows of every case; a message that falls short of the test says how."""
    rows = [HEADERS[lang], "| --- | --- | --- | --- |"]
    for case in CASES:
        fix = case.fix if lang == "en" else case.fix_zh
        message = f"`{_cell(messages.get(case.name, '(not run)'))}`"
        if gaps.get(case.name):
            message += "<br>" + GAP[lang].format(_cell("; ".join(gaps[case.name])))
        rows.append(
            f"| `{case.name}` | `{_cell(typed_text(case, lang))}` | {message} | {_cell(fix)} |"
        )
    return "\n".join(rows)


def write_docs(messages: dict[str, str], gaps: dict[str, list[str]]) -> None:
    for lang, path in DOCS.items():
        text = path.read_text(encoding="utf-8")
        head, _, rest = text.partition(START)
        _, _, tail = rest.partition(END)
        body = table(lang, messages, gaps)
        path.write_text(f"{head}{START}\n{body}\n{END}{tail}", encoding="utf-8")


def shortcomings(case: Case, result: Result) -> list[str]:
    """What the test would find wrong with a run (the work dir aside), for the docs."""
    errors = error_lines(result)
    found = []
    if result.returncode == 0:
        found.append("exit 0")
    if "Traceback" in result.stdout + result.stderr:
        found.append("traceback")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if not 1 <= len(errors) <= 2:
        found.append(f"{len(errors)} error lines")
    elif lines[-1] not in errors:
        found.append("the error line is not the last line")
    if any(len(line) > MAX_LINE for line in errors):
        found.append(f"line over {MAX_LINE} characters")
    missing = [p for p in case.pieces if p not in "\n".join(errors)]
    if missing:
        found.append("does not name " + ", ".join(repr(p) for p in missing))
    return found


def shown_message(result: Result, tmp: Path) -> str:
    """The error line as a reader would see it (the case folder's path taken out)."""
    errors = error_lines(result)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    line = errors[-1] if errors else (lines[-1] if lines else f"(exit {result.returncode})")
    return line.replace(f"{tmp}/", "").replace(str(tmp), ".")


def main() -> int:
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        good = make_good_run(root / "good")
        messages, gaps = {}, {}
        for case in CASES:
            tmp = root / case.name
            args, _ = prepare(case, tmp, good)
            result = run_cli(*args, cwd=tmp)
            messages[case.name] = shown_message(result, tmp)
            gaps[case.name] = shortcomings(case, result)
            print(f"{case.name}: {messages[case.name]}", flush=True)
            if gaps[case.name]:
                print(f"    to be improved: {'; '.join(gaps[case.name])}", flush=True)
    write_docs(messages, gaps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
