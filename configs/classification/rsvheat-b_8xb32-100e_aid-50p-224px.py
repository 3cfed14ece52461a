# RS-vHeat-B on AID with 50 % of every class for training; paper OA 97.58.
# Split: python tools/dataset_converters/scene_cls_split.py data/aid/AID --train-ratio 0.5 --seed 0
_base_ = ['./rsvheat-b_8xb32-100e_aid-20p-224px.py']

split = '50pct_seed0'
train_dataloader = dict(dataset=dict(ann_file=f'splits/train_{split}.txt'))
val_dataloader = dict(dataset=dict(ann_file=f'splits/test_{split}.txt'))
test_dataloader = val_dataloader
