# MMPretrain's name for the MAE fine-tuning benchmark; the config is MMSelfSup's twin.
_base_ = '../../selfsup/mae/benchmarks/vit-base-p16_ft-8xb128-coslr-100e_in1k.py'
