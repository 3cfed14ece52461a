# UperNet on RS-vHeat-B for AIR-PolSAR-Seg (GF-3 quad-pol SAR, 8 m, 6
# terrain classes, 512 px patches) through the encoder's SAR stem; paper
# mIoU 57.46.
#
# Data: the release (<id>_HH/_HV/_VH/_VV amplitude images + <id>_gt.png) in
# data/AIR-PolSAR-Seg, reduced to one band (RMS amplitude over the four
# polarisations, `--band` to pick one) by
#   python tools/dataset_converters/air_polsar_seg.py data/AIR-PolSAR-Seg -o data/air-polsar-seg
_base_ = ['./_base_/upernet_rsvheat-b_adamw-ld0.9-40k.py']

crop_size = (512, 512)
# One SAR band, normalised as in RS-vHeat pretraining
# (configs/pretrain/*: SAR mean 100, std 50).
data_preprocessor = dict(size=crop_size, mean=[100.0], std=[50.0], bgr_to_rgb=False)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(pretrain_img_size=512, default_modality='sar'),
    decode_head=dict(num_classes=6),
    auxiliary_head=dict(num_classes=6),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

dataset_type = 'AIRPolSARSegDataset'
data_root = 'data/air-polsar-seg'
train_pipeline = [
    # 'unchanged' keeps the single band (and 16-bit data) as stored.
    dict(type='LoadImageFromFile', color_type='unchanged', imdecode_backend='cv2'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(512, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=[0.25, 0.25], direction=['horizontal', 'vertical']),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', color_type='unchanged', imdecode_backend='cv2'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root,
                 data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root,
                 data_prefix=dict(img_path='img_dir/test', seg_map_path='ann_dir/test'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='RSVHeatSegMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
