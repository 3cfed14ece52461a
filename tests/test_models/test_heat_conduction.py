"""The Heat Conduction Operator against the mathematics it claims."""
import importlib
import math

import numpy as np
import pytest
import scipy.fft
import torch

from rsvheat_mm.models.layers import (dct2d, dct_matrix, heat_conduction, heat_decay,
                                      heat_frequencies, idct2d)


@pytest.mark.parametrize('n', [1, 2, 7, 16, 33])
def test_dct_basis_equals_scipy(n):
    basis = dct_matrix(n, dtype=torch.float64).numpy()
    ref = scipy.fft.dct(np.eye(n), axis=0, norm='ortho')
    np.testing.assert_allclose(basis, ref, atol=1e-12)
    np.testing.assert_allclose(basis @ basis.T, np.eye(n), atol=1e-12)


def test_basis_is_cached_and_shared():
    a = dct_matrix(12, dtype=torch.float32)
    b = dct_matrix(12, dtype=torch.float32)
    assert a is b
    assert dct_matrix(12, dtype=torch.float64) is not a


@pytest.mark.parametrize('impl', ['matmul', 'fft', 'scipy'])
@pytest.mark.parametrize('shape', [(9, 9), (12, 20), (17, 6)])
def test_dct2d_equals_scipy_dctn_and_inverts(impl, shape):
    torch.manual_seed(0)
    h, w = shape
    x = torch.randn(2, h, w, 5, dtype=torch.float64)  # channels-last
    ref = scipy.fft.dctn(x.numpy(), axes=(1, 2), norm='ortho')
    y = dct2d(x, channels_last=True, impl=impl)
    np.testing.assert_allclose(y.numpy(), ref, atol=1e-10)
    torch.testing.assert_close(idct2d(y, True, impl), x, atol=1e-10, rtol=0)
    # channels-first gives the same transform
    xc = x.permute(0, 3, 1, 2).contiguous()
    yc = dct2d(xc, channels_last=False, impl=impl)
    np.testing.assert_allclose(yc.permute(0, 2, 3, 1).numpy(), ref, atol=1e-10)


def test_auto_mixes_pocketfft_and_gemm_axes(monkeypatch):
    """'auto' takes pocketfft for long CPU axes and GEMMs for short ones, in
    one transform; half precision, other devices and graphs keep GEMMs."""
    # the module (the package exports a function of the same name)
    hc = importlib.import_module('rsvheat_mm.models.layers.heat_conduction')
    monkeypatch.setitem(hc.POCKETFFT_MIN_LENGTH, 'cpu', 10)
    x = torch.randn(2, 12, 7, 5, dtype=torch.float64)
    assert [hc.axis_impl(n, x, 'auto') for n in (12, 7)] == ['scipy', 'matmul']
    assert hc.axis_impl(12, x.to(torch.bfloat16), 'auto') == 'matmul'
    assert hc.axis_impl(12, torch.empty(1, device='meta'), 'auto') == 'matmul'
    ref = scipy.fft.dctn(x.numpy(), axes=(1, 2), norm='ortho')
    y = dct2d(x, True, 'auto')
    np.testing.assert_allclose(y.numpy(), ref, atol=1e-10)
    torch.testing.assert_close(idct2d(y, True, 'auto'), x, atol=1e-10, rtol=0)
    with pytest.raises(ValueError, match='impl'):
        dct2d(x, True, 'dft')


def test_pocketfft_gradients_equal_gemm_gradients():
    from rsvheat_mm.models.layers import pocketfft_dct
    x = torch.randn(2, 6, 5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: pocketfft_dct(t, [1, 2], False), (x, ))
    assert torch.autograd.gradcheck(lambda t: pocketfft_dct(t, [1], True), (x, ))
    decay = torch.rand(6, 5, 3, dtype=torch.float64, requires_grad=True)
    grads = {}
    for impl in ('matmul', 'scipy'):
        out = heat_conduction(x, decay, True, impl)
        grads[impl] = torch.autograd.grad(out.sin().sum(), (x, decay))
    for a, b in zip(grads['matmul'], grads['scipy']):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_pocketfft_half_precision_runs_in_fp32():
    x = torch.randn(1, 8, 6, 4)
    y = dct2d(x.to(torch.bfloat16), True, 'scipy')
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), dct2d(x.to(torch.bfloat16).float(), True, 'matmul'),
                               atol=2e-2, rtol=2e-2)


def test_pocketfft_op_on_fake_tensors():
    """Shape propagation (FLOP counting, memory estimates) through the op."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode():
        y = dct2d(torch.empty(1, 40, 30, 8), True, 'scipy')
    assert y.shape == (1, 40, 30, 8)


def test_zero_conductivity_is_identity():
    x = torch.randn(2, 10, 14, 6)
    decay = heat_decay(torch.zeros(10, 14, 6))
    assert torch.all(decay == 1)
    torch.testing.assert_close(heat_conduction(x, decay), x, atol=1e-5, rtol=0)


def test_mean_conserved_and_gain_bounded():
    torch.manual_seed(1)
    x = torch.randn(3, 11, 13, 4, dtype=torch.float64)
    k = torch.rand(11, 13, 4, dtype=torch.float64) * 5
    decay = heat_decay(k)
    assert decay[0, 0].eq(1).all(), 'DC gain must be exactly 1'
    assert (decay > 0).all() and (decay <= 1).all()
    y = heat_conduction(x, decay.double())
    torch.testing.assert_close(y.mean(dim=(1, 2)), x.mean(dim=(1, 2)), atol=1e-10, rtol=0)
    # diffusion never adds energy
    assert (y.pow(2).sum(dim=(1, 2)) <= x.pow(2).sum(dim=(1, 2)) + 1e-9).all()


def test_constant_k_solves_neumann_heat_equation_on_cosine_modes():
    """u0 = sum of Neumann eigenmodes -> u(t=1) = sum exp(-k lam t) modes."""
    h, w, k = 24, 18, 3.0
    py = torch.arange(h, dtype=torch.float64)[:, None] + 0.5  # pixel centres
    px = torch.arange(w, dtype=torch.float64)[None, :] + 0.5
    modes = [(0, 0, 2.0), (1, 0, 1.0), (3, 2, -0.5), (7, 5, 0.25)]
    u0 = sum(a * torch.cos(n * math.pi * py / h) * torch.cos(m * math.pi * px / w)
             for n, m, a in modes)
    exact = sum(a * math.exp(-k * ((n * math.pi / h)**2 + (m * math.pi / w)**2)) *
                torch.cos(n * math.pi * py / h) * torch.cos(m * math.pi * px / w)
                for n, m, a in modes)
    decay = heat_decay(torch.full((h, w, 1), k, dtype=torch.float64)).double()
    out = heat_conduction(u0[None, :, :, None], decay)[0, :, :, 0]
    torch.testing.assert_close(out, exact, atol=1e-6, rtol=0)


def test_constant_k_is_gaussian_blur_with_reflective_borders():
    """A Gaussian bump near a border diffuses into the method-of-images answer.

    Continuous heat equation u_t = k (u_xx + u_yy) (unit pixel spacing, the
    frequencies n*pi/H are per pixel): a Gaussian of variance s^2 becomes one
    of variance s^2 + 2 k t; an insulated wall reflects it (image source).
    """
    h, w, k, s2 = 64, 48, 4.0, 9.0
    cy, cx = 5.0, 30.0  # close to the top wall
    y = torch.arange(h, dtype=torch.float64)[:, None] + 0.5
    x = torch.arange(w, dtype=torch.float64)[None, :] + 0.5

    def bump(var, cy_, cx_):
        return torch.exp(-((y - cy_)**2 + (x - cx_)**2) / (2 * var)) / (2 * math.pi * var)

    # images across the top wall (y = 0); the others are too far to matter
    u0 = bump(s2, cy, cx) + bump(s2, -cy, cx)
    var = s2 + 2 * k
    exact = bump(var, cy, cx) + bump(var, -cy, cx)
    decay = heat_decay(torch.full((h, w, 1), k, dtype=torch.float64)).double()
    out = heat_conduction(u0[None, :, :, None], decay)[0, :, :, 0]
    assert (out - exact).abs().max() < 1e-3 * exact.max()


def test_frequencies_normalised_to_pi():
    lam = heat_frequencies(8, 4)
    assert lam.shape == (8, 4, 1)
    assert lam[0, 0, 0] == 0
    assert torch.isclose(lam[7, 0, 0], torch.tensor((7 * math.pi / 8)**2))


def test_decay_in_fp32_under_autocast():
    k = torch.rand(16, 16, 8, dtype=torch.bfloat16)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        d = heat_decay(k)
    assert d.dtype == torch.float32
