# MAE pre-training of ViT-Base/16 on ImageNet-1k: 400 epochs, 8 GPUs x 512 images
# (the config MMSelfSup's getting-started guide trains). Same recipe, with mixed
# precision, under MMPretrain's name: configs/mae/mae_vit-base-p16_8xb512-amp-coslr-400e_in1k.py
_base_ = [
    '../../_base_/models/mae_vit-base-p16.py',
    '../../_base_/datasets/imagenet_bs512_mae.py',
    '../../_base_/default_runtime.py',
]

# optimizer wrapper
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW',
        lr=1.5e-4 * 4096 / 256,
        betas=(0.9, 0.95),
        weight_decay=0.05),
    paramwise_cfg=dict(
        custom_keys={
            'ln': dict(decay_mult=0.0),
            'bias': dict(decay_mult=0.0),
            'pos_embed': dict(decay_mult=0.),
            'mask_token': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.)
        }))

# learning rate scheduler: 40 warm-up epochs, then cosine to 400
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-4,
        by_epoch=True,
        begin=0,
        end=40,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=360,
        by_epoch=True,
        begin=40,
        end=400,
        convert_to_iter_based=True)
]

# runtime settings
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=400)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=100),
    # only keeps the latest 3 checkpoints
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3))

randomness = dict(seed=0, diff_rank_seed=True)

# auto resume
resume = True

# `--auto-scale-lr` scales the learning rate by (actual batch size) / 4096
auto_scale_lr = dict(base_batch_size=4096)
