# fmt: off
# Runtime defaults of MMSelfSup 0.x (MMCV 1.x runner).
checkpoint_config = dict(interval=10)
log_config = dict(
    interval=50,
    hooks=[
        dict(type='TextLoggerHook'),
        # dict(type='TensorboardLoggerHook'),
    ])
dist_params = dict(backend='nccl')
cudnn_benchmark = True
log_level = 'INFO'
load_from = None
resume_from = None
workflow = [('train', 1)]
persistent_workers = True

# keep OpenCV single-threaded inside data-loader workers
opencv_num_threads = 0
# 'fork' starts data-loader workers faster than 'spawn'
mp_start_method = 'fork'
