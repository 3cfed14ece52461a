# RS-vHeat-B pretraining, variant that withholds information (README, design
# risk; docs/pretraining.md): the paper's recipe, except that nothing is
# fused -- the features of the low-frequency view alone are decoded into the
# high-frequency view and vice versa (L_spa and L_fre over both directions).
# The encoder never sees what it has to predict. L_con is unchanged.
_base_ = ['./rsvheat-pretrain_rsvheat-b_8xb64-amp-coslr-200e_opt-sar-224px.py']

model = dict(target_mode='cross', neck=None)
