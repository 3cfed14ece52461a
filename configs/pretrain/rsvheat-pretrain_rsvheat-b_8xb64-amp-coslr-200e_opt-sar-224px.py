# RS-vHeat-B self-supervised pretraining, the paper's recipe (spec section 3):
# frequency-domain hierarchical masking (20-30 % sector), L_spa + L_fre + L_con
# with equal weights, 224 px input, AdamW, base lr 2e-4 with cosine decay,
# 200 epochs, mixed precision, 8 GPUs.
#
# Assumed where the paper is silent: the batch (8 x 64 = 512, the lr 2e-4 is
# taken for it; `--auto-scale-lr` rescales it for other batch sizes), AdamW
# betas (0.9, 0.95) and weight decay 0.05 (MAE), 10 warm-up epochs, the
# augmentation (random scale of the 448 px tiles to 224-448 px, 224 px crop,
# flips) and the SAR statistics below.
#
# Data (a mixed corpus, like the paper's ~3 M images with ~450 K optical-SAR
# pairs), under data/rs_pretrain/:
#   pairs/optical/<name>.<ext>, pairs/sar/<name>.<ext>   co-registered pairs,
#       matched by file name (or list them in pairs/pairs.txt and set ann_file)
#   optical/**                                         optical-only images
#   sar/**                                             SAR-only images (1 band)
# Remove the datasets you do not have from `train_dataloader.dataset.datasets`.
#
# The checkpoint initialises every downstream RS-vHeat config:
#   backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='work_dirs/.../epoch_200.pth',
#                               prefix='backbone.'))
_base_ = ['mmpretrain::_base_/default_runtime.py']
custom_imports = dict(imports=['rsvheat_mm'], allow_failed_imports=False)

img_size = 224
# ImageNet statistics for the RGB optical bands; SAR: statistics of 8-bit
# (dB-scaled) intensity images -- replace with those of your SAR data.
data_preprocessor = dict(
    type='RSVHeatPretrainDataPreprocessor',
    mean=dict(optical=[123.675, 116.28, 103.53], sar=[100.0]),
    std=dict(optical=[58.395, 57.12, 57.375], sar=[50.0]))

model = dict(
    type='RSVHeatPretrain',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='RSVHeat',
        arch='base',
        in_channels=dict(optical=3, sar=1),
        pretrain_img_size=img_size,
        drop_path_rate=0.1,
        # All four outputs: the checkpoint then holds every output norm that
        # downstream models load (stages 1-2 are not used by the losses).
        out_indices=(0, 1, 2, 3)),
    # `fuse_frequency` of stages 3 and 4 (in_channels from the backbone).
    neck=dict(type='RSVHeatFrequencyFusion'),
    decoder=dict(type='RSVHeatReconstructionDecoder', channels=256, min_channels=32),
    projector=dict(type='NonLinearNeck', hid_channels=2048, out_channels=256, num_layers=2,
                   with_bias=True, with_last_bn=False, with_avg_pool=True,
                   norm_cfg=dict(type='SyncBN')),
    loss_spa=dict(type='RSVHeatPixelL1Loss', loss_weight=1.0),
    loss_fre=dict(type='RSVHeatSpectralL1Loss', loss_weight=1.0),
    loss_con=dict(type='RSVHeatCosineContrastiveLoss', margin=0.2, loss_weight=1.0),
    fuse_indices=(2, 3),
    contrast_index=3)
# Stages 1-2 output norms take no part in the losses (see out_indices).
find_unused_parameters = True

# The paper's split: low + high == image, so the encoder sees all of the
# reconstruction target (README, design risk). Variants that withhold it:
# ...-banddrop_... (drop_range: a band dropped from both views) and
# ...-cross_... (target_mode='cross': each view predicts the other).
masking = dict(type='RSVHeatFrequencyMasking', ratio_range=(0.2, 0.3), ratio_mode='area')
# Random scale (a GSD jitter: the 448 px tiles shrink to 224-448 px) and a
# random 224 px crop. mmpretrain's RandomResizedCrop cannot be used for pairs:
# its shared-randomness bookkeeping is broken upstream (a subclass registers
# `rand_crop_params` a second time), so TransformBroadcaster rejects it.
geometric = [
    dict(type='RandomResize', scale=(2 * img_size, 2 * img_size), ratio_range=(0.5, 1.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=img_size, pad_if_needed=True),
    dict(type='RandomFlip', prob=0.5, direction=['horizontal', 'vertical']),
]
# A pair is resized, cropped and flipped identically (shared random
# parameters); `img_shape` is updated once.
paired_pipeline = [
    dict(type='LoadRSVHeatPretrainImages'),
    dict(type='TransformBroadcaster',
         mapping=dict(img=['img', 'partner_img'], img_shape=['img_shape', ...]),
         auto_remap=True, share_random_params=True, transforms=geometric),
    masking,
    dict(type='PackRSVHeatPretrainInputs'),
]
single_pipeline = [dict(type='LoadRSVHeatPretrainImages'), *geometric, masking,
                   dict(type='PackRSVHeatPretrainInputs')]

data_root = 'data/rs_pretrain'
train_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    # Mixed band counts (3-band optical, 1-band SAR) and optional partners.
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(
        type='ConcatDataset',
        datasets=[
            dict(type='RSVHeatPairedDataset', data_root=f'{data_root}/pairs',
                 data_prefix=dict(img_path='optical', partner_path='sar'),
                 modality='optical', partner_modality='sar', pipeline=paired_pipeline),
            dict(type='RSVHeatImageFolderDataset', data_root=f'{data_root}/optical',
                 modality='optical', pipeline=single_pipeline),
            dict(type='RSVHeatImageFolderDataset', data_root=f'{data_root}/sar',
                 modality='sar', pipeline=single_pipeline),
        ]))

optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.95), weight_decay=0.05),
    clip_grad=dict(max_norm=5.0),
    # No weight decay on the heat-conduction embeddings, norms and biases.
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                       custom_keys=dict(fve=dict(decay_mult=0.0), sce=dict(decay_mult=0.0),
                                        gamma=dict(decay_mult=0.0))))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=10,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=190, eta_min=1e-6, by_epoch=True, begin=10, end=200,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=200)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3))
randomness = dict(seed=0, diff_rank_seed=True)
auto_scale_lr = dict(base_batch_size=512)
