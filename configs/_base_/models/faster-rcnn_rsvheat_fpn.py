# Faster R-CNN + FPN on RS-vHeat-B (mmdet): the protocol of SkySense/RingMo for
# DIOR and SAR-AIRcraft-1.0. Only the backbone (and the FPN inputs) differ from
# mmdet's Faster R-CNN R-50-FPN; every op has a CPU kernel in mmcv
# (RoIAlign, nms), so the model trains and tests without CUDA.
_base_ = ['mmdet::_base_/models/faster-rcnn_r50_fpn.py']
custom_imports = dict(imports=['rsvheat_mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='RSVHeat',
        # arch defaults to 'base' (RS-vHeat-B, C=128); children may set a
        # name or dict(depths=[...], embed_dims=C). Dataset configs keep only
        # the stem they use (an unused stem stalls DDP without
        # find_unused_parameters).
        in_channels=dict(optical=3, sar=1),
        pretrain_img_size=224,
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        with_cp=False),
    neck=dict(in_channels=[128, 256, 512, 1024]))
