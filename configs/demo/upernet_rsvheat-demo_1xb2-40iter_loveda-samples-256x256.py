# Demo / smoke-test config: a tiny RS-vHeat + UperNet on the bundled LoveDA
# tiles (2 train, 1 val), CPU-friendly. For real training use
# configs/segmentation/*.
_base_ = [
    '../_base_/models/upernet_rsvheat.py',
    'mmseg::_base_/datasets/loveda.py',
    'mmseg::_base_/default_runtime.py',
]
norm_cfg = dict(type='BN', requires_grad=True)
crop_size = (256, 256)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    # optical data only: build only the optical stem
    backbone=dict(arch=dict(depths=[1, 1, 2, 1], embed_dims=32), pretrain_img_size=256,
                  in_channels=dict(optical=3),
                  drop_path_rate=0.1),
    decode_head=dict(in_channels=[32, 64, 128, 256], channels=64, num_classes=7,
                     norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=128, channels=32, num_classes=7, norm_cfg=norm_cfg))

data_root = 'demo/data/loveda'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(512, 512), ratio_range=(0.5, 1.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(512, 512), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, ann_file='train.txt',
                 data_prefix=dict(img_path='img_dir', seg_map_path='ann_dir'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, ann_file='val.txt',
                 data_prefix=dict(img_path='img_dir', seg_map_path='ann_dir'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
# mIoU, mF1 (= mFscore) and OA (= aAcc), see RSVHeatSegMetric.
val_evaluator = dict(type='RSVHeatSegMetric', iou_metrics=['mIoU', 'mFscore'])
test_evaluator = val_evaluator

# The full configs' optimizer: layer-wise lr decay over RS-vHeat's layers, no
# weight decay on FVE/SCE/norms/biases/gammas.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='RSVHeatLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.9),
    clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=5),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=5, end=40, eta_min=1e-5),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=40, val_interval=20)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=5, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=20, max_keep_ckpts=2),
    visualization=dict(type='SegVisualizationHook'))
randomness = dict(seed=0)
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
