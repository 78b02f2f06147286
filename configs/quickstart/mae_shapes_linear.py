# Quickstart: linear probe of the tiny ViT pre-trained by configs/quickstart/mae_shapes.py.
# The backbone is frozen; only a BatchNorm neck and a linear head learn. Point it at the
# pre-training checkpoint with
#   --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/quickstart/mae_shapes/epoch_20.pth
# and compare with a randomly initialised backbone (model.backbone.init_cfg=None).
_base_ = ['../_base_/default_runtime.py']

img_size = 64
num_classes = 6
arch = dict(embed_dims=96, num_layers=4, num_heads=3, feedforward_channels=384)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='VisionTransformer',
        arch=arch,
        img_size=img_size,
        patch_size=8,
        frozen_stages=4,
        out_type='avg_featmap',
        final_norm=True,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='work_dirs/quickstart/mae_shapes/epoch_20.pth',
            prefix='backbone.')),
    neck=dict(type='ClsBatchNormNeck', input_features=96),
    head=dict(
        type='VisionTransformerClsHead',
        num_classes=num_classes,
        in_channels=96,
        loss=dict(type='CrossEntropyLoss'),
        init_cfg=[dict(type='TruncNormal', layer='Linear', std=0.01)]),
)

data_preprocessor = dict(
    num_classes=num_classes,
    mean=[127.5, 127.5, 127.5],
    std=[64.0, 64.0, 64.0],
    to_rgb=True)

train_pipeline = [
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='PackInputs')]

train_dataloader = dict(
    batch_size=64,
    num_workers=0,
    dataset=dict(type='ShapesDataset', num_samples=6000, num_classes=num_classes,
                 img_size=img_size, split='train', pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=200,
    num_workers=0,
    dataset=dict(type='ShapesDataset', num_samples=600, num_classes=num_classes,
                 img_size=img_size, split='val', pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, ))
# held-out test split (different seeds from train and val)
test_dataloader = dict(
    batch_size=200,
    num_workers=0,
    dataset=dict(type='ShapesDataset', num_samples=1000, num_classes=num_classes,
                 img_size=img_size, split='test', pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
test_evaluator = val_evaluator

# MMPretrain's MAE linear probe uses LARS with no weight decay
optim_wrapper = dict(optimizer=dict(type='LARS', lr=1.6, weight_decay=0.0, momentum=0.9))
max_epochs = 6
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 1, by_epoch=True, begin=1,
         end=max_epochs),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=2)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=1),
)
randomness = dict(seed=0)
auto_scale_lr = dict(base_batch_size=64)
