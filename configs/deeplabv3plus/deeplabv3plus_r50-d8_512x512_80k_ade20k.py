_base_ = './deeplabv3plus_r50-d8_4xb4-80k_ade20k-512x512.py'
