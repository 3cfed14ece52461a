# Faster R-CNN + FPN on RS-vHeat-B with its SAR stem, SAR-AIRcraft-1.0
# (Gaofen-3, 1 m, 7 aircraft types; images 800-1500 px, resized to 800).
# Protocol: train on trainval, evaluate mAP50 (VOC 'area' AP at IoU 0.5) on
# test; 8 GPUs x 2 images, 12 epochs. RS-vHeat reports mAP50 87.1.
#
# Data layout (the SAR-AIRcraft-1.0 release, VOC style):
#   data/SAR-AIRcraft-1.0/JPEGImages/*.jpg, data/SAR-AIRcraft-1.0/Annotations/*.xml,
#   data/SAR-AIRcraft-1.0/ImageSets/Main/{train,val,trainval,test}.txt
_base_ = './faster-rcnn_rsvheat-b_fpn_8xb2-12e_dior-800x800.py'

# Images are read as one band (whatever their file stores) and go through
# the SAR stem. Normalisation: ImageNet's grey mean/std; replace them by the
# dataset's amplitude statistics if you pretrain your own SAR stem.
model = dict(
    data_preprocessor=dict(mean=[116.28], std=[57.12], bgr_to_rgb=False),
    backbone=dict(in_channels=dict(_delete_=True, sar=1), default_modality='sar'),
    roi_head=dict(bbox_head=dict(num_classes=7)))

dataset_type = 'SARAircraftDataset'
data_root = 'data/SAR-AIRcraft-1.0/'
backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', color_type='grayscale', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(800, 800), keep_ratio=True),
    dict(type='RandomFlip', prob=[0.25, 0.25, 0.25],
         direction=['horizontal', 'vertical', 'diagonal']),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', color_type='grayscale', backend_args=backend_args),
    dict(type='Resize', scale=(800, 800), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(sub_data_root=''),
        ann_file='ImageSets/Main/trainval.txt',
        filter_cfg=dict(filter_empty_gt=True),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(sub_data_root=''),
        ann_file='ImageSets/Main/test.txt',
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader
