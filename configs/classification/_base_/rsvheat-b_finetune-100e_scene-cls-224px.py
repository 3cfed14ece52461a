# Shared fine-tuning recipe for remote-sensing scene classification with
# RS-vHeat-B (mmpretrain): 224 px crops, RandAugment + random erasing,
# Mixup/CutMix + label smoothing (model base), AdamW with layer-wise lr decay
# 0.9 over RS-vHeat's 26 layers (stem, 24 blocks, head) and no weight decay on
# FVE/SCE/norms/biases/gammas, 5 warm-up + 95 cosine epochs, EMA of the
# weights. 8 GPUs x 32 images; `--auto-scale-lr` rescales the lr otherwise.
# Children set: data_root, num_classes, the split files and `checkpoint`.
_base_ = [
    '../../_base_/models/rsvheat-b_linear-cls.py',
    'mmpretrain::_base_/default_runtime.py',
]

# RS-vHeat pretraining weights (rsvheat_mm, or official RS-vHeat/vHeat ones).
checkpoint = 'checkpoints/rsvheat-b_pretrain.pth'
model = dict(
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')))

dataset_type = 'CustomDataset'  # `path label` split files, see tools/dataset_converters/scene_cls_split.py
data_preprocessor = dict(
    num_classes=1000,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)
bgr_mean = data_preprocessor['mean'][::-1]
bgr_std = data_preprocessor['std'][::-1]

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow', interpolation='bicubic'),
    # Overhead imagery has no canonical "up": flip both ways.
    dict(type='RandomFlip', prob=[0.25, 0.25], direction=['horizontal', 'vertical']),
    dict(type='RandAugment', policies='timm_increasing', num_policies=2, total_level=10,
         magnitude_level=9, magnitude_std=0.5,
         hparams=dict(pad_val=[round(x) for x in bgr_mean], interpolation='bicubic')),
    dict(type='RandomErasing', erase_prob=0.25, mode='rand', min_area_ratio=0.02,
         max_area_ratio=1 / 3, fill_color=bgr_mean, fill_std=bgr_std),
    dict(type='PackInputs'),
]
# Scenes are square (AID 600 px, NWPU 256 px): resize whole, no centre crop
# that would cut off border context.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(224, 224), backend='pillow', interpolation='bicubic'),
    dict(type='PackInputs'),
]

data_root = 'data/scene-cls'
train_dataloader = dict(
    batch_size=32,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
# OA (overall accuracy) of the papers = top-1 accuracy.
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=5e-4, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    constructor='RSVHeatLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.9),
    clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=5, end=100,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=5)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=256)

# EMA of the weights (evaluated and saved in place of the raw weights);
# `custom_hooks=[]` switches it off.
custom_hooks = [dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL')]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', interval=5, max_keep_ckpts=2,
                    save_best='accuracy/top1', rule='greater'))
randomness = dict(seed=0)
