"""The training core: run directory contents, exact resume, fine-tuning with frozen blocks, bad input."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import transfer.train.losses as losses_module
import transfer.train.trainer as trainer_module
from lowsim import __version__ as lowsim_version
from lowsim.params import file_sha256
from test_transfer_fixtures import (lol_tiny, make_lol, make_manifest, manifest_tiny, tiny_config,  # noqa: F401
                                    vgg16_bn_state_dict)
from transfer.errors import TrainingDiverged, TransferError
from transfer.models import BLOCK_NAMES
from transfer.train import run_training


def weights(run_dir: Path, which: str = "last") -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / which / "model.safetensors"))


def test_pretrain_writes_a_complete_run_directory(tmp_path: Path, manifest_tiny: Path) -> None:
    run = tmp_path / "run"
    result = run_training(tiny_config(run, mode="pretrain", manifest=manifest_tiny, iters=4))
    assert result["steps"] == 4 and result["stop_reason"] == "completed"
    assert result["train_count"] == 4 and result["val_count"] == 2 and math.isfinite(result["best_val_psnr"])
    for name in ("config.json", "metrics.csv", "val.csv", "curves.png", "train_pairs.txt", "val_pairs.txt",
                 "last/model.safetensors", "last/train_state.pt", "best/model.safetensors"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "sid_unet" and config["model_config"] == {"width": 4, "input_kind": "srgb",
                                                                         "norm": "none"}
    assert config["input_kind"] == "srgb" and config["trained_blocks"] == list(BLOCK_NAMES)
    assert config["data_sha256"] == file_sha256(manifest_tiny) and config["seed"] == 0
    assert config["lowsim_version"] == lowsim_version and config["metrics"]["steps"] == 4
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4] and all(math.isfinite(float(r["loss"])) for r in rows)
    assert [int(r["step"]) for r in csv.DictReader(open(run / "val.csv"))] == [2, 4]
    assert (run / "val_pairs.txt").read_text().split() == ["val00", "val01"]


def test_resume_reproduces_an_uninterrupted_run(tmp_path: Path, lol_tiny: Path) -> None:
    options = dict(pairs=lol_tiny, iters=5, val_every=2, val_split=False)
    straight = run_training(tiny_config(tmp_path / "a", workers=0, **options))
    # the interrupted run loads batches in a worker process: batches depend on (seed, step) only
    first = run_training(tiny_config(tmp_path / "b", stop_after=2, workers=1, **options))
    assert first["steps"] == 2 and first["stop_reason"] == "stopped_after"
    resumed = run_training(tiny_config(tmp_path / "b", resume=True, workers=1, **options))
    assert straight["steps"] == resumed["steps"] == 5
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    losses = [[r["loss"] for r in csv.DictReader(open(tmp_path / d / "metrics.csv"))] for d in "ab"]
    assert losses[0] == losses[1] and len(losses[0]) == 5
    other = run_training(tiny_config(tmp_path / "c", **{**options, "seed": 1}))
    assert not torch.equal(weights(tmp_path / "c")["head.weight"], a["head.weight"])
    assert other["steps"] == 5


def test_existing_run_needs_resume_and_the_same_options(tmp_path: Path, lol_tiny: Path) -> None:
    run_training(tiny_config(tmp_path / "r", pairs=lol_tiny, iters=3, stop_after=1, val_split=False))
    with pytest.raises(TransferError, match="already holds a checkpoint; pass --resume"):
        run_training(tiny_config(tmp_path / "r", pairs=lol_tiny, iters=3, val_split=False))
    with pytest.raises(TransferError, match="options differ.*lr: 0.001 -> 0.01"):
        run_training(tiny_config(tmp_path / "r", pairs=lol_tiny, iters=3, val_split=False, resume=True, lr=1e-2))


def test_resuming_a_finished_run_trains_nothing_and_keeps_its_summary(tmp_path: Path, lol_tiny: Path) -> None:
    options = dict(pairs=lol_tiny, iters=3, val_split=False)
    first = run_training(tiny_config(tmp_path / "r", **options))
    before = weights(tmp_path / "r")
    again = run_training(tiny_config(tmp_path / "r", resume=True, **options))
    assert again == first  # the summary of the run that trained (its loss and time), not of this no-op
    assert json.loads((tmp_path / "r" / "config.json").read_text())["metrics"] == first
    after = weights(tmp_path / "r")
    assert all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(TransferError, match="options differ"):  # a finished run made otherwise is not taken for it
        run_training(tiny_config(tmp_path / "r", resume=True, **{**options, "iters": 4}))


def test_finetune_trains_only_the_last_blocks(tmp_path: Path, manifest_tiny: Path, lol_tiny: Path) -> None:
    run_training(tiny_config(tmp_path / "pre", mode="pretrain", manifest=manifest_tiny, iters=2))
    pre = weights(tmp_path / "pre")
    result = run_training(tiny_config(tmp_path / "ft", mode="finetune", checkpoint=tmp_path / "pre",
                                      pairs=lol_tiny, frac=0.5, iters=3, val_split=False))
    tuned = weights(tmp_path / "ft")
    assert result["trained_blocks"] == ["up4", "head"]
    assert result["trainable_params"] == sum(v.numel() for k, v in pre.items() if k.split(".")[0] in
                                             ("up4", "head"))
    assert result["train_count"] == 3
    for key in pre:
        same = torch.equal(pre[key], tuned[key])
        assert same == (key.split(".")[0] not in ("up4", "head")), key
    config = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert config["init_checkpoint"]["sha256"] == file_sha256(tmp_path / "pre" / "best" / "model.safetensors")
    assert len((tmp_path / "ft" / "train_pairs.txt").read_text().split()) == 3
    everything = run_training(tiny_config(tmp_path / "all", mode="finetune", checkpoint=tmp_path / "pre",
                                          pairs=lol_tiny, iters=1, val_split=False, trainable_blocks=None))
    assert everything["trained_blocks"] == list(BLOCK_NAMES)


def test_finetune_refuses_a_checkpoint_of_another_width(tmp_path: Path, manifest_tiny: Path,
                                                         lol_tiny: Path) -> None:
    run_training(tiny_config(tmp_path / "pre", mode="pretrain", manifest=manifest_tiny, iters=1))
    with pytest.raises(TransferError, match="width 4 but width 8 was asked for"):
        run_training(tiny_config(tmp_path / "ft", mode="finetune", checkpoint=tmp_path / "pre", pairs=lol_tiny,
                                 width=8))
    with pytest.raises(TransferError, match="checkpoint not found"):
        run_training(tiny_config(tmp_path / "ft", mode="finetune", checkpoint=tmp_path / "none", pairs=lol_tiny))


def test_validation_pairs_are_never_trained_on(tmp_path: Path, lol_tiny: Path) -> None:
    run_training(tiny_config(tmp_path / "r", pairs=lol_tiny, iters=1))
    train_names = set((tmp_path / "r" / "train_pairs.txt").read_text().split())
    val_names = set((tmp_path / "r" / "val_pairs.txt").read_text().split())
    assert train_names and val_names and not train_names & val_names
    assert len(train_names | val_names) == 6
    with pytest.raises(TransferError, match="also training pairs"):
        run_training(tiny_config(tmp_path / "s", pairs=lol_tiny, val_pairs=lol_tiny, iters=1))


def test_bad_data_and_options_are_refused(tmp_path: Path, lol_tiny: Path) -> None:
    none_ok = make_manifest(tmp_path / "m", {"train": 2}, statuses=["error", "error"])
    with pytest.raises(TransferError, match="no rows with status 'ok'"):
        run_training(tiny_config(tmp_path / "r1", mode="pretrain", manifest=none_ok))
    with pytest.raises(TransferError, match="smaller than the training patch 128"):
        run_training(tiny_config(tmp_path / "r2", pairs=lol_tiny, patch=128, val_split=False))
    with pytest.raises(TransferError, match="multiple of 32"):
        run_training(tiny_config(tmp_path / "r3", pairs=lol_tiny, patch=48))
    with pytest.raises(TransferError, match=r"--frac must be in \(0, 1\]"):
        run_training(tiny_config(tmp_path / "r4", pairs=lol_tiny, frac=1.5))
    with pytest.raises(TransferError, match="selects no pair"):
        run_training(tiny_config(tmp_path / "r5", pairs=lol_tiny, frac=0.01))
    with pytest.raises(TransferError, match="not both"):
        run_training(tiny_config(tmp_path / "r6", pairs=lol_tiny, epochs=1.0))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path, lol_tiny: Path) -> None:
    run = tmp_path / "r"
    with pytest.raises(TrainingDiverged, match=r"loss became (nan|inf) at step (\d+).*last good checkpoint"):
        run_training(tiny_config(run, pairs=lol_tiny, lr=1e30, iters=8, save_every=1, val_split=False))
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    meta = json.loads((run / "last" / "checkpoint.json").read_text())
    assert meta["step"] == len(rows) >= 1 and all(math.isfinite(float(r["loss"])) for r in rows)
    assert all(torch.isfinite(t).all() for t in weights(run).values())


def test_early_stopping_after_patience_validations(tmp_path: Path, lol_tiny: Path, monkeypatch) -> None:
    scores = iter([20.0, 19.0, 18.0, 17.0, 16.0])
    monkeypatch.setattr(trainer_module, "validate", lambda model, store, tile, stop: [next(scores)])
    result = run_training(tiny_config(tmp_path / "r", pairs=lol_tiny, iters=10, val_every=1, patience=2))
    assert result["stop_reason"] == "early_stopping" and result["steps"] == 3 and result["best_step"] == 1
    assert json.loads((tmp_path / "r" / "best" / "checkpoint.json").read_text())["step"] == 1


def test_epoch_budget_counts_passes_over_the_images(tmp_path: Path, lol_tiny: Path) -> None:
    result = run_training(tiny_config(tmp_path / "r", pairs=lol_tiny, iters=None, epochs=1.0, batch=4,
                                      val_split=False))
    assert result["steps"] == math.ceil(6 / 4)


def test_raw_input_trains_on_sid_pairs(tmp_path: Path) -> None:
    from rawfixtures import make_sid_tree

    make_sid_tree(tmp_path / "sid", n_scenes=2, height=64, width=64, test_scenes=0)
    result = run_training(tiny_config(tmp_path / "r", pairs=tmp_path / "sid", input_kind="raw", patch=16,
                                      val_split=False, iters=2))
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert result["steps"] == 2 and config["input_kind"] == "raw" and config["model_config"]["input_kind"] == "raw"


def test_ctrl_c_saves_last_and_resume_matches(tmp_path: Path, lol_tiny: Path, monkeypatch) -> None:
    options = dict(pairs=lol_tiny, iters=4, val_split=False, save_every=100)
    run_training(tiny_config(tmp_path / "straight", **options))
    real_loss, calls = losses_module.F.l1_loss, []

    def interrupting_loss(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # Ctrl-C during step 3
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(losses_module.F, "l1_loss", interrupting_loss)
    with pytest.raises(KeyboardInterrupt):
        run_training(tiny_config(tmp_path / "cut", **options))
    monkeypatch.setattr(losses_module.F, "l1_loss", real_loss)
    assert json.loads((tmp_path / "cut" / "last" / "checkpoint.json").read_text())["step"] == 2
    run_training(tiny_config(tmp_path / "cut", resume=True, **options))
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_real_lol_pairs_train_and_validate_on_the_held_out_split(tmp_path: Path, lol_dev: Path) -> None:
    from lowsim.splits import REAL_PAIR_FRACTIONS, assign_split

    result = run_training(tiny_config(tmp_path / "r", pairs=lol_dev, frac=0.02, val_limit=2, iters=2, patch=64))
    train_names = (tmp_path / "r" / "train_pairs.txt").read_text().split()
    val_names = (tmp_path / "r" / "val_pairs.txt").read_text().split()
    assert result["train_count"] == len(train_names) >= 1 and len(val_names) == 2
    assert all(assign_split(n, REAL_PAIR_FRACTIONS) == "pool" for n in train_names)
    assert all(assign_split(n, REAL_PAIR_FRACTIONS) == "val" for n in val_names)
    assert math.isfinite(result["best_val_psnr"])


def record_alphas(monkeypatch) -> list:
    """Patch EstimateEnhance.forward to record the alpha of every call (None when not given)."""
    from transfer.models import EstimateEnhance

    calls: list = []
    real_forward = EstimateEnhance.forward

    def forward(self, x, alpha=None):
        calls.append(None if alpha is None else alpha.detach().clone() if torch.is_tensor(alpha) else alpha)
        return real_forward(self, x, alpha)

    monkeypatch.setattr(EstimateEnhance, "forward", forward)
    return calls


def test_estimate_enhance_pretrains_with_each_rows_alpha(tmp_path: Path, monkeypatch) -> None:
    from transfer.data import load_manifest, plan_patch

    alphas = [0.2, 0.6, 1.0, 1.4, 0.5, 0.5]
    manifest = make_manifest(tmp_path / "m", {"train": 4, "val": 2}, alphas=alphas)
    calls = record_alphas(monkeypatch)
    run_training(tiny_config(tmp_path / "r", mode="pretrain", manifest=manifest, model="estimate_enhance",
                             iters=2, batch=2, val_every=2, model_options={"alpha": 0.8}))
    train = load_manifest(manifest, "train")
    shapes = [(64, 64)] * len(train)
    training = [c for c in calls if torch.is_tensor(c)]
    assert len(training) == 2  # one per step; validation passes no alpha: the configured 0.8
    for step, batch_alpha in enumerate(training):
        expected = [train[plan_patch(0, p, shapes, 32).index].alpha for p in (2 * step, 2 * step + 1)]
        assert batch_alpha.tolist() == pytest.approx(expected)
    assert len([c for c in calls if c is None]) == 2  # two validation images
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["train_alpha"] == {"source": "manifest illum_alpha", "min": 0.2, "mean": pytest.approx(0.8),
                                     "max": 1.4}
    assert config["model_config"]["alpha"] == 0.8 and config["options"]["model_options"] == {"alpha": 0.8}


def test_alpha_runs_resume_exactly_and_real_pairs_use_the_configured_alpha(tmp_path: Path, lol_tiny: Path,
                                                                            monkeypatch) -> None:
    manifest = make_manifest(tmp_path / "m", {"train": 3}, alphas=[0.3, 1.2, 1.9])
    options = dict(mode="pretrain", manifest=manifest, model="estimate_enhance", iters=3, val_every=10)
    run_training(tiny_config(tmp_path / "a", **options))
    run_training(tiny_config(tmp_path / "b", stop_after=1, **options))
    run_training(tiny_config(tmp_path / "b", resume=True, **options))
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    for run in ("a", "b"):  # no --alpha: the mean training alpha becomes the strength the checkpoint keeps
        meta = json.loads((tmp_path / run / "config.json").read_text())["model_config"]
        assert meta["alpha"] == pytest.approx((0.3 + 1.2 + 1.9) / 3)
    calls = record_alphas(monkeypatch)
    run_training(tiny_config(tmp_path / "s", pairs=lol_tiny, model="estimate_enhance", iters=1, val_split=False))
    assert calls == [None]  # real pairs carry no alpha: the model's configured one
    config = json.loads((tmp_path / "s" / "config.json").read_text())
    assert config["train_alpha"] == {"source": "model config", "value": 1.0}


def test_model_options_reach_the_model_and_are_checked_before_data(tmp_path: Path, manifest_tiny: Path,
                                                                    lol_tiny: Path) -> None:
    run_training(tiny_config(tmp_path / "pre", mode="pretrain", manifest=manifest_tiny, model="plain_cnn",
                             model_options={"depth": 2, "activation": "relu"}, iters=1))
    config = json.loads((tmp_path / "pre" / "config.json").read_text())
    assert config["model_config"] == {"width": 4, "depth": 2, "activation": "relu", "input_kind": "srgb",
                                      "norm": "none"}
    assert config["fingerprint"]["model"] == "plain_cnn" and config["train_alpha"] is None
    missing = tmp_path / "missing.parquet"  # never read: the options are refused first
    with pytest.raises(TransferError, match="unknown model 'unet9'; known models: dense_cnn, .*sid_unet"):
        run_training(tiny_config(tmp_path / "x", mode="pretrain", manifest=missing, model="unet9"))
    with pytest.raises(TransferError, match="model sid_unet does not take --depth; its options: width, input_kind"):
        run_training(tiny_config(tmp_path / "x", mode="pretrain", manifest=missing, model_options={"depth": 2}))
    with pytest.raises(TransferError, match="own"):
        run_training(tiny_config(tmp_path / "x", mode="pretrain", manifest=missing, model_options={"width": 2}))
    with pytest.raises(TransferError, match="unknown activation 'gelu'"):
        run_training(tiny_config(tmp_path / "x", mode="pretrain", manifest=missing, model="plain_cnn",
                                 model_options={"activation": "gelu"}))
    # fine-tuning: the model and its options are the checkpoint's; a different one is refused
    result = run_training(tiny_config(tmp_path / "ft", mode="finetune", checkpoint=tmp_path / "pre", model=None,
                                      pairs=lol_tiny, iters=1, val_split=False))
    assert result["trained_blocks"] == ["block2", "head"]
    assert json.loads((tmp_path / "ft" / "config.json").read_text())["model"] == "plain_cnn"
    with pytest.raises(TransferError, match="checkpoint is depth 2 but depth 3 was asked for"):
        run_training(tiny_config(tmp_path / "f2", mode="finetune", checkpoint=tmp_path / "pre", model=None,
                                 pairs=lol_tiny, model_options={"depth": 3}))
    with pytest.raises(TransferError, match="model plain_cnn does not take --alpha"):
        run_training(tiny_config(tmp_path / "f2", mode="finetune", checkpoint=tmp_path / "pre", model=None,
                                 pairs=lol_tiny, model_options={"alpha": 2.0}))
    with pytest.raises(TransferError, match="--backbone-weights initialises a new model"):
        run_training(tiny_config(tmp_path / "f2", mode="finetune", checkpoint=tmp_path / "pre", pairs=lol_tiny,
                                 model_options={"backbone_weights": tmp_path / "vgg.pth"}))
    with pytest.raises(TransferError, match="scratch needs --model"):
        run_training(tiny_config(tmp_path / "f2", pairs=lol_tiny, model=None))


def test_backbone_weights_initialise_the_encoder_and_are_recorded(tmp_path: Path, lol_tiny: Path) -> None:
    from lowsim.params import file_sha256
    from transfer.train import build_model

    path = tmp_path / "vgg16_bn.pth"
    state = vgg16_bn_state_dict(width=4)
    torch.save(state, path)
    config = tiny_config(tmp_path / "r", pairs=lol_tiny, model="vgg16_residual", iters=1, val_split=False,
                         model_options={"backbone_weights": path})
    model, _ = build_model(config, torch.device("cpu"))
    assert torch.equal(model.enc1[0].weight, state["features.0.weight"])
    assert torch.equal(model.enc5[7].running_mean, state["features.41.running_mean"])
    run_training(config)
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["backbone_weights"] == {"path": str(path), "sha256": file_sha256(path)}
    assert saved["options"]["model_options"] == {"backbone_weights": str(path)}
    assert saved["fingerprint"]["backbone_sha256"] == file_sha256(path)
    assert "backbone_weights" not in saved["model_config"]


def test_the_ssim_loss_trains_and_is_part_of_the_run(tmp_path: Path, lol_tiny: Path) -> None:
    from transfer.train.losses import l1, l1_ssim

    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    assert l1_ssim(y, y).item() == pytest.approx(0.0, abs=1e-6) and l1_ssim(x, y) > l1(x, y)
    result = run_training(tiny_config(tmp_path / "s", pairs=lol_tiny, iters=2, val_split=False, loss="l1+ssim"))
    assert math.isfinite(result["final_loss"])
    assert json.loads((tmp_path / "s" / "config.json").read_text())["fingerprint"]["loss"] == "l1+ssim"
    with pytest.raises(TransferError, match="unknown --loss 'l2'"):
        run_training(tiny_config(tmp_path / "t", pairs=lol_tiny, loss="l2"))
