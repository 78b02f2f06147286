# MMPretrain's name of MAE ViT-Base/16 pre-training (400 epochs, 8 x 512) with mixed
# precision: the recipe of configs/selfsup/mae/mae_vit-base-p16_8xb512-coslr-400e_in1k.py
# (the path MMSelfSup's guide uses) with AMP (fp16 + dynamic loss scale on GPU, bf16 on CPU).
_base_ = '../selfsup/mae/mae_vit-base-p16_8xb512-coslr-400e_in1k.py'

# mixed precision
optim_wrapper = dict(type='AmpOptimWrapper', loss_scale='dynamic')
