"""HS-FPN: the torch.fft DCT against scipy, the high-pass filter on a constant and an impulse,
SDP's cross-attention on a window of one pixel, the neck inside Faster R-CNN."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
scipy_fft = pytest.importorskip("scipy.fft")

from baselines.necks.hs_fpn import SDP, dct_2d, high_pass, idct_2d  # noqa: E402


@pytest.mark.parametrize("shape", [(8, 8), (7, 10), (1, 5)])
def test_dct_matches_scipy_and_inverts(shape: tuple[int, int]) -> None:
    x = torch.randn(2, 3, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    d = dct_2d(x)
    np.testing.assert_allclose(d.numpy(), scipy_fft.dctn(x.numpy(), axes=(-2, -1), norm="ortho"),
                               atol=1e-10)
    np.testing.assert_allclose(idct_2d(d).numpy(), x.numpy(), atol=1e-10)


def test_high_pass_removes_a_constant_map() -> None:
    x = torch.full((1, 2, 16, 12), 3.5, dtype=torch.float64)
    assert high_pass(x, (0.25, 0.25)).abs().max().item() < 1e-10


def test_high_pass_of_an_impulse() -> None:
    x = torch.zeros((1, 1, 16, 16), dtype=torch.float64)
    x[0, 0, 5, 9] = 1.0
    out = high_pass(x, (0.25, 0.25))[0, 0].numpy()
    # Independent reference: scipy DCT, zero the lowest 4 × 4 coefficients, inverse DCT.
    coef = scipy_fft.dctn(x[0, 0].numpy(), norm="ortho")
    coef[:4, :4] = 0
    np.testing.assert_allclose(out, scipy_fft.idctn(coef, norm="ortho"), atol=1e-12)
    # Closed form of what was removed: the impulse's projection on the 16 low DCT bases.
    n = 16
    basis = np.array([[np.sqrt((1 if k == 0 else 2) / n) * np.cos(np.pi * k * (2 * i + 1) / (2 * n))
                       for i in range(n)] for k in range(4)])          # (4, 16)
    low = np.outer(basis[:, 5], basis[:, 9])                           # coefficients at (5, 9)
    removed = basis.T @ low @ basis
    np.testing.assert_allclose(out, x[0, 0].numpy() - removed, atol=1e-12)
    assert abs(out.sum()) < 1e-12                     # the DC term is gone
    assert out[5, 9] == pytest.approx(1 - removed[5, 9]) and out[5, 9] > 0.9


def test_sdp_with_one_pixel_windows_adds_the_upper_keys() -> None:
    torch.manual_seed(0)
    sdp = SDP(32, window=1).eval()
    low, high = torch.randn(1, 32, 6, 4), torch.randn(1, 32, 6, 4)
    with torch.no_grad():
        out = sdp(low, high)
        expected = sdp.k(high) + low            # softmax over a single key is 1
    torch.testing.assert_close(out, expected)
    sdp.window = 4                              # 6 × 4 is padded to 8 × 4: padded keys are masked
    with torch.no_grad():
        assert torch.isfinite(sdp(low, high)).all()


def test_hs_fpn_neck_in_faster_rcnn() -> None:
    from baselines.detectors import DetectorSpec, build_detector
    from baselines.necks.hs_fpn import HSFPNConfig, build_hs_fpn_backbone

    torch.manual_seed(0)
    spec = DetectorSpec("faster_rcnn", 1, 64, backbone="resnet18", fpn_channels=32,
                        roi_batch=16, frozen_bn=True)
    backbone = build_hs_fpn_backbone(spec, HSFPNConfig())
    feats = backbone(torch.rand(1, 3, 64, 64))
    assert {k: tuple(v.shape[-2:]) for k, v in feats.items()} == {
        "0": (16, 16), "1": (8, 8), "2": (4, 4), "3": (2, 2), "pool": (1, 1)}
    model = build_detector(spec, backbone=backbone).train()
    losses = model([torch.rand(3, 64, 64)], [{"boxes": torch.tensor([[10.0, 10.0, 18.0, 17.0]]),
                                              "labels": torch.tensor([1])}])
    sum(losses.values()).backward()
    grad = backbone.fpn.hfp[0].channel1[0].weight.grad
    assert grad is not None and grad.abs().sum() > 0    # the DCT channel path learns
