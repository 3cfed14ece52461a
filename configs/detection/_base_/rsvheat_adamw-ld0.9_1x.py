# Shared schedule of the RS-vHeat detectors (mmdet and mmrotate configs):
# 12 epochs ("1x", lr x0.1 after epochs 8 and 11, 500 linear warm-up
# iterations), AdamW with layer-wise lr decay 0.9 over RS-vHeat's layers and
# no weight decay on FVE/SCE/norms/biases/gammas (the recipe of the other
# RS-vHeat tasks, see RSVHeatLayerDecayOptimWrapperConstructor), evaluation
# after the last epoch. For 8 GPUs x 2 images (auto_scale_lr otherwise).
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=12)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='RSVHeatLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.9),
    clip_grad=dict(max_norm=35, norm_type=2))
auto_scale_lr = dict(enable=False, base_batch_size=16)
