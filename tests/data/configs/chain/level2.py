# level 2: recursive dict merge
_base_ = './level1.py'
model = dict(backbone=dict(depth=50), head=dict(in_channels=2048))
optim_wrapper = dict(optimizer=dict(lr=0.01))
