# level 0 (model): a ResNet classifier, MMPretrain style
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ResNet',
        depth=18,
        out_indices=(3, ),
        norm_cfg=dict(type='BN', requires_grad=True)),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=512,
        topk=(1, 5)))
