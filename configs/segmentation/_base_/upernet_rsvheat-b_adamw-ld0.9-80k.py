# Shared segmentation recipe (mmseg): UperNet + auxiliary FCN on RS-vHeat-B
# (configs/_base_/models/upernet_rsvheat.py), AdamW with layer-wise lr decay
# 0.9 over RS-vHeat's layers (no weight decay on FVE/SCE/norms/biases/gammas,
# see RSVHeatLayerDecayOptimWrapperConstructor), 1500 warm-up iterations and
# poly decay over 80k iterations, 8 GPUs x 2 images. Sliding-window testing
# with 2/3-crop stride: test images larger than the training crop (e.g. whole
# scenes) are tiled, crop-sized ones run as one window. Children set the
# dataset, crop size, classes and the metric.
_base_ = [
    '../../_base_/models/upernet_rsvheat.py',
    'mmseg::_base_/default_runtime.py',
]

# RS-vHeat pretraining weights (rsvheat_mm, or official RS-vHeat/vHeat ones).
checkpoint = 'checkpoints/rsvheat-b_pretrain.pth'
model = dict(
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='RSVHeatLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.9),
    clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=80000, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=80000, val_interval=8000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=8000, max_keep_ckpts=2),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
randomness = dict(seed=0)
