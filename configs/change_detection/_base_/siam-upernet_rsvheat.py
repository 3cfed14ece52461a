# Siamese RS-vHeat-B + temporal fusion neck + UperNet (+ auxiliary FCN) for
# binary change detection (mmseg). Both dates share one backbone; the fusion
# neck concatenates the two feature pyramids level by level and projects each
# level back to its single-date width with a 3x3 conv-BN-ReLU, so the
# UperNet/FCN heads of the segmentation base are reused unchanged with
# num_classes=2 (unchanged / changed).
_base_ = ['../../_base_/models/upernet_rsvheat.py']
norm_cfg = dict(type='SyncBN', requires_grad=True)
# mean/std of ONE date; applied to both (BitemporalDataPreProcessor).
data_preprocessor = dict(
    type='BitemporalDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255)
model = dict(
    type='CDSiameseEncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(in_channels=dict(optical=3)),
    fusion_neck=dict(
        type='CDFusionNeck',
        in_channels=[128, 256, 512, 1024],
        policy='concat',
        out_channels=[128, 256, 512, 1024],
        norm_cfg=norm_cfg),
    decode_head=dict(num_classes=2),
    auxiliary_head=dict(num_classes=2))
