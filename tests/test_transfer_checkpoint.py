"""Checkpoints: safetensors + JSON, atomic swap, resolution of run dirs, refusal of mismatched weights."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from transfer.checkpoint import load_checkpoint, read_meta, resolve_checkpoint, save_checkpoint
from transfer.errors import TransferError
from transfer.models import create_model


def meta_for(model, step: int = 1) -> dict:
    return {"model": "sid_unet", "model_config": model.config, "input_kind": model.input_kind, "step": step}


def test_roundtrip_keeps_weights_and_description(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("sid_unet", width=4).to(memory_format=torch.channels_last)
    save_checkpoint(tmp_path / "run" / "last", model, meta_for(model, 5), {"step": 5})
    loaded, meta = load_checkpoint(tmp_path / "run")
    assert meta["step"] == 5 and meta["model_config"]["width"] == 4
    assert json.loads((tmp_path / "run" / "last" / "checkpoint.json").read_text())["step"] == 5
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    weights = tmp_path / "run" / "last" / "model.safetensors"
    assert read_meta(weights)["step"] == 5
    assert load_checkpoint(weights)[1]["step"] == 5  # a lone file describes itself


def test_run_directory_prefers_best(tmp_path: Path) -> None:
    model = create_model("sid_unet", width=4)
    save_checkpoint(tmp_path / "last", model, meta_for(model, 9))
    assert resolve_checkpoint(tmp_path).parent.name == "last"
    save_checkpoint(tmp_path / "best", model, meta_for(model, 4))
    assert resolve_checkpoint(tmp_path).parent.name == "best"
    assert resolve_checkpoint(tmp_path, prefer="last").parent.name == "last"


def test_overwrite_is_a_swap_and_a_crash_leaves_the_previous(tmp_path: Path) -> None:
    model = create_model("sid_unet", width=4)
    target = tmp_path / "last"
    save_checkpoint(target, model, meta_for(model, 1))
    save_checkpoint(target, model, meta_for(model, 2))
    assert read_meta(target / "model.safetensors")["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]
    os.replace(target, tmp_path / "last.previous")  # a crash between the two renames
    assert load_checkpoint(tmp_path)[1]["step"] == 2


def test_missing_and_foreign_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TransferError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TransferError, match="no checkpoint here"):
        load_checkpoint(tmp_path / "empty")
    (tmp_path / "w.pt").write_bytes(b"x")
    with pytest.raises(TransferError, match="expected a .safetensors"):
        load_checkpoint(tmp_path / "w.pt")
    save_file({"a": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(TransferError, match="not written by transfer"):
        load_checkpoint(tmp_path / "plain.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(TransferError, match="not a readable safetensors"):
        load_checkpoint(tmp_path / "junk.safetensors")


def test_checkpoint_of_another_width_or_model_is_refused(tmp_path: Path) -> None:
    model = create_model("sid_unet", width=4)
    save_checkpoint(tmp_path / "c", model, meta_for(model))
    with pytest.raises(TransferError, match="width 4 but width 8 was asked for"):
        load_checkpoint(tmp_path / "c", expect={"width": 8})
    with pytest.raises(TransferError, match="model 'sid_unet' but model 'unet2' was asked for"):
        load_checkpoint(tmp_path / "c", expect={"model": "unet2"})
    # weights that do not fit the description (a width-4 model described as width 8)
    save_checkpoint(tmp_path / "liar", model, {**meta_for(model), "model_config": {**model.config, "width": 8}})
    with pytest.raises(TransferError, match="weights do not fit sid_unet with .*width 8"):
        load_checkpoint(tmp_path / "liar")
