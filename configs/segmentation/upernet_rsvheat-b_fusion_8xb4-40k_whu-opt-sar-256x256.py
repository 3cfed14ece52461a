# Optical + SAR fusion on WHU-OPT-SAR (GF-1 RGB + GF-3 SAR, 5 m, 7 land-use
# classes, 256 px tiles); paper OA 83.9. Reported: OA (= mmseg's aAcc) and mIoU.
#
# Both modalities go through the shared RS-vHeat-B encoder (each through its
# own stem, in one backbone call), RSVHeatModalityFusionNeck fuses the four
# stage pyramids, UperNet + auxiliary FCN decode the fused pyramid.
#
# Data: the release (optical/, sar/, lbl/ GeoTIFFs) in data/WHU-OPT-SAR, tiled
# (256 px) and split 6:2:2 as in MCANet by
#   python tools/dataset_converters/whu_opt_sar.py data/WHU-OPT-SAR -o data/whu-opt-sar
_base_ = ['./_base_/upernet_rsvheat-b_adamw-ld0.9-40k.py']

crop_size = (256, 256)
norm_cfg = dict(type='SyncBN', requires_grad=True)
# Channels: optical R, G, B, then SAR, normalised as in RS-vHeat pretraining
# (configs/pretrain/*). LoadOpticalSARPair already returns RGB: no swap.
data_preprocessor = dict(
    size=crop_size,
    mean=[123.675, 116.28, 103.53, 100.0],
    std=[58.395, 57.12, 57.375, 50.0],
    bgr_to_rgb=False)
model = dict(
    type='RSVHeatMultiModalEncoderDecoder',
    data_preprocessor=data_preprocessor,
    modalities=['optical', 'sar'],  # channel order of the stacked input
    backbone=dict(pretrain_img_size=256),
    neck=dict(type='RSVHeatModalityFusionNeck', in_channels=[128, 256, 512, 1024],
              num_modalities=2, norm_cfg=norm_cfg),
    decode_head=dict(num_classes=7),
    auxiliary_head=dict(num_classes=7),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(171, 171)))

dataset_type = 'WHUOPTSARDataset'
data_root = 'data/whu-opt-sar'
# R, G, B of the R-G-B-NIR optical tiles (the optical stem has 3 bands).
optical_bands = (0, 1, 2)
train_pipeline = [
    dict(type='LoadOpticalSARPair', optical_bands=optical_bands),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(256, 256), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=[0.25, 0.25], direction=['horizontal', 'vertical']),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadOpticalSARPair', optical_bands=optical_bands),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
data_prefix = {
    split: dict(img_path=f'img_dir/{split}', sar_path=f'sar_dir/{split}',
                seg_map_path=f'ann_dir/{split}')
    for split in ('train', 'val', 'test')
}
train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, data_prefix=data_prefix['train'],
                 pipeline=train_pipeline))
test_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, data_prefix=data_prefix['test'],
                 pipeline=test_pipeline))
val_dataloader = dict(test_dataloader,
                      dataset=dict(test_dataloader['dataset'], data_prefix=data_prefix['val']))
# OA = overall pixel accuracy (also logged as aAcc), mIoU over the 7 classes.
val_evaluator = dict(type='RSVHeatSegMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
