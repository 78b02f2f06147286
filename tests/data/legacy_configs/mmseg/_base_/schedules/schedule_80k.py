# fmt: off
# SGD with poly decay over 80k iterations, MMCV 1.x runner schedule.
optimizer = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0005)
optimizer_config = dict()
# poly policy: lr = (lr0 - min_lr) * (1 - iter / max_iters) ** power + min_lr
lr_config = dict(policy='poly', power=0.9, min_lr=1e-4, by_epoch=False)
runner = dict(type='IterBasedRunner', max_iters=80000)
checkpoint_config = dict(by_epoch=False, interval=8000)
evaluation = dict(interval=8000, metric='mIoU', pre_eval=True)
