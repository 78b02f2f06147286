# 'mmseg::_base_/default_runtime.py' when MMSegmentation is not installed: in vistra's
# merged tree MMSegmentation's runtime is _base_/seg_default_runtime.py (the name
# _base_/default_runtime.py holds MMPretrain's), see vistra/config/scopes.py.
_base_ = '../../_base_/seg_default_runtime.py'
