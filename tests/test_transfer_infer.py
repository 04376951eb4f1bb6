"""Full-image inference: padding to the network's multiple, tiling with blended overlaps, clipping."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from transfer.infer import pad_to_multiple, predict, ramp_weights, run_padded, run_tiled, tile_starts, to_tensor
from transfer.models import create_model


class PointwiseStub(torch.nn.Module):
    """A model whose output at a pixel depends only on that pixel, so tiling must reproduce it exactly."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale, self.pad_multiple = scale, 16 * (3 - scale)
        self.weight = torch.nn.Parameter(torch.tensor(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[-2] % self.pad_multiple == 0 and x.shape[-1] % self.pad_multiple == 0
        out = x[:, :3] * self.weight + 0.1
        return F.interpolate(out, scale_factor=self.scale, mode="nearest") if self.scale > 1 else out


@pytest.mark.parametrize("height,width", [(50, 70), (32, 32), (7, 100)])
def test_any_size_is_padded_and_cropped_back(height: int, width: int) -> None:
    model = create_model("sid_unet", width=4).eval()
    out = run_padded(model, torch.rand(1, 3, height, width))
    assert out.shape == (1, 3, height, width)
    raw = create_model("sid_unet", width=4, input_kind="raw").eval()
    assert run_padded(raw, torch.rand(1, 4, height, width)).shape == (1, 3, 2 * height, 2 * width)


def test_padding_keeps_the_original_pixels() -> None:
    x = torch.rand(1, 3, 40, 50)
    padded, size = pad_to_multiple(x, 32)
    assert padded.shape[-2:] == (64, 64) and size == (40, 50)
    assert torch.equal(padded[..., :40, :50], x)


@pytest.mark.parametrize("scale,shape", [(1, (100, 150, 3)), (2, (70, 90, 4))])
def test_tiled_equals_whole_for_a_pointwise_model(scale: int, shape: tuple[int, int, int]) -> None:
    stub = PointwiseStub(scale).eval()
    x = to_tensor(np.random.default_rng(0).random(shape, dtype=np.float32))
    whole = run_padded(stub, x)
    tiled = run_tiled(stub, x, tile=48, overlap=16)
    assert tiled.shape == whole.shape
    assert torch.allclose(tiled, whole, atol=1e-6)


def test_tiled_unet_is_close_to_whole_and_improves_with_overlap() -> None:
    torch.manual_seed(0)
    model = create_model("sid_unet", width=4).eval()
    x = to_tensor(np.random.default_rng(1).random((96, 160, 3), dtype=np.float32))
    whole = run_padded(model, x)
    small = (run_tiled(model, x, tile=64, overlap=16) - whole).abs()
    large = (run_tiled(model, x, tile=128, overlap=64) - whole).abs()
    assert small.mean() < 1e-2 * whole.std()
    assert large.mean() < small.mean()
    assert torch.equal(run_tiled(model, x, tile=256, overlap=32), whole)  # one tile: identical


def test_tile_layout_covers_everything_with_positive_weights() -> None:
    for size, tile, overlap in [(100, 48, 16), (48, 48, 16), (30, 48, 16), (1000, 512, 64)]:
        starts = tile_starts(size, tile, overlap)
        covered = np.zeros(size, bool)
        for s in starts:
            covered[s: s + tile] = True
        assert covered.all() and starts[0] == 0 and min(starts[-1] + tile, size) == size
    weights = ramp_weights(48, 16, at_start=False, at_end=False)
    assert weights.min() > 0 and weights.max() == 1 and weights[0] < weights[16]


def test_predict_clips_to_valid_range_and_restores_training_mode() -> None:
    stub = PointwiseStub(1)
    stub.weight.data.fill_(10.0)
    stub.train()
    out = predict(stub, np.full((40, 40, 3), 0.9, np.float32), tile=None)
    assert out.min() >= 0 and out.max() == 1.0 and stub.training
    stub.weight.data.fill_(-10.0)
    assert predict(stub, np.full((40, 40, 3), 0.9, np.float32)).max() == 0.0


def test_large_input_is_tiled_automatically() -> None:
    stub = PointwiseStub(1).eval()
    img = np.random.default_rng(2).random((70, 90, 3), dtype=np.float32)
    assert np.allclose(predict(stub, img, tile=32, overlap=8), np.clip(img * 0.5 + 0.1, 0, 1), atol=1e-6)


def test_alpha_reaches_the_model_whole_and_tiled() -> None:
    from transfer.errors import TransferError

    torch.manual_seed(0)
    model = create_model("estimate_enhance", width=4, alpha=1.5).eval()
    img = np.random.default_rng(0).uniform(0, 0.3, (40, 72, 3)).astype(np.float32)
    for tile in (None, 32):  # one pass, and tiles (each tile gets the same alpha)
        default, configured = predict(model, img, tile=tile), predict(model, img, tile=tile, alpha=1.5)
        assert np.array_equal(default, configured)
        assert not np.allclose(predict(model, img, tile=tile, alpha=0.0), default)
    x = to_tensor(img)
    assert torch.equal(run_tiled(model, x, 32, 8, alpha=0.5), run_tiled(model, x, 32, 8, alpha=0.5))
    assert not torch.equal(run_tiled(model, x, 32, 8, alpha=0.5), run_tiled(model, x, 32, 8))
    with pytest.raises(TransferError, match="model sid_unet has no alpha input"):
        predict(create_model("sid_unet", width=4), img, alpha=1.0)
    with pytest.raises(TransferError, match=">= 0"):
        predict(model, img, alpha=float("nan"))


def test_flip_averaging_undoes_each_flip() -> None:
    from transfer.infer import predict, predict_flips
    from transfer.models import create_model

    torch.manual_seed(0)
    model = create_model("plain_cnn", width=4).eval()
    image = np.random.default_rng(0).random((32, 48, 3)).astype(np.float32)
    averaged = predict_flips(model, image, tile=None)
    by_hand = np.mean([np.flip(predict(model, np.ascontiguousarray(np.flip(image, axes)), tile=None), axes)
                       for axes in ((0,), (1,), (0, 1))] + [predict(model, image, tile=None)], axis=0)
    assert averaged.shape == image.shape and np.allclose(averaged, by_hand, atol=1e-6)
    assert not np.allclose(averaged, predict(model, image, tile=None), atol=1e-4)  # the flips do change it
