# Oriented R-CNN (le90) + FPN on RS-vHeat-B, FAIR1M-2.0 (37 fine-grained
# classes), 1024 px patches with 200 px overlap; 8 GPUs x 2 patches, 12 epochs.
# RS-vHeat reports FAIR1M-2.0 mAP 48.29 (test set, evaluated by the FAIR1M
# server; the validation score below is computed offline on full scenes).
#
# Data: FAIR1M-2.0 as released (train/images/*.tif + train/labelXml/*.xml,
# validation/..., test/images), converted and split once:
#   python tools/dataset_converters/fair1m.py to-dota data/FAIR1M2.0/train/labelXml \
#       --out-dir data/FAIR1M2.0/train/labelTxt          (same for validation)
#   python tools/dataset_converters/dota_split.py --img-dirs data/FAIR1M2.0/train/images \
#       --ann-dirs data/FAIR1M2.0/train/labelTxt --sizes 1024 --gaps 200 \
#       --save-dir data/FAIR1M2.0/split_ss/train          (same for validation -> val)
#   python tools/dataset_converters/dota_split.py --img-dirs data/FAIR1M2.0/test/images \
#       --sizes 1024 --gaps 200 --save-dir data/FAIR1M2.0/split_ss/test
# Test submission: tools/test.py writes merged Task1 files to
# work_dirs/fair1m_test/Task1, then
#   python tools/dataset_converters/fair1m.py task1-to-xml work_dirs/fair1m_test/Task1 \
#       --img-dir data/FAIR1M2.0/test/images --out-dir work_dirs/fair1m_test/test
# gives the per-image XML files the FAIR1M server expects.
_base_ = './oriented-rcnn-le90_rsvheat-b_fpn_8xb2-12e_dota-1024.py'

model = dict(roi_head=dict(bbox_head=dict(num_classes=37)))

dataset_type = 'FAIR1MDataset'
data_root = 'data/FAIR1M2.0/split_ss/'
scene_root = 'data/FAIR1M2.0/'
train_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='train/annfiles/',
                 data_prefix=dict(img_path='train/images/')))
val_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='val/annfiles/',
                 data_prefix=dict(img_path='val/images/')))
val_evaluator = dict(scene_ann_dir=scene_root + 'validation/labelTxt/')
test_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_evaluator = dict(outfile_prefix='./work_dirs/fair1m_test/Task1')
