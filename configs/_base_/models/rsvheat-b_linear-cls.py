# Scene classification (mmpretrain): RS-vHeat-B -> global average pooling ->
# linear head, label smoothing 0.1 and Mixup/CutMix batch augments (the
# DeiT/Swin fine-tuning recipe). Children set `num_classes` in the head and
# in the data preprocessor (Mixup/CutMix need it for the one-hot targets).
custom_imports = dict(imports=['rsvheat_mm'], allow_failed_imports=False)
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='RSVHeat',
        # arch defaults to 'base' (RS-vHeat-B); children may set a name or a dict
        in_channels=dict(optical=3, sar=1),
        pretrain_img_size=224,
        drop_path_rate=0.2,
        out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=1024,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        topk=(1, )),
    # Batch augments; set `model.train_cfg=None` to switch them off.
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))
