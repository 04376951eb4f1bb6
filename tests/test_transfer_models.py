"""The SID U-Net: shapes, parameter counts, registry, freezing (parameters and BN statistics)."""
from __future__ import annotations

import pytest
import torch

from transfer.errors import TransferError
from transfer.models import (BLOCK_NAMES, SIDUNet, block_parameter_counts, count_parameters, create_model,
                             freeze_all_but_last, last_blocks, list_models, set_trainable_blocks, trainable_blocks)


def sid_parameter_count(width: int, in_ch: int) -> int:
    """SID's U-Net parameter count from its layer list (3x3 conv pairs, 2x2 transposed convs, 1x1 head)."""
    conv = lambda cin, cout, k: cin * cout * k * k + cout  # noqa: E731
    c = [width * 2**i for i in range(5)]
    total = conv(in_ch, c[0], 3) + conv(c[0], c[0], 3)
    for i in range(1, 5):
        total += conv(c[i - 1], c[i], 3) + conv(c[i], c[i], 3)
    for i in range(4, 0, -1):
        total += conv(c[i], c[i - 1], 2) + conv(2 * c[i - 1], c[i - 1], 3) + conv(c[i - 1], c[i - 1], 3)
    return total + conv(c[0], 12, 1)


@pytest.mark.parametrize("width,kind", [(32, "raw"), (16, "srgb"), (4, "srgb")])
def test_parameter_count_matches_sid_layer_list(width: int, kind: str) -> None:
    model = create_model("sid_unet", width=width, input_kind=kind)
    expected = sid_parameter_count(width, 4 if kind == "raw" else 12)
    assert count_parameters(model) == (expected, expected)
    assert sum(block_parameter_counts(model).values()) == expected
    if width == 32 and kind == "raw":
        assert 7.7e6 < expected < 7.8e6  # SID's "7.8M parameters"


def test_output_shapes_srgb_and_raw() -> None:
    srgb = create_model("sid_unet", width=4, input_kind="srgb")
    raw = create_model("sid_unet", width=4, input_kind="raw")
    assert srgb(torch.rand(2, 3, 64, 96)).shape == (2, 3, 64, 96)
    assert raw(torch.rand(1, 4, 32, 48)).shape == (1, 3, 64, 96)
    assert (srgb.scale, srgb.pad_multiple, raw.scale, raw.pad_multiple) == (1, 32, 2, 16)


def test_channels_last_gives_the_same_output() -> None:
    torch.manual_seed(0)
    model = create_model("sid_unet", width=4).eval()
    x = torch.rand(2, 3, 64, 64)
    plain = model(x)
    fast = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    assert torch.allclose(plain, fast, atol=1e-5)


def test_registry_lists_known_models_on_unknown_name() -> None:
    assert "sid_unet" in list_models()
    with pytest.raises(TransferError, match="known models: .*sid_unet"):
        create_model("resnet")
    with pytest.raises(TransferError, match="bad option"):
        create_model("sid_unet", depth=3)
    with pytest.raises(TransferError, match="width"):
        create_model("sid_unet", width=0)
    with pytest.raises(TransferError, match="input kind"):
        create_model("sid_unet", input_kind="yuv")


def test_last_two_blocks_are_the_papers_blue_blocks() -> None:
    assert last_blocks(2) == ["up4", "head"]
    assert last_blocks(len(BLOCK_NAMES)) == list(BLOCK_NAMES)
    for bad in (0, len(BLOCK_NAMES) + 1, -1):
        with pytest.raises(TransferError, match="trainable blocks"):
            last_blocks(bad)


def test_freeze_all_but_last_trains_only_those_blocks() -> None:
    model = create_model("sid_unet", width=4)
    trained = freeze_all_but_last(model, 2)
    counts = block_parameter_counts(model)
    assert trained == trainable_blocks(model) == ["up4", "head"]
    assert count_parameters(model)[0] == counts["up4"] + counts["head"]
    model(torch.rand(1, 3, 32, 32)).mean().backward()
    for name, block in model.blocks():
        for param in block.parameters():
            assert (param.grad is not None) == (name in trained), name


def test_frozen_batch_norm_statistics_do_not_move() -> None:
    model = create_model("sid_unet", width=4, norm="batch")
    set_trainable_blocks(model, ["up4", "head"])
    model.train()
    frozen_bn = model.down1[1]
    trained_bn = model.up4.convs[1]
    assert isinstance(frozen_bn, torch.nn.BatchNorm2d) and isinstance(trained_bn, torch.nn.BatchNorm2d)
    before_frozen, before_trained = frozen_bn.running_mean.clone(), trained_bn.running_mean.clone()
    model(torch.rand(2, 3, 32, 32) * 5 + 1)
    assert not frozen_bn.training and trained_bn.training
    assert torch.equal(frozen_bn.running_mean, before_frozen)
    assert not torch.equal(trained_bn.running_mean, before_trained)


def test_unknown_block_name_is_refused() -> None:
    with pytest.raises(TransferError, match="unknown block"):
        set_trainable_blocks(SIDUNet(width=4), ["up5"])


def test_register_adds_a_model_whose_declared_options_match_its_constructor(monkeypatch) -> None:
    from transfer.models import MODEL_REGISTRY, BlockModel, ModelOption, declared_options, register

    monkeypatch.setattr("transfer.models.registry.MODEL_REGISTRY", dict(MODEL_REGISTRY))
    from transfer.models import registry

    @register("tiny_net")
    class TinyNet(BlockModel):
        options = (ModelOption("depth", int, "layers."),)

        def __init__(self, width: int = 4, depth: int = 1, input_kind: str = "srgb", norm: str = "none") -> None:
            super().__init__()
            self.config = {"width": width, "depth": depth, "input_kind": input_kind, "norm": norm}

    assert registry.MODEL_REGISTRY["tiny_net"] is TinyNet and TinyNet.model_name == "tiny_net"
    assert registry.create_model("tiny_net", depth=2).config["depth"] == 2
    assert [o.flag for o in declared_options("tiny_net")] == ["--depth"]
    with pytest.raises(ValueError, match="registered twice"):
        register("tiny_net")(TinyNet)
    with pytest.raises(ValueError, match=r"declares options \[\] but its constructor takes \['depth'\]"):
        @register("undeclared_net")
        class Undeclared(BlockModel):
            def __init__(self, width: int = 4, depth: int = 1) -> None:
                super().__init__()
    assert "undeclared_net" not in registry.MODEL_REGISTRY


def test_every_registered_model_declares_its_specific_options() -> None:
    from transfer.models import COMMON_OPTIONS, all_declared_options, declared_options, model_options

    for name in list_models():
        specific = [o for o in model_options(name) if o not in COMMON_OPTIONS]
        assert sorted(o.name for o in declared_options(name)) == sorted(specific), name
    shared = all_declared_options()
    assert shared["depth"][1] == ["dense_cnn", "plain_cnn"] and shared["backbone_weights"][0].flag == \
        "--backbone-weights"
