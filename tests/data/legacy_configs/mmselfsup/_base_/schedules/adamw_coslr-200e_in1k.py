# fmt: off
# AdamW with cosine decay over 200 epochs, MMSelfSup 0.x schedule base.
optimizer = dict(type='AdamW', lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.05)
optimizer_config = dict()  # no gradient clipping

lr_config = dict(
    policy='CosineAnnealing',
    min_lr=0.,
    warmup='linear',
    warmup_iters=40,
    warmup_ratio=1e-4,  # the warm-up starts from lr * warmup_ratio; must be > 0
    warmup_by_epoch=True)

runner = dict(type='EpochBasedRunner', max_epochs=200)
