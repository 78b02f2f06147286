# '../_base_/seg_default_runtime.py' is MMSegmentation's '../_base_/default_runtime.py'
_base_ = [
    '../_base_/models/fpn_r50.py', '../_base_/datasets/cityscapes.py',
    '../_base_/seg_default_runtime.py', '../_base_/schedules/schedule_80k.py'
]
crop_size = (512, 1024)
data_preprocessor = dict(size=crop_size)
model = dict(data_preprocessor=data_preprocessor)
