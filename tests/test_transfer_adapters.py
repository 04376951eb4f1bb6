"""Adapters (transfer.models.adapters) and `finetune --method adapter`: exact folding, frozen base, saved in the
original architecture, exact resume."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from test_transfer_fixtures import lol_tiny, make_lol, make_manifest, manifest_tiny, tiny_config  # noqa: F401
from transfer.checkpoint import load_checkpoint
from transfer.errors import TransferError
from transfer.models import create_model, list_models
from transfer.models.adapters import AdaptedConv2d, attach_adapters, folded_copy, has_adapters
from transfer.train import run_training
from transfer.train.config import check_config


def _perturb(model: torch.nn.Module, seed: int = 0) -> None:
    """Move every adapter away from its identity start."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, AdaptedConv2d):
                module.scale.copy_(1 + 0.2 * torch.randn(module.scale.shape, generator=generator))
                module.branch.copy_(0.05 * torch.randn(module.branch.shape, generator=generator))
                if module.shift is not None:
                    module.shift.copy_(0.05 * torch.randn(module.shift.shape, generator=generator))


@pytest.mark.parametrize("name", list_models())
def test_adapters_start_as_identity_and_fold_exactly(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, width=4).eval()
    x = torch.rand(1, 3, 64, 64)
    before = model(x)
    attach_adapters(model)
    assert torch.allclose(model(x), before, atol=1e-6)
    assert all(not p.requires_grad for n, p in model.named_parameters() if ".conv." in n)
    _perturb(model)
    adapted = model(x)
    assert not torch.allclose(adapted, before, atol=1e-4)  # the perturbation matters
    plain = folded_copy(model)
    assert not has_adapters(plain)
    assert set(plain.state_dict()) == set(create_model(name, width=4).state_dict())
    assert torch.allclose(plain(x), adapted, atol=1e-5)


def test_a_model_without_foldable_convolutions_is_refused() -> None:
    with pytest.raises(TransferError, match="no convolution"):
        attach_adapters(torch.nn.Sequential(torch.nn.Linear(3, 3)))


def test_adapter_finetune_saves_the_original_architecture_and_resumes_exactly(
        tmp_path: Path, manifest_tiny: Path, lol_tiny: Path) -> None:
    run_training(tiny_config(tmp_path / "pre", mode="pretrain", manifest=manifest_tiny, iters=2))
    options = dict(mode="finetune", checkpoint=tmp_path / "pre", pairs=lol_tiny, iters=4, val_every=2,
                   val_split=False, method="adapter")
    straight = run_training(tiny_config(tmp_path / "a", **options))
    assert straight["trainable_params"] < straight["total_params"] / 2
    model, meta = load_checkpoint(tmp_path / "a" / "last")  # the plain network: any command reads it
    assert meta["model"] == "sid_unet" and not has_adapters(model)
    pre, tuned = load_file(str(tmp_path / "pre" / "best" / "model.safetensors")), \
        load_file(str(tmp_path / "a" / "last" / "model.safetensors"))
    assert pre.keys() == tuned.keys() and any(not torch.equal(pre[k], tuned[k]) for k in pre)
    run_training(tiny_config(tmp_path / "b", stop_after=2, **options))
    run_training(tiny_config(tmp_path / "b", resume=True, **options))
    resumed = load_file(str(tmp_path / "b" / "last" / "model.safetensors"))
    assert all(torch.equal(tuned[k], resumed[k]) for k in tuned)


def test_method_is_checked_before_any_data(tmp_path: Path) -> None:
    with pytest.raises(TransferError, match="unknown --method 'lora'"):
        check_config(tiny_config(tmp_path, mode="finetune", checkpoint=tmp_path, pairs=tmp_path, method="lora"))
    with pytest.raises(TransferError, match="adapter is a way to fine-tune"):
        check_config(tiny_config(tmp_path, pairs=tmp_path, method="adapter"))


@pytest.mark.parametrize("name", list_models())
def test_adapters_train_in_channels_last_as_the_trainer_runs_them(name: str) -> None:
    # torch's CPU backward of a strided 1x1 convolution crashed (SIGSEGV) on mixed memory formats; the branch is
    # a matrix product for that reason, and this is the layout the trainer uses
    model = create_model(name, width=4)
    attach_adapters(model)
    model = model.to(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    model(x).mean().backward()
    grads = [m.branch.grad for m in model.modules() if isinstance(m, AdaptedConv2d)]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
