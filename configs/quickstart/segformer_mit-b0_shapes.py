# A model of the zoo on the quickstart's synthetic shapes: MMSegmentation's SegFormer MiT-B0
# config (ADE20K, 512x512) unchanged but for the data, the classes, the norm (BN on one
# CPU), and a schedule of minutes. Trains from scratch: no pretrained download.
_base_ = ['../segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py']

num_shapes = 6
img_size = 64
norm_cfg = dict(type='BN', requires_grad=True)
data_preprocessor = dict(
    mean=[127.5, 127.5, 127.5], std=[64.0, 64.0, 64.0], size=(img_size, img_size))
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(init_cfg=None),
    decode_head=dict(num_classes=num_shapes + 1, norm_cfg=norm_cfg))

dataset_type = 'ShapesSegDataset'
train_pipeline = [dict(type='RandomFlip', prob=0.5), dict(type='PackSegInputs')]
test_pipeline = [dict(type='PackSegInputs')]
train_dataloader = dict(
    batch_size=16,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        num_samples=3000,
        num_classes=num_shapes,
        img_size=img_size,
        split='train',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=50,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        num_samples=300,
        num_classes=num_shapes,
        img_size=img_size,
        split='val',
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

# SegFormer's AdamW with its parameter groups, at a learning rate for training from scratch
optim_wrapper = dict(optimizer=dict(lr=0.002))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=50, end=1500, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=1500, val_interval=500)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    checkpoint=dict(
        type='CheckpointHook', by_epoch=False, interval=500, max_keep_ckpts=2, save_best='mIoU'),
    visualization=dict(type='SegVisualizationHook', draw=False, interval=20))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
