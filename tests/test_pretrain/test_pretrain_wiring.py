"""RSVHeatPretrain is wired as the spec says, checked against an independent
computation from the packed raw pixels (SciPy DCT, the configured mean/std):

* the encoder's inputs are the low and high frequency views (and nothing
  else), primaries first, then the partners of the paired samples in order;
* the reconstruction target is the unmasked image, in pixels (L_spa) and
  in DCT coefficients (L_fre);
* partners line up with their primaries (encoder rows, targets, and the
  positives given to L_con).

Each check is also run on deliberately mis-wired models (patched in the
test) and must fail there: a loss that merely falls would not notice them.
"""
import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate
from scipy import fft as sp_fft

from rsvheat_mm.datasets.transforms.frequency_masking import RSVHeatFrequencyMasking
from rsvheat_mm.models.losses.pretrain_losses import RSVHeatPixelL1Loss
from rsvheat_mm.models.selfsup.rsvheat_pretrain import RSVHeatPretrain
from tests.test_pretrain.utils import build_model, make_samples


def _dct(x):
    return sp_fft.dctn(x, axes=(-2, -1), norm='ortho')


def _idct(x):
    return sp_fft.idctn(x, axes=(-2, -1), norm='ortho')


def expected_rows(model, samples):
    """Per row of the model's batch (primaries, then the partners of the
    paired primaries in order): modality, normalised image, low and high
    views, recomputed from the raw packed pixels and the sample's masks."""
    pre = model.data_preprocessor
    rows, partners = [], []
    for sample in samples:
        ds = sample['data_samples']
        low_mask = ds.freq_mask.numpy()
        high_mask = ds.freq_high_mask.numpy()
        for raw, modality, into in ((sample['inputs'][0], ds.modality, rows),
                                    (ds.get('partner_inputs', [None])[0],
                                     ds.partner_modality, partners)):
            if raw is None:
                continue
            img = raw.double().numpy()
            spec = _dct(img)
            low, high = _idct(spec * low_mask), _idct(spec * high_mask)
            mean = getattr(pre, f'mean_{modality}').double().numpy()
            std = getattr(pre, f'std_{modality}').double().numpy()
            into.append(dict(modality=modality, img=(img - mean) / std,
                             low=(low - mean) / std, high=high / std))
    return rows + partners


def record(model, samples):
    """Run the loss on ``samples``; capture what the encoder, the losses and
    the projector received."""
    rec = {}

    def grab(name):
        def hook(module, args, kwargs):
            rec.setdefault(name, []).append((args, kwargs))
        return hook

    handles = [getattr(model, m).register_forward_pre_hook(grab(m), with_kwargs=True)
               for m in ('backbone', 'loss_spa', 'loss_fre', 'loss_con', 'projector')]
    handles.append(model.backbone.register_forward_hook(
        lambda m, a, out: rec.setdefault('feats', []).append(out)))
    data = model.data_preprocessor(pseudo_collate(samples), True)
    rec['losses'] = model(**data, mode='loss')
    for h in handles:
        h.remove()
    return rec


def close(actual, expected, what):
    actual = actual.detach().double().numpy()
    assert actual.shape == expected.shape, f'{what}: shape {actual.shape} != {expected.shape}'
    err = np.abs(actual - expected).max()
    assert err < 1e-4 * max(1., np.abs(expected).max()), f'{what}: max error {err:.3g}'


def check_encoder_sees_the_views(rec, rows):
    [(args, kwargs)] = rec['backbone']
    x, n = args[0], len(rows)
    assert x.shape[0] == 2 * n, f'encoder got {x.shape[0]} rows for {n} images'
    assert list(kwargs['modality']) == [r['modality'] for r in rows] * 2
    for i, r in enumerate(rows):
        c = r['img'].shape[0]
        close(x[i, :c], r['low'], f'row {i}: low view')
        close(x[n + i, :c], r['high'], f'row {i}: high view')
        assert not x[[i, n + i], c:].any(), f'row {i}: padded bands must be zero'


def check_target_is_the_image(rec, rows):
    [((pred, target, band_mask), _)] = rec['loss_spa']
    assert target.shape[0] == len(rows)
    for i, r in enumerate(rows):
        c = r['img'].shape[0]
        close(target[i, :c], r['img'], f'row {i}: pixel target')
        assert band_mask[i].sum() == c
    # L_fre against SciPy's DCT of the unmasked image (not of a view, not pixels).
    [((pred_f, _, _), _)] = rec['loss_fre']
    assert pred_f is pred
    pred = pred.detach().double().numpy()
    err = [np.abs(_dct(pred[i, :r['img'].shape[0]]) - _dct(r['img'])) for i, r in enumerate(rows)]
    expected = np.concatenate([e.ravel() for e in err]).mean()
    assert rec['losses']['loss_fre'].item() == pytest.approx(expected, rel=1e-4), 'L_fre'
    pix = np.concatenate([np.abs(pred[i, :r['img'].shape[0]] - r['img']).ravel()
                          for i, r in enumerate(rows)]).mean()
    assert rec['losses']['loss_spa'].item() == pytest.approx(pix, rel=1e-4), 'L_spa'


def check_partners_align(rec, samples, model):
    paired = [i for i, s in enumerate(samples) if 'partner_inputs' in s['data_samples']]
    b, idx = len(samples), model.backbone.out_indices.index(model.contrast_index)
    [feats] = rec['feats']
    n = b + len(paired)
    # The projector embeds the backbone's rows as they are (low, then high).
    assert len(rec['projector']) == 2
    for (args, _), half in zip(rec['projector'], (slice(0, n), slice(n, 2 * n))):
        assert torch.equal(args[0][0], feats[idx][half]), 'projector rows != encoder rows'
    # L_con pairs partner row k (row b + k) with primary paired[k].
    for args, kwargs in rec['loss_con']:
        a, p, pos = args
        assert (a.shape[0], p.shape[0]) == (b, len(paired))
        assert pos.tolist() == paired, f'L_con positives {pos.tolist()} != {paired}'


@pytest.fixture()
def model():
    return build_model()


def test_wiring_on_a_mixed_batch(model, samples):
    rows = expected_rows(model, samples)
    assert [r['modality'] for r in rows] == ['optical'] * 3 + ['sar'] + ['optical'] + ['sar'] * 3
    rec = record(model, samples)
    check_encoder_sees_the_views(rec, rows)
    check_target_is_the_image(rec, rows)
    check_partners_align(rec, samples, model)


def _miswire(monkeypatch, how):
    original = RSVHeatPretrain._gather_batch

    def gather(self, inputs, data_samples):
        img, low, high, mods, pairs = original(self, inputs, data_samples)
        b = len(data_samples)
        if how == 'image_as_both_views':
            low, high = img, img
        elif how == 'reversed_partners':
            order = list(range(b)) + list(range(img.shape[0] - 1, b - 1, -1))
            img, low, high = img[order], low[order], high[order]
        elif how == 'low_view_as_target':
            img = low
        if how == 'image_as_both_views_reversed_partners':  # the example
            order = list(range(b)) + list(range(img.shape[0] - 1, b - 1, -1))
            img, low, high = img[order], img[order], img[order]
        return img, low, high, mods, pairs

    monkeypatch.setattr(RSVHeatPretrain, '_gather_batch', gather)


@pytest.mark.parametrize('how, fails', [
    ('image_as_both_views', ['encoder']),
    ('image_as_both_views_reversed_partners', ['encoder', 'target']),
    ('reversed_partners', ['encoder', 'target']),
    ('low_view_as_target', ['target']),
    ('pixel_loss_as_spectral', ['target']),
    ('reversed_positives', ['partners']),
])
def test_checks_catch_a_miswired_model(model, samples, monkeypatch, how, fails):
    if how == 'pixel_loss_as_spectral':
        model.loss_fre = RSVHeatPixelL1Loss()
    elif how == 'reversed_positives':
        contrast = RSVHeatPretrain._contrast
        monkeypatch.setattr(RSVHeatPretrain, '_contrast',
                            lambda self, low, high, pairs, b: contrast(self, low, high,
                                                                       pairs[::-1], b))
    else:
        _miswire(monkeypatch, how)
    rows = expected_rows(model, samples)
    rec = record(model, samples)
    checks = dict(encoder=lambda: check_encoder_sees_the_views(rec, rows),
                  target=lambda: check_target_is_the_image(rec, rows),
                  partners=lambda: check_partners_align(rec, samples, model))
    for name, check in checks.items():
        if name in fails:
            with pytest.raises(AssertionError):
                check()
        else:
            check()


def test_band_drop_withholds_the_band_from_both_views(model):
    masking = RSVHeatFrequencyMasking(ratio_range=0.25, drop_range=0.15)
    samples = make_samples(('pair', 'optical'), masking=masking)
    ds = samples[0]['data_samples']
    low, high = ds.freq_mask, ds.freq_high_mask
    assert not (low & high).any()
    assert (~(low | high)).float().mean().item() == pytest.approx(0.15, abs=1e-3)
    assert ds.drop_fraction == pytest.approx(0.15, abs=1e-3)
    # the views no longer add up to the image: the encoder lacks the band
    img, lo, hi = samples[0]['inputs']
    missing = (img - lo - hi).double().numpy()
    band = _idct(_dct(img.double().numpy()) * (~(low | high)).numpy())
    np.testing.assert_allclose(missing, band, atol=1e-3)
    rows = expected_rows(model, samples)
    rec = record(model, samples)
    check_encoder_sees_the_views(rec, rows)
    check_target_is_the_image(rec, rows)  # still the whole image
    check_partners_align(rec, samples, model)


def test_cross_mode_predicts_each_view_from_the_other(samples):
    model = build_model(target_mode='cross', neck=None)
    assert not model.with_neck
    rows = expected_rows(model, samples)
    rec = record(model, samples)
    check_encoder_sees_the_views(rec, rows)
    check_partners_align(rec, samples, model)
    [((pred, target, band_mask), _)] = rec['loss_spa']
    n = len(rows)
    assert pred.shape[0] == target.shape[0] == 2 * n
    for i, r in enumerate(rows):
        c = r['img'].shape[0]
        close(target[i, :c], r['high'], f'row {i}: the low view predicts the high view')
        close(target[n + i, :c], r['low'], f'row {i}: the high view predicts the low view')
    # the decoder reads each view's own features, unfused
    with pytest.raises(ValueError, match="neck=None"):
        build_model(target_mode='cross')
