_base_ = './deeplabv3plus_r50-d8_4xb4-20k_voc12aug-512x512.py'
