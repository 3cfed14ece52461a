# Demo / smoke-test config: a tiny RS-vHeat + Faster R-CNN + FPN on the
# bundled DIOR image (demo/data/dior: one 800 x 800 image, one golffield),
# CPU-friendly. The horizontal box is the one enclosing DIOR-R's oriented
# box (DIORHBBDataset reads <robndbox> too). Train and evaluate (VOC mAP50):
#   python tools/train.py configs/demo/faster-rcnn_rsvheat-demo_1xb2-20iter_dior-samples-256x256.py \
#       --work-dir work_dirs/demo_det
# For real training use configs/detection/*.
_base_ = '../detection/faster-rcnn_rsvheat-b_fpn_8xb2-12e_dior-800x800.py'

model = dict(
    # The arch of the demo pretraining checkpoint (tools/demo.py initialises
    # the backbone from it); restated whole so that no init_cfg is inherited.
    backbone=dict(_delete_=True, type='RSVHeat', arch=dict(depths=[1, 1, 2, 1], embed_dims=32),
                  in_channels=dict(optical=3), pretrain_img_size=256, drop_path_rate=0.1,
                  out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256)),
    # fewer proposals: CPU
    train_cfg=dict(rpn_proposal=dict(nms_pre=1000, max_per_img=300),
                   rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=1000, max_per_img=300)))

data_root = 'demo/data/dior/'
img_scale = (256, 256)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=[0.25, 0.25, 0.25],
         direction=['horizontal', 'vertical', 'diagonal']),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
_demo = dict(type='DIORHBBDataset', data_root=data_root, data_prefix=dict(sub_data_root=''),
             ann_file='demo.txt', img_subdir='JPEGImages',
             ann_subdir='Annotations/Oriented Bounding Boxes')
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    # infinite: no dataloader restart (and its 2 s pause) after each epoch
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(_delete_=True, **_demo, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, **_demo, test_mode=True, pipeline=test_pipeline))
test_dataloader = val_dataloader

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
