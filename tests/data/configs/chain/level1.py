# level 1: four bases of three formats
_base_ = [
    '../_base_/models/tiny_classifier.py',
    '../_base_/datasets/tiny_dataset.yaml',
    '../_base_/schedules/sgd.json',
    '../_base_/default_runtime.py',
]
