# The shared recipe (upernet_rsvheat-b_adamw-ld0.9-80k.py) on a 40k-iteration
# schedule, for the smaller datasets (AIR-PolSAR-Seg, WHU-OPT-SAR).
_base_ = ['./upernet_rsvheat-b_adamw-ld0.9-80k.py']

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=40000, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=40000, val_interval=4000)
default_hooks = dict(checkpoint=dict(interval=4000))
