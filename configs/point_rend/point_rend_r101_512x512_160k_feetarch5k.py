# The custom-dataset example of the MMSegmentation (0.x) guide: PointRend with a
# ResNet-101 backbone segmenting the foot arch ('background', 'foot arch') on the
# two-class FeetArch5k dataset, trained as
#   tools/dist_train.sh configs/point_rend/point_rend_r101_512x512_160k_feetarch5k.py 2
# Everything but the dataset is MMSegmentation's PointRend R-101 recipe for
# 512x512 crops (configs/point_rend/pointrend_r101_4xb4-160k_ade20k-512x512.py):
# the pointrend_r50.py model with a 101-layer backbone, 160k iterations of SGD
# with a 200-iteration linear warm-up, and both heads cut to 2 classes.
# The dataset base (../_base_/datasets/feetarch5k.py) documents the folder layout.
# '../_base_/seg_default_runtime.py' is MMSegmentation's '../_base_/default_runtime.py'
_base_ = [
    '../_base_/models/pointrend_r50.py', '../_base_/datasets/feetarch5k.py',
    '../_base_/seg_default_runtime.py', '../_base_/schedules/schedule_160k.py'
]
num_classes = 2
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained='open-mmlab://resnet101_v1c',
    backbone=dict(depth=101),
    decode_head=[
        dict(
            type='FPNHead',
            in_channels=[256, 256, 256, 256],
            in_index=[0, 1, 2, 3],
            feature_strides=[4, 8, 16, 32],
            channels=128,
            dropout_ratio=-1,
            num_classes=num_classes,
            norm_cfg=norm_cfg,
            align_corners=False,
            loss_decode=dict(
                type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
        dict(
            type='PointHead',
            in_channels=[256],
            in_index=[0],
            channels=256,
            num_fcs=3,
            coarse_pred_each_layer=True,
            dropout_ratio=-1,
            num_classes=num_classes,
            align_corners=False,
            loss_decode=dict(
                type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0))
    ])
param_scheduler = [
    dict(type='LinearLR', by_epoch=False, start_factor=0.1, begin=0, end=200),
    dict(
        type='PolyLR',
        eta_min=1e-4,
        power=0.9,
        begin=200,
        end=160000,
        by_epoch=False,
    )
]
