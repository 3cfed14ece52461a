# UperNet on RS-vHeat-B for ISPRS Potsdam (6 classes, 512 px crops of the
# 5 cm RGB orthophotos); paper mF1 92.82. Reported: mF1 and mIoU averaged
# over the five classes without `clutter` (ISPRS protocol), plus OA.
#
# Data: mmseg's dataset and converter. With the ISPRS zips (2_Ortho_RGB.zip,
# 5_Labels_all_noBoundary.zip for eroded-boundary evaluation, or
# 5_Labels_all.zip) in data/potsdam_raw:
#   python tools/dataset_converters/mmseg_converter.py potsdam data/potsdam_raw \
#       -o data/potsdam --clip_size 512 --stride_size 256
_base_ = [
    './_base_/upernet_rsvheat-b_adamw-ld0.9-80k.py',
    'mmseg::_base_/datasets/potsdam.py',
]
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(pretrain_img_size=512),
    decode_head=dict(num_classes=6),
    auxiliary_head=dict(num_classes=6),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))
train_dataloader = dict(batch_size=2)
val_evaluator = dict(type='RSVHeatSegMetric', iou_metrics=['mIoU', 'mFscore'],
                     exclude_from_mean=['clutter'])
test_evaluator = val_evaluator
