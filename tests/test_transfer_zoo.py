"""Every registered network: shapes at any size, freezing, one training step, checkpoints; the source documents'
other networks' specifics (dense concatenation, alpha, VGG weights)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from test_transfer_fixtures import vgg16_bn_state_dict
from transfer.checkpoint import load_checkpoint, save_checkpoint
from transfer.errors import TransferError
from transfer.infer import predict, run_padded
from transfer.models import (VGG16_GROUPS, block_parameter_counts, count_parameters, create_model, declared_options,
                             freeze_all_but_last, last_blocks, list_models, load_vgg16_backbone, set_trainable_blocks,
                             trainable_blocks)

MODELS = list_models()  # the generic tests run over the whole registry
SRGB_ONLY = [name for name in MODELS if name != "sid_unet"]  # the SID U-Net also takes packed raw input
TINY = {"width": 4}
# a value other than the default for every model-specific option (a new option needs one here)
NON_DEFAULT = {"depth": 2, "activation": "relu", "estimate_depth": 2, "enhance_depth": 1, "alpha": 1.5,
               "curve_gain": 2.0, "curve_gamma": 2.5}


def tiny(name: str, **config) -> torch.nn.Module:
    """A small seeded instance of a registered model."""
    torch.manual_seed(0)
    return create_model(name, **TINY, **config)


def test_every_zoo_model_is_registered() -> None:
    assert set(MODELS) >= {"sid_unet", "plain_cnn", "dense_cnn", "estimate_enhance", "vgg16_residual"}
    with pytest.raises(TransferError, match="known models: .*dense_cnn.*estimate_enhance.*plain_cnn.*sid_unet.*"
                                            "vgg16_residual"):
        create_model("unet3")
    with pytest.raises(TransferError, match="bad option for model 'plain_cnn': kernel; options: width, depth"):
        create_model("plain_cnn", kernel=5)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("height,width", [(37, 51), (16, 19)])
def test_output_shape_on_odd_sizes(name: str, height: int, width: int) -> None:
    model = tiny(name).eval()
    x = torch.rand(2, 3, height, width)
    out = run_padded(model, x)
    assert out.shape == (2, 3, height, width)
    assert torch.isfinite(out).all()
    image = predict(model, x[0].permute(1, 2, 0).numpy(), tile=None)
    assert image.shape == (height, width, 3) and image.min() >= 0.0 and image.max() <= 1.0


@pytest.mark.parametrize("name", MODELS)
def test_parameter_counts_per_block(name: str) -> None:
    model = tiny(name)
    per_block = block_parameter_counts(model)
    trainable, total = count_parameters(model)
    assert list(per_block) == list(model.block_names)
    assert all(n > 0 for n in per_block.values())
    assert sum(per_block.values()) == total == trainable > 0


def test_plain_cnn_filters_double_and_dense_cnn_concatenates() -> None:
    plain, dense = tiny("plain_cnn", depth=3), tiny("dense_cnn", depth=3)
    assert [plain.get_submodule(f"block{i}")[0].out_channels for i in (1, 2, 3)] == [4, 8, 16]
    # dense block k sees the input and all earlier outputs: 3, 3+4, 3+4+8 channels; the head sees all
    assert [dense.get_submodule(f"block{i}")[0].in_channels for i in (1, 2, 3)] == [3, 7, 15]
    assert dense.head.in_channels == 3 + 4 + 8 + 16
    assert isinstance(tiny("plain_cnn", activation="relu").block1[2], torch.nn.ReLU)
    assert isinstance(plain.block1[2], torch.nn.LeakyReLU) and plain.block1[2].negative_slope == 0.2
    with pytest.raises(TransferError, match="activation"):
        create_model("plain_cnn", activation="gelu")


@pytest.mark.parametrize("name", MODELS)
def test_last_n_freezing_trains_exactly_those_blocks(name: str) -> None:
    model = tiny(name)
    for n in (1, 2, model.max_finetune_blocks):
        trained = freeze_all_but_last(model, n)
        wanted = list(model.block_names[-n:]) if name != "global_local" else ["global_head", *model.block_names[-n:]]
        assert trained == [block for block in model.block_names if block in wanted] == sorted(
            last_blocks(n, model), key=model.block_names.index)
        assert trainable_blocks(model) == trained
        frozen_params = sum(p.numel() for p in model.parameters() if not p.requires_grad)
        assert frozen_params == sum(count for block, count in block_parameter_counts(model).items()
                                    if block not in trained)
    with pytest.raises(TransferError, match=f"1..{model.max_finetune_blocks}"):
        freeze_all_but_last(model, model.max_finetune_blocks + 1)
    with pytest.raises(TransferError, match="unknown block"):
        set_trainable_blocks(model, ["no_such_block"])


@pytest.mark.parametrize("name", MODELS)
def test_one_step_moves_only_the_trained_blocks_and_stays_finite(name: str) -> None:
    model = tiny(name).train()
    freeze_all_but_last(model, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    generator = torch.Generator().manual_seed(1)
    x, y = torch.rand(2, 3, 32, 32, generator=generator), torch.rand(2, 3, 32, 32, generator=generator)
    loss = torch.nn.functional.l1_loss(model(x), y)
    loss.backward()
    optimizer.step()
    after = model.state_dict()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    trained = set(last_blocks(2, model))
    changed = {k.split(".")[0] for k in after if not torch.equal(before[k], after[k])}
    assert changed and changed <= trained  # frozen blocks: neither weights nor BN statistics moved


@pytest.mark.parametrize("name", MODELS)
def test_checkpoint_round_trip_rebuilds_the_same_network(name: str, tmp_path: Path) -> None:
    options = [o for o in declared_options(name) if o.type is not Path]  # a backbone only initialises
    assert all(o.name in NON_DEFAULT for o in options), options
    model = tiny(name, **{o.name: NON_DEFAULT[o.name] for o in options}).eval()
    save_checkpoint(tmp_path / "best", model, {"model": name, "model_config": model.config,
                                               "input_kind": model.input_kind})
    loaded, meta = load_checkpoint(tmp_path)
    assert meta["model"] == name and loaded.config == model.config
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(loaded.eval()(x), model(x))


def test_estimate_enhance_adds_the_alpha_weighted_difference_map() -> None:
    model = tiny("estimate_enhance").eval()
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        diff = model.difference_map(x)
        for alpha in (0.5, 2.0):
            combined = x + alpha * diff
            assert torch.allclose(model(x, alpha), combined + model._subnet("enhance", combined))
        assert torch.equal(model(x), model(x, 1.0))  # default alpha
        per_image = model(x, torch.tensor([0.5, 1.0, 2.0]))
        assert torch.allclose(per_image[2], model(x, 2.0)[2], atol=1e-6)
        assert not torch.allclose(per_image[0], per_image[2])
    convs = [m for m in model.estimate_res1.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(7, 3), (3, 7)]


def test_vgg_backbone_weights_load_into_the_encoder(tmp_path: Path) -> None:
    state = vgg16_bn_state_dict(width=4)
    path = tmp_path / "vgg16_bn.pth"
    torch.save(state, path)
    model = tiny("vgg16_residual", backbone_weights=str(path))
    assert "backbone_weights" not in model.config  # the checkpoint carries the weights
    assert torch.equal(model.enc1[0].weight, state["features.0.weight"])
    assert torch.equal(model.enc1[1].running_var, state["features.1.running_var"])
    assert torch.equal(model.enc3[6].bias, state["features.20.bias"])  # group 3's third conv
    assert torch.equal(model.enc5[7].running_mean, state["features.41.running_mean"])  # the 13th BN
    decoder_before = tiny("vgg16_residual").dec1.reduce.weight
    assert torch.equal(model.dec1.reduce.weight, decoder_before)  # the decoder keeps its own init


def test_vgg_plain_weights_without_batch_norm_load_the_convolutions(tmp_path: Path) -> None:
    bn_state = vgg16_bn_state_dict(width=4)
    convs = [k for k in bn_state if k.startswith("features.") and bn_state[k].ndim == 4]
    plain: dict[str, torch.Tensor] = {}
    index = 0
    for n_convs in VGG16_GROUPS:
        for _ in range(n_convs):
            key = convs.pop(0)
            plain[f"features.{index}.weight"] = bn_state[key]
            plain[f"features.{index}.bias"] = bn_state[key.replace("weight", "bias")]
            index += 2  # conv, ReLU
        index += 1
    path = tmp_path / "vgg16.pth"
    torch.save(plain, path)
    model = tiny("vgg16_residual")
    used = load_vgg16_backbone(model, path)
    assert len(used) == 26 and torch.equal(model.enc2[3].weight, plain["features.7.weight"])
    assert torch.equal(model.enc1[1].running_var, torch.ones(4))  # BN untouched: the file has none


def test_vgg_weights_of_the_wrong_width_name_the_first_mismatched_layer(tmp_path: Path) -> None:
    path = tmp_path / "vgg16_bn.pth"
    torch.save(vgg16_bn_state_dict(width=8), path)
    model = tiny("vgg16_residual")
    before = model.enc1[0].weight.clone()
    with pytest.raises(TransferError, match=r"features\.0\.weight .*expected shape \(4, 3, 3, 3\), received "
                                            r"\(8, 3, 3, 3\)") as info:
        load_vgg16_backbone(model, path)
    assert str(path) in str(info.value)
    assert torch.equal(model.enc1[0].weight, before)  # nothing copied from a bad file
    with pytest.raises(TransferError, match="features.0.weight"):
        create_model("vgg16_residual", width=4, backbone_weights=path)


def test_vgg_weights_bad_files(tmp_path: Path) -> None:
    model = tiny("vgg16_residual")
    with pytest.raises(TransferError, match="not found"):
        load_vgg16_backbone(model, tmp_path / "missing.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(TransferError, match="not a readable weights file"):
        load_vgg16_backbone(model, garbage)
    short = tmp_path / "short.pth"
    torch.save({k: v for k, v in vgg16_bn_state_dict(4).items() if not k.startswith("features.40")}, short)
    with pytest.raises(TransferError, match="13 convolutions .* found 12"):
        load_vgg16_backbone(model, short)


def test_zoo_models_refuse_raw_input_and_bad_sizes() -> None:
    for name in SRGB_ONLY:
        with pytest.raises(TransferError, match="sRGB input only"):
            create_model(name, width=4, input_kind="raw")
        with pytest.raises(TransferError, match="width"):
            create_model(name, width=0)
    with pytest.raises(TransferError, match="alpha"):
        create_model("estimate_enhance", alpha=-1.0)


@torch.no_grad()
def test_vgg_output_is_a_sigmoid_in_unit_range() -> None:
    out = tiny("vgg16_residual").eval()(torch.rand(1, 3, 32, 48) * 4 - 2)
    assert out.shape == (1, 3, 32, 48) and float(out.min()) > 0.0 and float(out.max()) < 1.0


def test_global_local_starts_as_its_tone_curve_and_fine_tunes_its_global_head() -> None:
    model = create_model("global_local", width=4, curve_gain=2.0, curve_gamma=2.5).eval()
    x = torch.rand(2, 3, 40, 56) * 0.2  # any size that is a multiple of pad_multiple
    with torch.no_grad():
        assert torch.allclose(model(x), 2.0 * x.clamp_min(1e-4) ** (1 / 2.5), atol=1e-6)
    assert freeze_all_but_last(model, 1) == ["global_head", "local_out"]
    model.train()
    loss = model(x).mean()
    loss.backward()
    assert model.global_head[-1].weight.grad.abs().sum() > 0  # the zero start still learns
    with pytest.raises(TransferError, match="curve_gamma must be a positive number"):
        create_model("global_local", curve_gamma=0)


def test_global_local_decides_exposure_once_per_image_when_tiled() -> None:
    from transfer.infer import predict

    torch.manual_seed(0)
    model = create_model("global_local", width=4).eval()
    with torch.no_grad():  # a global head that reacts to the image; the local branch stays zero
        model.global_head[-1].weight.normal_(0, 0.3)
    image = (np.random.default_rng(0).random((72, 100, 3)) * np.linspace(0.02, 0.3, 100)[None, :, None])
    whole = predict(model, image.astype(np.float32), tile=None)
    tiled = predict(model, image.astype(np.float32), tile=40, overlap=8)
    assert np.abs(whole - tiled).max() < 1e-5
    per_tile = predict(model, image[:, :48].astype(np.float32), tile=None)  # a tile on its own decides otherwise
    assert np.abs(per_tile - whole[:, :48]).max() > 1e-3


def test_global_local_trains_its_global_branch_on_the_whole_image_view() -> None:
    from transfer.data import whole_image_view

    torch.manual_seed(0)
    model = create_model("global_local", width=4).eval()
    with torch.no_grad():
        model.global_head[-1].weight.normal_(0, 0.3)
    inputs = model.training_inputs([], set())
    assert inputs.keyword == "image_view" and inputs.view_size == 64 and inputs.values is None
    image = (np.random.default_rng(1).random((96, 160, 3)) * np.linspace(0.02, 0.4, 160)[None, :, None])
    image = (image * 255).astype(np.uint8)
    whole = torch.from_numpy(image.astype(np.float32) / 255).permute(2, 0, 1)[None]
    view = torch.from_numpy(whole_image_view(image, 1.0, 64)).permute(2, 0, 1)[None]
    patch = whole[..., 16:48, 32:64]
    with torch.no_grad():  # a patch given the view is decided as at inference, where the whole image decides
        from_view = model(patch, image_view=view)
        as_inferred = model(patch, **model.image_context(whole))
        from_patch = model(patch)
    assert torch.allclose(from_view, as_inferred, atol=1e-5)
    assert (from_view - from_patch).abs().max() > 1e-3
