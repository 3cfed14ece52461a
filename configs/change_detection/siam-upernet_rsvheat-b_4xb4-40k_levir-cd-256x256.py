# LEVIR-CD (Chen & Shi 2020): 637 co-registered 1024x1024 Google Earth pairs
# (0.5 m), 445 train / 64 val / 128 test, building changes labelled 0/255.
# Expected layout (the official release, unzipped as is):
#   data/LEVIR-CD/{train,val,test}/{A,B,label}/*.png
# Siamese RS-vHeat-B (initialised from RS-vHeat pretraining) + concat fusion
# + UperNet; random 256x256 crops of the full tiles for training (4 GPUs x 4
# pairs), sliding-window (256 px, stride 128) testing on the full 1024 tiles;
# metric: F1 / precision / recall / IoU of the changed class (CDChangeMetric),
# the paper reports F1 93.48 (test split).
#   bash tools/dist_train.sh \
#       configs/change_detection/siam-upernet_rsvheat-b_4xb4-40k_levir-cd-256x256.py 4
#   python tools/test.py <this config> work_dirs/<name>/best_F1_iter_*.pth
_base_ = [
    './_base_/siam-upernet_rsvheat.py',
    './_base_/bitemporal-cd_256x256.py',
    'mmseg::_base_/default_runtime.py',
]
crop_size = (256, 256)
# RS-vHeat pretraining weights (rsvheat_mm, or official RS-vHeat/vHeat ones).
checkpoint = 'checkpoints/rsvheat-b_pretrain.pth'
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        pretrain_img_size=crop_size[0],  # FVE/SCE grids resized to 256 on loading
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(128, 128)))

data_root = 'data/LEVIR-CD'
train_dataloader = dict(batch_size=4, dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = dict(dataset=dict(data_root=data_root))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=5.0),
    # no weight decay on the heat embeddings, layer scales and norms
    paramwise_cfg=dict(custom_keys=dict(
        fve=dict(decay_mult=0.), sce=dict(decay_mult=0.), gamma=dict(decay_mult=0.),
        norm=dict(decay_mult=0.))))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=1500, end=40000),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=40000, val_interval=4000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=4000,
                    max_keep_ckpts=2, save_best='F1', rule='greater'),
    # change masks drawn over date A (tools/test.py --show-dir)
    visualization=dict(type='SegVisualizationHook'))
auto_scale_lr = dict(enable=False, base_batch_size=16)
