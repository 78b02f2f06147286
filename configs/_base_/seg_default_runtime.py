# Runtime defaults shared by the segmentation configs: MMSegmentation 1.x's
# configs/_base_/default_runtime.py. That name is already taken here by
# MMPretrain's runtime (used by the classification configs), so MMSegmentation's
# lives under this name and every segmentation config lists
# '../_base_/seg_default_runtime.py' where MMSegmentation lists
# '../_base_/default_runtime.py'.
default_scope = 'mmseg'
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(
    type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False

tta_model = dict(type='SegTTAModel')
