# RS-vHeat-B pretraining, variant that withholds information (README, design
# risk; docs/pretraining.md): the paper's recipe, except that a band of
# frequencies is dropped from *both* views. The high view is the paper's (the
# coefficients beyond 20-30 %); the low view keeps only the innermost 5-10 %
# and the 15-20 % in between are in neither view (drawn per sample). The target
# is still the whole image, so the model must infer the missing band instead of
# passing its input through (with the paper's split, low + high == image).
# Why the band sits inside the paper's sector: beyond it lies only ~4 % of a
# remote-sensing image's AC energy (measured on the bundled LoveDA tiles), too
# little to withhold; the band 5-10 % .. 20-30 % holds ~20 %.
_base_ = ['./rsvheat-pretrain_rsvheat-b_8xb64-amp-coslr-200e_opt-sar-224px.py']

img_size = 224
masking = dict(type='RSVHeatFrequencyMasking', ratio_range=(0.05, 0.1), ratio_mode='area',
               drop_range=(0.15, 0.2))
geometric = [
    dict(type='RandomResize', scale=(2 * img_size, 2 * img_size), ratio_range=(0.5, 1.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=img_size, pad_if_needed=True),
    dict(type='RandomFlip', prob=0.5, direction=['horizontal', 'vertical']),
]
paired_pipeline = [
    dict(type='LoadRSVHeatPretrainImages'),
    dict(type='TransformBroadcaster',
         mapping=dict(img=['img', 'partner_img'], img_shape=['img_shape', ...]),
         auto_remap=True, share_random_params=True, transforms=geometric),
    masking,
    dict(type='PackRSVHeatPretrainInputs'),
]
single_pipeline = [dict(type='LoadRSVHeatPretrainImages'), *geometric, masking,
                   dict(type='PackRSVHeatPretrainInputs')]

data_root = 'data/rs_pretrain'
train_dataloader = dict(
    dataset=dict(
        datasets=[
            dict(type='RSVHeatPairedDataset', data_root=f'{data_root}/pairs',
                 data_prefix=dict(img_path='optical', partner_path='sar'),
                 modality='optical', partner_modality='sar', pipeline=paired_pipeline),
            dict(type='RSVHeatImageFolderDataset', data_root=f'{data_root}/optical',
                 modality='optical', pipeline=single_pipeline),
            dict(type='RSVHeatImageFolderDataset', data_root=f'{data_root}/sar',
                 modality='sar', pipeline=single_pipeline),
        ]))
