# Binary change-detection data in the A/B/label layout (LEVIR-CD and
# compatible sets): <data_root>/{train,val,test}/{A,B,label}/<name>.png, labels
# 0 = unchanged and 255 (or 1) = changed. Training on random 256x256 crops of
# the full tiles, evaluation on the full tiles (the model's test_cfg slides a
# 256x256 window over them).
dataset_type = 'BitemporalCDDataset'
data_root = 'data/LEVIR-CD'
crop_size = (256, 256)

train_pipeline = [
    dict(type='LoadBitemporalImages'),
    dict(type='LoadBitemporalChangeLabel'),
    # mmseg's crop, rot90+flip and flip act on the stacked (H, W, 6) pair: one
    # crop box and one of the 8 symmetries of the square for both dates and
    # the label. (BitemporalRandomRotate gives arbitrary angles, at the price
    # of ignored corners.)
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomRotFlip', rotate_prob=0., flip_prob=0.5),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='BitemporalPhotoMetricDistortion'),
    dict(type='BitemporalExchangeTime', prob=0.5),
    dict(type='PackBitemporalInputs'),
]
test_pipeline = [
    dict(type='LoadBitemporalImages'),
    dict(type='LoadBitemporalChangeLabel'),
    dict(type='PackBitemporalInputs'),
]

train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='train/A', img_path2='train/B', seg_map_path='train/label'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='val/A', img_path2='val/B', seg_map_path='val/label'),
        pipeline=test_pipeline))
test_dataloader = dict(
    val_dataloader,
    dataset=dict(
        val_dataloader['dataset'],
        data_prefix=dict(img_path='test/A', img_path2='test/B', seg_map_path='test/label')))
# F1 / precision / recall / IoU of the changed class (+ OA, kappa, mIoU).
val_evaluator = dict(type='CDChangeMetric')
test_evaluator = val_evaluator
