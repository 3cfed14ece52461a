# Demo / smoke-test pretraining: the paper's recipe
# (configs/pretrain/rsvheat-pretrain_rsvheat-b_8xb64-amp-coslr-200e_opt-sar-224px.py)
# with a tiny RS-vHeat on the bundled real images, CPU-friendly (~1 min;
# run it with OMP_NUM_THREADS=1 on a busy 2-core machine).
#
# Data: the eight RS-vHeat sample scenes (demo/data/scenes) plus the LoveDA,
# Potsdam and Vaihingen tiles, all optical. The bundled data hold no SAR
# image, so 3 of 4 scene crops get a STAND-IN SAR partner derived from the
# crop itself (RSVHeatSARStandIn: luminance -> intensity x 4-look Gamma speckle
# -> dB -> 8 bit; no SAR physics). It exercises the SAR stem, the paired path
# and L_con; batches mix paired and unpaired samples.
#
# The checkpoint (work_dir/iter_40.pth) initialises a downstream RSVHeat with
# the same arch through init_cfg=dict(type='Pretrained', checkpoint=...,
# prefix='backbone.').
_base_ = ['../pretrain/rsvheat-pretrain_rsvheat-b_8xb64-amp-coslr-200e_opt-sar-224px.py']

img_size = 64
# The arch of the segmentation and rotated-detection demos, so their configs
# can start from this checkpoint.
model = dict(
    backbone=dict(arch=dict(_delete_=True, depths=[1, 1, 2, 1], embed_dims=32),
                  pretrain_img_size=img_size,
                  drop_path_rate=0.0),
    decoder=dict(channels=32, min_channels=16),
    projector=dict(hid_channels=64, out_channels=32, norm_cfg=dict(type='BN1d')))

geometric = [
    dict(type='RandomResize', scale=(2 * img_size, 2 * img_size), ratio_range=(0.5, 1.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=img_size, pad_if_needed=True),
    dict(type='RandomFlip', prob=0.5, direction=['horizontal', 'vertical']),
]
masking = dict(type='RSVHeatFrequencyMasking', ratio_range=(0.2, 0.3), ratio_mode='area')
scene_pipeline = [
    dict(type='LoadRSVHeatPretrainImages'), *geometric,
    # Derived after the geometric transforms, hence co-registered.
    dict(type='RSVHeatSARStandIn', prob=0.75, looks=4),
    masking,
    dict(type='PackRSVHeatPretrainInputs'),
]
optical_pipeline = [dict(type='LoadRSVHeatPretrainImages'), *geometric, masking,
                    dict(type='PackRSVHeatPretrainInputs')]
train_dataloader = dict(
    _delete_=True,
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    # Iteration-based: no epoch restarts (mmengine pauses 2 s at each one).
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(
        type='ConcatDataset',
        datasets=[
            dict(type='RSVHeatImageFolderDataset', data_root='demo/data/scenes',
                 modality='optical', pipeline=scene_pipeline),
            dict(type='RSVHeatImageFolderDataset', data_root='demo/data/loveda/img_dir',
                 modality='optical', pipeline=optical_pipeline),
            dict(type='RSVHeatImageFolderDataset', data_root='demo/data/potsdam/img_dir',
                 modality='optical', pipeline=optical_pipeline),
            dict(type='RSVHeatImageFolderDataset', data_root='demo/data/vaihingen/img_dir',
                 modality='optical', pipeline=optical_pipeline),
        ]))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, betas=(0.9, 0.95), weight_decay=0.05),
    clip_grad=dict(max_norm=5.0),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                       custom_keys=dict(fve=dict(decay_mult=0.0), sce=dict(decay_mult=0.0),
                                        gamma=dict(decay_mult=0.0))))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=5),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=5, end=40, eta_min=1e-4),
]
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=40)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=5, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=40, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0, diff_rank_seed=False)
auto_scale_lr = dict(base_batch_size=4)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
