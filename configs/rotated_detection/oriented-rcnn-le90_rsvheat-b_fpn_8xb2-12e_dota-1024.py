# Oriented R-CNN (le90) + FPN on RS-vHeat-B, DOTA-v1.0 single scale
# (1024 px patches, 200 px overlap), 15 classes; 8 GPUs x 2 patches, 12 epochs.
#
# Data: split DOTA-v1.0 (images/*.png + labelTxt/*.txt per split) into patches:
#   python tools/dataset_converters/dota_split.py --img-dirs data/DOTA/train/images \
#       data/DOTA/val/images --ann-dirs data/DOTA/train/labelTxt data/DOTA/val/labelTxt \
#       --sizes 1024 --gaps 200 --save-dir data/split_ss_dota/trainval
#   python tools/dataset_converters/dota_split.py --img-dirs data/DOTA/val/images \
#       --ann-dirs data/DOTA/val/labelTxt --sizes 1024 --gaps 200 --save-dir data/split_ss_dota/val
#   python tools/dataset_converters/dota_split.py --img-dirs data/DOTA/test/images \
#       --sizes 1024 --gaps 200 --save-dir data/split_ss_dota/test
# Validation merges the patch predictions onto DOTA's val scenes
# (MergedDOTAMetric; val is part of trainval, so the score is optimistic). The
# test split has no labels: tools/test.py writes the merged Task1 files for
# the DOTA server (https://captain-whu.github.io/DOTA/evaluation.html).
_base_ = [
    '../_base_/models/oriented-rcnn-le90_rsvheat_fpn.py',
    'mmrotate::_base_/datasets/dota.py',
    'mmrotate::_base_/default_runtime.py',
    '../detection/_base_/rsvheat_adamw-ld0.9_1x.py',
]
# RS-vHeat pretraining weights (rsvheat_mm's own, or official RS-vHeat/vHeat
# ones; see tools/model_converters/).
checkpoint = 'checkpoints/rsvheat-b_pretrain.pth'
model = dict(backbone=dict(
    init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')))

data_root = 'data/split_ss_dota/'
scene_root = 'data/DOTA/'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(
    dataset=dict(data_root=data_root, ann_file='val/annfiles/',
                 data_prefix=dict(img_path='val/images/')))
val_evaluator = dict(_delete_=True, type='MergedDOTAMetric', metric='mAP',
                     scene_ann_dir=scene_root + 'val/labelTxt/')
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='DOTADataset',
        data_root=data_root,
        ann_file='',
        data_prefix=dict(img_path='test/images/'),
        test_mode=True,
        pipeline={{_base_.test_pipeline}}))
test_evaluator = dict(_delete_=True, type='MergedDOTAMetric', format_only=True,
                      outfile_prefix='./work_dirs/dota_test/Task1')
