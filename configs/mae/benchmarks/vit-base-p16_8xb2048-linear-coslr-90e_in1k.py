# MMPretrain's name for the MAE linear-probe benchmark; the config is MMSelfSup's twin.
_base_ = '../../selfsup/mae/benchmarks/vit-base-p16_linear-8xb2048-coslr-90e_in1k.py'
