# Any binary change-detection set in the A/B/label layout (WHU-CD, LEVIR-CD+,
# S2Looking, SYSU-CD, CDD, your own): the LEVIR-CD recipe with a shorter
# schedule. Copy this file and set `data_root` to a folder with
# {train,val,test}/{A,B,label}/<name><suffix> (or pass
# --cfg-options train_dataloader.dataset.data_root=... val_dataloader.dataset.data_root=...
# test_dataloader.dataset.data_root=...). Per-set knobs:
#   * file types: img_suffix / seg_map_suffix below (e.g. '.tif', '.jpg').
#   * label values: LoadBitemporalChangeLabel(threshold=0) reads every value
#     > 0 as change (0/1 and 0/255 masks); ignore_values=(v, ...) for no-data.
#   * split lists instead of folders: BitemporalCDDataset(ann_file='train.txt').
#   * tile size: crop_size / model.test_cfg (crop 256, stride 128 here).
_base_ = ['./siam-upernet_rsvheat-b_4xb4-40k_levir-cd-256x256.py']
data_root = 'data/my_cd_dataset'
img_suffix = '.png'
seg_map_suffix = '.png'
train_dataloader = dict(dataset=dict(data_root=data_root, img_suffix=img_suffix,
                                     seg_map_suffix=seg_map_suffix))
val_dataloader = dict(dataset=dict(data_root=data_root, img_suffix=img_suffix,
                                   seg_map_suffix=seg_map_suffix))
test_dataloader = dict(dataset=dict(data_root=data_root, img_suffix=img_suffix,
                                    seg_map_suffix=seg_map_suffix))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=1000),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=1000, end=20000),
]
train_cfg = dict(max_iters=20000, val_interval=2000)
default_hooks = dict(checkpoint=dict(interval=2000))
