# level 4: base variable access, a {{_base_}} reference and a predefined variable
_base_ = ['../level3.py']
base_depth = _base_.model.backbone.depth
model = dict(backbone=dict(depth=base_depth + 51))
head_copy = {{_base_.model.head}}
train_dataloader = dict(batch_size=4)
work_dir = './work_dirs/{{ fileBasenameNoExtension }}'
