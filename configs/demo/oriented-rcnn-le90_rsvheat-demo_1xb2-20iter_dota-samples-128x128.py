# Demo / smoke-test config: a tiny RS-vHeat + Oriented R-CNN + FPN on the
# bundled DOTA sample (4 planes), CPU-friendly: patches of the scene for
# training, predictions merged back onto the scene for evaluation. Prepare
# the DOTA-format scene and its 128 px patches (42 px overlap) first:
#   python tools/dataset_converters/prepare_det_demo_data.py --out-dir work_dirs/demo_det_data
#   python tools/train.py configs/demo/oriented-rcnn-le90_rsvheat-demo_1xb2-20iter_dota-samples-128x128.py \
#       --work-dir work_dirs/demo_rdet
# For real training use configs/rotated_detection/*.
_base_ = '../rotated_detection/oriented-rcnn-le90_rsvheat-b_fpn_8xb2-12e_dota-1024.py'

model = dict(
    # The arch of the demo pretraining checkpoint (tools/demo.py initialises
    # the backbone from it); restated whole so that no init_cfg is inherited.
    backbone=dict(_delete_=True, type='RSVHeat', arch=dict(depths=[1, 1, 2, 1], embed_dims=32),
                  in_channels=dict(optical=3), pretrain_img_size=128, drop_path_rate=0.1,
                  out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256)),
    train_cfg=dict(rpn_proposal=dict(nms_pre=1000, max_per_img=300),
                   rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=1000, max_per_img=300),
                  rcnn=dict(nms_pre=300, max_per_img=300)))

data_root = 'work_dirs/demo_det_data/'
img_scale = (128, 128)
train_pipeline = [
    dict(type='mmdet.LoadImageFromFile'),
    dict(type='mmdet.LoadAnnotations', with_bbox=True, box_type='qbox'),
    dict(type='ConvertBoxType', box_type_mapping=dict(gt_bboxes='rbox')),
    dict(type='mmdet.Resize', scale=img_scale, keep_ratio=True),
    dict(type='mmdet.RandomFlip', prob=0.75, direction=['horizontal', 'vertical', 'diagonal']),
    dict(type='mmdet.PackDetInputs'),
]
test_pipeline = [
    dict(type='mmdet.LoadImageFromFile'),
    dict(type='mmdet.Resize', scale=img_scale, keep_ratio=True),
    dict(type='mmdet.PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
# (no `img_shape`: OneDL's mmrotate DOTADataset no longer takes it; the image
# sizes come from the loaded images on both mmrotate lines)
_patches = dict(type='DOTADataset', data_root=data_root, ann_file='dota_split/annfiles/',
                data_prefix=dict(img_path='dota_split/images/'))
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    # infinite: no dataloader restart (and its 2 s pause) after each epoch
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(_delete_=True, **_patches, filter_cfg=dict(filter_empty_gt=True),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, **_patches, test_mode=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(scene_ann_dir=data_root + 'dota/labelTxt/')
test_evaluator = val_evaluator

train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=20, val_interval=20)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=5),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=5, end=20, eta_min=1e-5),
]
optim_wrapper = dict(optimizer=dict(lr=1e-3))
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=5, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=20, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
