# Demo / smoke run of the scene-classification recipe on bundled real data:
# a tiny RS-vHeat fine-tuned for 24 iterations on the aerial scenes in
# demo/data/scenes (labels read off the images, in scenes-cls_ann.txt:
# 2, 3, 6 airport; 7, 8 baseball diamond; 4 harbour; 5 tennis courts; the
# mixed school scene 1 is left out), evaluated on the same seven images --
# it shows the pipeline working end to end (RandAugment, Mixup/CutMix, label
# smoothing, layer-wise lr decay), not a benchmark. For the AID/NWPU
# configs see configs/classification/.
_base_ = ['../classification/_base_/rsvheat-b_finetune-100e_scene-cls-224px.py']

num_classes = 4
classes = ('airport', 'baseball_diamond', 'harbor', 'tennis_court')
data_preprocessor = dict(num_classes=num_classes)
model = dict(
    # the pretraining demo's backbone size (tools/demo.py starts it from that
    # checkpoint); restated without the recipe's RS-vHeat-B init_cfg
    backbone=dict(_delete_=True, type='RSVHeat', arch=dict(depths=[1, 1, 2, 1], embed_dims=32),
                  in_channels=dict(optical=3), pretrain_img_size=224, drop_path_rate=0.1,
                  out_indices=(3, )),
    head=dict(num_classes=num_classes, in_channels=256))

dataset = dict(data_root='', data_prefix='demo/data/scenes',
               ann_file='configs/demo/scenes-cls_ann.txt', classes=classes)
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                        dataset=dataset)
val_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                      dataset=dataset)
test_dataloader = val_dataloader

optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=5),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=5, end=24),
]
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=24, val_interval=12)
custom_hooks = []  # an EMA over 24 steps would stay at the initial weights
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=5),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=24, max_keep_ckpts=1,
                    save_best=None))
log_processor = dict(by_epoch=False)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
