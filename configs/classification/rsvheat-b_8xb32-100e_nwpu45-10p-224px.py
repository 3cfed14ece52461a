# RS-vHeat-B fine-tuned on NWPU-RESISC45 (45 classes x 700 256x256 scenes)
# with 10 % of every class for training and 90 % for testing; paper OA 92.01.
#
# Data: unrar the release to data/nwpu-resisc45/NWPU-RESISC45/<class>/*.jpg, then
#   python tools/dataset_converters/scene_cls_split.py data/nwpu-resisc45/NWPU-RESISC45 \
#       --train-ratio 0.1 --seed 0
# writes data/nwpu-resisc45/splits/{classes,train_10pct_seed0,test_10pct_seed0}.txt.
_base_ = ['./_base_/rsvheat-b_finetune-100e_scene-cls-224px.py']

data_root = 'data/nwpu-resisc45'
num_classes = 45
split = '10pct_seed0'
data_preprocessor = dict(num_classes=num_classes)
model = dict(head=dict(num_classes=num_classes))
train_dataloader = dict(
    dataset=dict(data_root=data_root, data_prefix='NWPU-RESISC45',
                 ann_file=f'splits/train_{split}.txt',
                 classes=f'{data_root}/splits/classes.txt'))
val_dataloader = dict(
    dataset=dict(data_root=data_root, data_prefix='NWPU-RESISC45',
                 ann_file=f'splits/test_{split}.txt',
                 classes=f'{data_root}/splits/classes.txt'))
test_dataloader = val_dataloader
