# The MMSelfSup 1.x path of this config; it trains exactly the MMPretrain config.
_base_ = '../../simclr/simclr_resnet50_16xb256-coslr-200e_in1k.py'
