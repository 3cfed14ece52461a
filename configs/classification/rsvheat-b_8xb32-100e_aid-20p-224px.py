# RS-vHeat-B fine-tuned on AID (30 classes, 10 000 600x600 scenes) with 20 %
# of every class for training and 80 % for testing; paper OA 96.81.
#
# Data: unzip the AID release to data/aid/AID/<class>/*.jpg, then
#   python tools/dataset_converters/scene_cls_split.py data/aid/AID --train-ratio 0.2 --seed 0
# writes data/aid/splits/{classes,train_20pct_seed0,test_20pct_seed0}.txt.
_base_ = ['./_base_/rsvheat-b_finetune-100e_scene-cls-224px.py']

data_root = 'data/aid'
num_classes = 30
split = '20pct_seed0'
data_preprocessor = dict(num_classes=num_classes)
model = dict(head=dict(num_classes=num_classes))
train_dataloader = dict(
    dataset=dict(data_root=data_root, data_prefix='AID', ann_file=f'splits/train_{split}.txt',
                 classes=f'{data_root}/splits/classes.txt'))
val_dataloader = dict(
    dataset=dict(data_root=data_root, data_prefix='AID', ann_file=f'splits/test_{split}.txt',
                 classes=f'{data_root}/splits/classes.txt'))
test_dataloader = val_dataloader
