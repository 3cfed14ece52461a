# Faster R-CNN + FPN on RS-vHeat-B, DIOR horizontal boxes (20 classes, 800 x 800).
# Protocol: train on DIOR train+val (11,725 images), evaluate mAP50 (VOC
# all-point 'area' AP at IoU 0.5) on DIOR test (11,738 images); 8 GPUs x 2
# images, 12 epochs, backbone initialised from the RS-vHeat pretraining
# weights (`checkpoint` below). RS-vHeat reports DIOR mAP50 82.30.
#
# Data layout (DIOR / DIOR-R release, see rsvheat_mm.datasets.DIORHBBDataset):
#   data/DIOR/JPEGImages-trainval/*.jpg, data/DIOR/JPEGImages-test/*.jpg,
#   data/DIOR/Annotations/Horizontal Bounding Boxes/*.xml,
#   data/DIOR/ImageSets/Main/{train,val,test}.txt
# With DIOR-R only, point ann_subdir at 'Annotations/Oriented Bounding Boxes'
# (the enclosing boxes are used) or convert it once:
#   python tools/dataset_converters/dior.py obb2hbb data/DIOR
_base_ = [
    '../_base_/models/faster-rcnn_rsvheat_fpn.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/rsvheat_adamw-ld0.9_1x.py',
]
# RS-vHeat pretraining weights (rsvheat_mm's own, or official RS-vHeat/vHeat
# ones; see tools/model_converters/).
checkpoint = 'checkpoints/rsvheat-b_pretrain.pth'
model = dict(
    backbone=dict(
        # one stem: the optical one (see the model base)
        in_channels=dict(_delete_=True, optical=3),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    roi_head=dict(bbox_head=dict(num_classes=20)))

dataset_type = 'DIORHBBDataset'
data_root = 'data/DIOR/'
backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(800, 800), keep_ratio=True),
    dict(type='RandomFlip', prob=[0.25, 0.25, 0.25],
         direction=['horizontal', 'vertical', 'diagonal']),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(800, 800), keep_ratio=True),
    # after Resize: the ground truth stays in original pixels
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
_split = dict(type=dataset_type, data_root=data_root, data_prefix=dict(sub_data_root=''),
              ann_subdir='Annotations/Horizontal Bounding Boxes',
              backend_args=backend_args)
train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type='ConcatDataset',
        datasets=[
            dict(**_split, ann_file='ImageSets/Main/train.txt', img_subdir='JPEGImages-trainval',
                 filter_cfg=dict(filter_empty_gt=True), pipeline=train_pipeline),
            dict(**_split, ann_file='ImageSets/Main/val.txt', img_subdir='JPEGImages-trainval',
                 filter_cfg=dict(filter_empty_gt=True), pipeline=train_pipeline),
        ]))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(**_split, ann_file='ImageSets/Main/test.txt', img_subdir='JPEGImages-test',
                 test_mode=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
# mAP50; eval_mode='11points' gives the VOC2007 variant some papers report.
val_evaluator = dict(type='VOCMetric', metric='mAP', iou_thrs=[0.5], eval_mode='area')
test_evaluator = val_evaluator
