# UperNet + auxiliary FCN on RS-vHeat-B (mmseg), the SkySense/RingMo protocol.
_base_ = ['mmseg::_base_/models/upernet_swin.py']
custom_imports = dict(imports=['rsvheat_mm'], allow_failed_imports=False)
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    # mmseg's SegDataPreProcessor for any number of bands (multispectral, SAR,
    # optical+SAR): newer mmseg (OneDL) accepts only 1 or 3 mean/std values.
    data_preprocessor=dict(type='MultiBandSegDataPreProcessor'),
    backbone=dict(
        _delete_=True,
        type='RSVHeat',
        # arch defaults to 'base' (RS-vHeat-B); children may set a name or a dict
        # in_channels: RSVHeat's default dict(optical=3, sar=1) builds both stems;
        # datasets of one modality set e.g. in_channels=dict(optical=3) (dicts
        # merge, so it is deliberately not set here).
        pretrain_img_size=224,
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        with_cp=False),
    decode_head=dict(in_channels=[128, 256, 512, 1024], channels=512, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=512, in_index=2, channels=256, norm_cfg=norm_cfg))
