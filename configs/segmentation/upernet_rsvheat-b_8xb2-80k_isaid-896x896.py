# UperNet on RS-vHeat-B for iSAID (15 object classes + background, DOTA
# images cut into 896 px patches with 384 px overlap); paper mIoU 68.72
# (mIoU over all 16 classes, mmseg's convention).
#
# Data: mmseg's dataset and converter. With the iSAID release laid out as
# data/iSAID_raw/{train,val,test}/images/*.zip (DOTA images) and
# {train,val}/Semantic_masks/*.zip:
#   python tools/dataset_converters/mmseg_converter.py isaid data/iSAID_raw -o data/iSAID
_base_ = [
    './_base_/upernet_rsvheat-b_adamw-ld0.9-80k.py',
    'mmseg::_base_/datasets/isaid.py',
]
crop_size = (896, 896)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(pretrain_img_size=896),
    decode_head=dict(num_classes=16),
    auxiliary_head=dict(num_classes=16),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(597, 597)))
train_dataloader = dict(batch_size=2)
val_evaluator = dict(type='RSVHeatSegMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
