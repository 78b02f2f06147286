_base_ = './unet-s5-d16_fcn_4xb4-160k_cityscapes-512x1024.py'
