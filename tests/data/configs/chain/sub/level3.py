# level 3: _delete_, list replacement, a new variable
_base_ = '../level2.py'
num_classes = 10
model = dict(head=dict(num_classes=num_classes))
optim_wrapper = dict(
    _delete_=True, type='OptimWrapper', optimizer=dict(type='AdamW', lr=0.001))
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, T_max=100)]
