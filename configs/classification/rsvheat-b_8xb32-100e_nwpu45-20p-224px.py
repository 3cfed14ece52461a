# RS-vHeat-B on NWPU-RESISC45 with 20 % of every class for training; paper OA 95.66.
# Split: python tools/dataset_converters/scene_cls_split.py \
#            data/nwpu-resisc45/NWPU-RESISC45 --train-ratio 0.2 --seed 0
_base_ = ['./rsvheat-b_8xb32-100e_nwpu45-10p-224px.py']

split = '20pct_seed0'
train_dataloader = dict(dataset=dict(ann_file=f'splits/train_{split}.txt'))
val_dataloader = dict(dataset=dict(ann_file=f'splits/test_{split}.txt'))
test_dataloader = val_dataloader
