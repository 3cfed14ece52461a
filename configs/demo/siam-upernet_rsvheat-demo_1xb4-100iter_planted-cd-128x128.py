# Demo / smoke-test config for change detection: a tiny siamese RS-vHeat +
# UperNet (the pretraining demo's backbone size, so tools/demo.py can start it
# from that checkpoint; from scratch otherwise) trained on pairs with planted changes made from the
# bundled real tiles (CPU-friendly, about a minute; OMP_NUM_THREADS=1 on a busy
# machine). Make the data first:
#   python tools/cd_make_planted_pairs.py work_dirs/planted_cd --splits train val huge
#   python tools/train.py \
#       configs/demo/siam-upernet_rsvheat-demo_1xb4-100iter_planted-cd-128x128.py \
#       --work-dir work_dirs/cd_demo
# then a huge-pair tiled inference with tools/infer.py CONFIG A.png B.png --tile 512.
# The real recipe is
# configs/change_detection/siam-upernet_rsvheat-b_4xb4-40k_levir-cd-256x256.py.
_base_ = ['../change_detection/siam-upernet_rsvheat-b_4xb4-40k_levir-cd-256x256.py']
crop_size = (128, 128)
norm_cfg = dict(type='BN', requires_grad=True)
dims = [32, 64, 128, 256]
model = dict(
    data_preprocessor=dict(size=crop_size),
    # restated without init_cfg: the LEVIR recipe loads RS-vHeat-B weights
    backbone=dict(_delete_=True, type='RSVHeat', arch=dict(depths=[1, 1, 2, 1], embed_dims=dims[0]),
                  in_channels=dict(optical=3), pretrain_img_size=crop_size[0],
                  drop_path_rate=0., out_indices=(0, 1, 2, 3)),
    # |f_a - f_b| is symmetric in time and already "a change feature": the
    # quickest to learn from scratch (the LEVIR recipe uses concat).
    fusion_neck=dict(in_channels=dims, policy='abs_diff', out_channels=dims, norm_cfg=norm_cfg),
    decode_head=dict(in_channels=dims, channels=32, norm_cfg=norm_cfg, dropout_ratio=0.),
    auxiliary_head=dict(in_channels=dims[2], channels=16, norm_cfg=norm_cfg, dropout_ratio=0.),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=crop_size))

data_root = 'work_dirs/planted_cd'
train_pipeline = [
    dict(type='LoadBitemporalImages'),
    dict(type='LoadBitemporalChangeLabel'),
    # prefer crops with some change (planted changes cover ~5% of a tile)
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.95),
    dict(type='RandomRotFlip', rotate_prob=0., flip_prob=0.5),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='BitemporalPhotoMetricDistortion'),
    dict(type='BitemporalExchangeTime', prob=0.5),
    dict(type='PackBitemporalInputs'),
]
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root))
test_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root))

optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=10),
    dict(type='PolyLR', power=1.0, eta_min=1e-5, by_epoch=False, begin=10, end=100),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=100, val_interval=100)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=100, max_keep_ckpts=1,
                    save_best=None))
randomness = dict(seed=0)
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
