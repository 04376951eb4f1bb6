"""The training loop: `Trainer(config, info, device)` sets a run up, `run()` steps, validates and saves.

The phases are methods: the setup (`__init__`: model, data, run state, run files, loader), `step` (one optimizer
step on one batch), `validate_and_track` (score the validation pairs, keep `best`, early stopping) and `save`
(`last`, through RunState). It uses the paper's L1 loss (MAE) and Adam with a decay schedule. The network output
is NOT clipped during training: a clamp has zero gradient outside [0, 1], so pixels the network overshoots (dark
targets near 0, highlights near 1) would stop learning; SID trains unclipped too. Inference clips (seed 004).
"""
from __future__ import annotations

import contextlib
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from lowsim import __version__ as lowsim_version
from lowsim.errors import printable
from lowsim.safe_io import atomic_write_text
from transfer import checkpoint as ckpt
from transfer.augment import DEFAULT_PROB, NoiseAugment, check_model_input, describe_augment, load_augment_params
from transfer.data import (PairStore, PatchDataset, StepBatchSampler, bright_to_float, dark_to_float,
                           default_workers, make_loader)
from transfer.device import pick_device
from transfer.distributed import (DistInfo, any_across, barrier, broadcast_buffers, broadcast_flag, gather_strings,
                                  init_distributed, mean_across, shutdown)
from transfer.errors import TrainingDiverged, TrainingInterrupted, TransferError
from transfer.infer import predict
from transfer.interrupt import StopRequest
from transfer.metrics import psnr
from transfer.models import BlockModel, count_parameters, registered_name, trainable_blocks
from transfer.models.adapters import exported
from transfer.onthefly import OnTheFlyDataset, SourceStore, SyntheticValidation
from transfer.paths import (LOCK_FILE, check_output_dir, prepare_output_dir, refuse_symlinks, remove_leftovers,
                            run_dir_lock)
from transfer.train.losses import loss_function
from transfer.train.config import TrainConfig, check_config, check_patch, lr_factor, total_steps
from transfer.train.prepare import backbone_description, build_model, fingerprint, resolve_data
from transfer.train.report import Reporter, plot_curves
from transfer.train.state import BEST, LAST, TRAIN_CSV, VAL_CSV, RunState, has_saved_state

CONFIG_JSON, CURVES_PNG = "config.json", "curves.png"
# what a run writes in its directory (transfer.train.state writes last/ and the metric CSVs)
RUN_OUTPUTS = (LAST, BEST, f"{LAST}.previous", f"{BEST}.previous", CONFIG_JSON, CURVES_PNG, TRAIN_CSV, VAL_CSV,
               "train_pairs.txt", "val_pairs.txt")


def run_training(config: TrainConfig) -> dict[str, Any]:
    """Train as configured and return a summary (steps, best/final metrics, checkpoint paths)."""
    check_config(config)
    check_output_dir(Path(config.run_dir), "--run-dir")
    device = pick_device(config.device)
    info = init_distributed(device.type == "cuda")
    finished = False
    try:
        with _run_dir_guard(Path(config.run_dir), info.is_main):
            result = Trainer(config, info, device).run()
        finished = True
        return result
    finally:
        shutdown(info, finished)


@contextlib.contextmanager
def _run_dir_guard(run_dir: Path, is_main: bool) -> Iterator[None]:
    """The main process creates the run directory, locks it, clears what a killed run left, and removes it again
    when it created it and the run failed before writing anything."""
    if not is_main:
        yield
        return
    created = not run_dir.exists()
    prepare_output_dir(run_dir, "--run-dir")
    try:
        with run_dir_lock(run_dir):
            refuse_symlinks(run_dir, RUN_OUTPUTS)
            remove_leftovers(run_dir)
            yield
    except BaseException:
        if created and [p.name for p in run_dir.iterdir()] == [LOCK_FILE]:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


@torch.no_grad()
def validate(model: BlockModel, store: PairStore | SyntheticValidation, tile: int,
             stop: Callable[[], bool] = lambda: False) -> list[float] | None:
    """PSNR of every validation pair at full resolution (tiled when large), output clipped to [0, 1]; None when
    `stop()` turned true between two images (Ctrl-C)."""
    scores = []
    for index in range(len(store)):
        if stop():
            return None
        pair = store.get(index)
        prediction = predict(model, dark_to_float(pair.dark, pair.ratio), tile=tile)
        scores.append(psnr(prediction, bright_to_float(pair.bright)))
    return scores


class Trainer:
    """One training run (one process of it under torchrun)."""

    def __init__(self, config: TrainConfig, info: DistInfo, device: torch.device) -> None:
        """Set the run up: model, data, run state (fresh or resumed), run files and the batch loader."""
        self.started = time.perf_counter()
        self.config, self.info = config, info
        self.device = torch.device("cuda", info.local_rank) if info.enabled and device.type == "cuda" else device
        # The model first: a bad option, checkpoint or backbone file is refused before any data is read.
        self.model, self.init = build_model(config, self.device)
        check_patch(config.patch, self.model)
        self.augment, self.augment_description = self._noise_augment()  # a bad params file: before the data
        self.name = registered_name(self.model)
        self.data = resolve_data(config)
        self.trained = trainable_blocks(self.model)
        self.n_trainable, self.n_total = count_parameters(self.model)
        self.reporter = Reporter(config.progress and info.is_main)
        self.reporter.print(f"{config.mode}: {self.model.config} on {self.device}, {info.world} process(es); "
                            f"training {self.n_trainable:,} of {self.n_total:,} parameters (blocks "
                            f"{', '.join(self.trained)})")
        self.total = total_steps(config, len(self.data.train))
        self.val_every = config.val_every or max(1, self.total // 10)
        self.save_every = config.save_every or self.val_every
        self.run_dir = Path(config.run_dir)
        self.backbone = backbone_description(config)
        self.resuming = has_saved_state(self.run_dir)
        if self.resuming and not config.resume:
            raise TransferError("run directory already holds a checkpoint; pass --resume to continue it or choose "
                                "another --run-dir", self.run_dir)
        self.store, self.val_store = self._load_pairs()
        # the model's per-sample inputs (estimate_enhance: each manifest row's alpha; it may set its own alpha)
        self.inputs = self.model.training_inputs(self.data.train, set(config.model_options))
        for note in self.inputs.notes:
            self.reporter.print(note)
        self.state = self._start_state()
        self.saved_step = self.state.step if self.resuming else None
        # a resumed run that had already finished trains nothing: its summary stays the one of the run that trained
        self.finished_summary = _finished_summary(self.run_dir, self.state.step) if self.resuming else None
        self.run_config = self._write_run_files()
        self.net = self._wrap_for_processes()
        # on the fly, every sample costs a degradation: load in workers even when every photo is cached
        cheap = self.store.fully_cached and self.data.sources is None
        self.workers = default_workers(cheap) if config.workers is None else config.workers
        self.end = self.total if config.stop_after is None else min(self.total, self.state.step + config.stop_after)
        self.loader = make_loader(self._dataset(),
                                  StepBatchSampler(self.state.step, self.end, config.batch, info.rank, info.world),
                                  self.workers)
        self.images, self.compute_s, self.data_s, self.last_loss = 0, 0.0, 0.0, math.nan
        self.loss = loss_function(config.loss)
        self.stop_request = StopRequest()
        self.unvalidated_step: int | None = None

    # -- setup --------------------------------------------------------------------------------------------------
    def _dataset(self) -> torch.utils.data.Dataset:
        """Patches cut from the decoded pairs, or (--params with --src) made on the fly from the photos."""
        config = self.config
        if self.data.sources is not None:
            return OnTheFlyDataset(self.store, self.data.sources.dist, config.patch, config.seed, config.batch,
                                   self.inputs.view_size)
        return PatchDataset(self.store, config.patch, config.seed, self.model.scale, self.inputs.values,
                            self.inputs.view_size, self.augment)

    def _noise_augment(self) -> tuple[NoiseAugment | None, dict[str, Any] | None]:
        """--augment-params: what replaces a share of the real dark patches, and its description; else None."""
        config = self.config
        if config.augment_params is None:
            return None, None
        check_model_input(self.model.input_kind)
        dist, path = load_augment_params(config.augment_params)
        prob = DEFAULT_PROB if config.augment_prob is None else config.augment_prob
        return NoiseAugment(dist, prob, config.seed, config.batch), describe_augment(dist, path, prob)

    def _load_pairs(self) -> tuple[PairStore | SourceStore, PairStore | SyntheticValidation | None]:
        """Decode the training pairs (and, on the main process, the validation pairs) into the RAM cache."""
        if self.data.sources is not None:
            return self._load_sources()
        data, cache_bytes = self.data, int(self.config.cache_mb * 2**20)
        store = PairStore(data.train, self.model.input_kind, cache_bytes)
        store.check_patch(self.config.patch)
        val_store = PairStore(data.val, self.model.input_kind, max(0, cache_bytes - store.cached_bytes)) \
            if self.info.is_main and data.val else None
        cached_mib = (store.cached_bytes + (val_store.cached_bytes if val_store else 0)) / 2**20
        self.reporter.print(f"data: {len(data.train)} training pair(s), {len(data.val)} validation pair(s); "
                            f"{cached_mib:.0f} MiB of decoded images cached in RAM"
                            + ("" if store.fully_cached else " (training set larger than --cache-mb: decoded per "
                                                            "patch)")
                            + ("" if data.val else "; no validation pairs, so no `best` checkpoint (use `last`)")
                            + (f"; noise augmentation of {self.augment.prob:g} of the patches from "
                               f"{self.augment_description['params']}" if self.augment else ""))
        return store, val_store

    def _load_sources(self) -> tuple[SourceStore, SyntheticValidation | None]:
        """Decode the training photos into the RAM cache and (main process) make the validation pairs."""
        data, config, dist = self.data, self.config, self.data.sources.dist
        store = SourceStore(data.train, int(config.cache_mb * 2**20))
        val_store = SyntheticValidation(data.val, dist, config.patch) if self.info.is_main and data.val else None
        self.reporter.print(f"data: {len(data.train)} training photo(s) degraded on the fly ({dist.model}, sampler "
                            f"{dist.sampler}), {store.cached_bytes / 2**20:.0f} MiB cached in RAM"
                            + ("" if store.fully_cached else " (more than --cache-mb: decoded per sample)")
                            + (f"; {len(data.val)} fixed validation pair(s) from the 'val' photos" if data.val else
                               "; no 'val' photos, so no validation and no `best` checkpoint (use `last`)"))
        return store, val_store

    def _start_state(self) -> RunState:
        """The model on the device, its optimizer and schedule, and the run state: fresh, or resumed from `last`."""
        config = self.config
        # Channels-last before the optimizer exists, so that Adam's moments share the parameters' layout in both
        # a fresh and a resumed run (the same layout means the same floating-point results).
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.model = self.model.to(self.device, memory_format=self.memory_format)
        optimizer = torch.optim.Adam([p for p in self.model.parameters() if p.requires_grad], lr=config.lr)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config.schedule, self.total))
        prints = fingerprint(config, self.model, self.data, self.init, self.total, self.backbone,
                             self.augment_description)
        state = RunState(self.model, optimizer, scheduler, prints)
        if self.resuming:
            state.load(self.run_dir)
            self.reporter.print(f"resuming {self.run_dir} at step {state.step}/{self.total}")
        elif config.resume:
            self.reporter.print(f"nothing to resume in {self.run_dir}; starting a new run")
        return state

    def _write_run_files(self) -> dict[str, Any]:
        """config.json and the lists of training and validation pairs (main process); returns the config."""
        model, data = self.model, self.data
        run_config = {"command": self.config.mode, "model": self.name, "model_config": model.config,
                      "input_kind": model.input_kind, "trained_blocks": self.trained,
                      "trainable_params": self.n_trainable, "total_params": self.n_total, "data": data.description,
                      "data_sha256": data.description["sha256"], "init_checkpoint": self.init,
                      "backbone_weights": self.backbone, "train_alpha": self.inputs.description,
                      "noise_augment": self.augment_description,
                      "seed": self.config.seed, "lowsim_version": lowsim_version,
                      "torch_version": torch.__version__, "device": str(self.device), "world_size": self.info.world,
                      "total_steps": self.total, "val_every": self.val_every, "fingerprint": self.state.fingerprint,
                      "options": self.config.to_json()}
        if self.info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            # names as printable UTF-8 (bytes of a non-UTF-8 file name as \\xNN), one per line
            atomic_write_text(self.run_dir / "train_pairs.txt", "".join(f"{printable(i.name)}\n" for i in data.train))
            atomic_write_text(self.run_dir / "val_pairs.txt", "".join(f"{printable(i.name)}\n" for i in data.val))
            atomic_write_text(self.run_dir / CONFIG_JSON, json.dumps(run_config, indent=2) + "\n")
        barrier(self.info)
        return run_config

    def _wrap_for_processes(self) -> torch.nn.Module:
        """The model itself, or under torchrun a DistributedDataParallel wrapper of it."""
        if not self.info.enabled:
            return self.model
        if self.device.type == "cuda":  # batch statistics over the global batch, as one process would compute them
            torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)  # in place below the root (CPU: GPU-only layer)
        return torch.nn.parallel.DistributedDataParallel(
            self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    # -- the phases of the loop ---------------------------------------------------------------------------------
    def epoch(self) -> float:
        """Passes over the training images so far (one patch per image per pass)."""
        return self.state.step * self.config.batch / len(self.data.train)

    def meta(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The description stored with a checkpoint of the current step."""
        return {"model": self.name, "model_config": self.model.config, "input_kind": self.model.input_kind,
                "trained_blocks": self.trained, "step": self.state.step, "epoch": self.epoch(),
                "data_sha256": self.data.description["sha256"], "seed": self.config.seed,
                "lowsim_version": lowsim_version, "best_val_psnr": self.state.best_val_psnr,
                "best_step": self.state.best_step, **(extra or {})}

    def step(self, batch: tuple[torch.Tensor, ...]) -> float:
        """One optimizer step on a batch (input, target[, per-sample input]); returns the loss (mean over
        processes). A NaN or infinite loss stops the run before the weights change."""
        state, device, memory_format = self.state, self.device, self.memory_format
        inputs = batch[0].to(device, non_blocking=True, memory_format=memory_format)
        targets = batch[1].to(device, non_blocking=True, memory_format=memory_format)
        # a third tensor holds the model's per-sample input (estimate_enhance's alpha on manifest rows,
        # global_local's whole-image view); DDP passes keyword arguments through to the model
        extra = {self.inputs.keyword: batch[2].to(device, non_blocking=True)} if len(batch) > 2 else {}
        with self.stop_request.abortable(not self.info.enabled):  # Ctrl-C may abandon this part of the step
            loss = self.loss(self.net(inputs, **extra), targets)
            loss_value = float(mean_across(loss.detach(), self.info))
            if not math.isfinite(loss_value):
                raise _diverged(state.step + 1, loss_value, self.config.lr, self.saved_step, self.run_dir / LAST)
            state.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        state.optimizer.step()
        state.scheduler.step()
        state.step += 1
        return loss_value

    def validate_and_track(self) -> bool:
        """Score the validation pairs (main process), keep the best as `best`, count validations without a
        better PSNR; returns whether to stop early (the same answer on every process)."""
        stop = False
        if self.val_store is not None:
            state = self.state
            # until scored, this step is not saved as `last`: a resumed run must redo its validation (and `best`)
            self.unvalidated_step = state.step
            with self.stop_request.abortable(not self.info.enabled):
                scores = validate(self.model, self.val_store, self.config.tile, lambda: self.stop_request.requested)
            if scores is None:  # Ctrl-C between two images (several processes): the loop stops next
                self.net.train()
                return broadcast_flag(False, self.info, self.device)
            self.unvalidated_step = None
            score = float(np.mean(scores))
            if state.track(score, self.epoch()):
                ckpt.save_checkpoint(self.run_dir / BEST, exported(self.model), self.meta({"val_psnr": score}))
            self.reporter.print(f"step {state.step}: validation PSNR {score:.2f} dB over {len(scores)} image(s)"
                                f" (best {state.best_psnr:.2f} dB at step {state.best_step})")
            stop = self.config.patience is not None and state.bad_validations >= self.config.patience
            self.net.train()
        return broadcast_flag(stop, self.info, self.device)

    def save(self) -> None:
        """Save `last` and the metric CSVs (the main process writes); not a step whose validation Ctrl-C cut."""
        if self.unvalidated_step == self.state.step:
            return
        if self.info.is_main:
            self.state.save(self.run_dir, self.meta())
        self.saved_step = self.state.step

    # -- the run ------------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Train to the end of the budget (or --stop-after, or early stopping); returns the run's summary. Ctrl-C
        stops after the step in flight and saves `last` (TrainingInterrupted says so)."""
        self.reporter.start(self.total, self.state.step, self.config.log_every)
        self.net.train()
        stop_reason = "failed"
        with self.stop_request:
            try:
                stop_reason = self._loop()
            except KeyboardInterrupt:  # a second Ctrl-C, or one raised inside a step
                stop_reason = "interrupted"
            finally:
                self.reporter.close()
                if stop_reason != "interrupted":  # interrupted: `last` has the rows; a plot would delay the exit
                    self._write_curves()
            if stop_reason == "interrupted":
                raise self._interrupted()
        return self._finish(stop_reason)

    def _write_curves(self) -> None:
        """metrics.csv, val.csv and curves.png as the run stands (the main process writes)."""
        if self.info.is_main and self.state.train_rows:
            self.state.write_rows(self.run_dir)
            plot_curves(self.run_dir / CURVES_PNG, self.state.train_rows, self.state.val_rows)

    def _interrupted(self) -> TrainingInterrupted:
        """Save `last` when steps were made since it was saved; the message says where the run stands."""
        if self.state.step > (self.saved_step or 0):
            self.save()
        if self.saved_step is None:
            return TrainingInterrupted(f"nothing was saved yet in {printable(self.run_dir)}; run the same command to "
                                       "start again")
        return TrainingInterrupted(f"stopped at step {self.saved_step}/{self.total}; {printable(self.run_dir / LAST)} "
                                   "holds it; run the same command with --resume to continue")

    def _loop(self) -> str:
        """Step through this invocation's batches; returns why it ended."""
        state, t_prev = self.state, time.perf_counter()
        batches = iter(self.loader)
        # fetching a batch changes no saved state, but with loader workers a Ctrl-C in the middle of receiving one
        # leaves a worker's file-descriptor handshake hanging (a traceback on stderr): there the flag waits
        fetch_abortable = not self.info.enabled and self.workers == 0
        while True:
            with self.stop_request.abortable(fetch_abortable):
                batch = next(batches, None)
            if batch is None:
                break
            if self._stop_requested():
                return "interrupted"
            t_batch = time.perf_counter()
            loss = self.step(batch)
            self._account(loss, data_s=t_batch - t_prev, step_s=time.perf_counter() - t_prev)
            stop = False
            if state.step % self.val_every == 0 or state.step == self.total:
                stop = self.validate_and_track()
            if stop or state.step % self.save_every == 0 or state.step == self.end:
                self.save()
            self.reporter.step(state.step, self.total, f"loss {loss:.4f} lr "
                                                       f"{state.optimizer.param_groups[0]['lr']:.2e} "
                                                       f"{self.images / max(self.compute_s, 1e-9):.1f} img/s")
            t_prev = time.perf_counter()  # validation and saving are not step time
            if self._stop_requested():
                return "interrupted"
            if stop:
                self.reporter.print(f"early stopping at step {state.step}: no better validation PSNR in "
                                    f"{state.bad_validations} validations")
                return "early_stopping"
        return "completed" if state.step >= self.total else "stopped_after"

    def _stop_requested(self) -> bool:
        """Ctrl-C seen by any process (all of them stop at the same step)."""
        return any_across(self.stop_request.requested, self.info, self.device)

    def _account(self, loss: float, data_s: float, step_s: float) -> None:
        """Count a finished step: its metrics row, throughput and waiting for data."""
        self.images += self.config.batch
        self.compute_s += step_s
        self.data_s += data_s
        self.last_loss = loss
        self.state.log_step(loss, self.epoch(), step_s, data_s)

    def _finish(self, stop_reason: str) -> dict[str, Any]:
        """Agree on the final weights across processes, write the metrics into config.json, return the summary."""
        state = self.state
        broadcast_buffers(self.model, self.info)  # CPU batch norm keeps per-process running statistics: rank 0's
        checksums = gather_strings(_weights_checksum(self.model), self.info)
        if self.finished_summary is not None and state.step == self.finished_summary.get("steps"):
            return self._keep_finished_summary()
        result = {"run_dir": str(self.run_dir), "mode": self.config.mode, "steps": state.step,
                  "total_steps": self.total, "stop_reason": stop_reason, "final_loss": self.last_loss,
                  "best_val_psnr": state.best_val_psnr, "best_step": state.best_step,
                  "last_checkpoint": str(self.run_dir / LAST),
                  "best_checkpoint": str(self.run_dir / BEST) if state.best_step else None,
                  "trainable_params": self.n_trainable, "total_params": self.n_total, "trained_blocks": self.trained,
                  "train_count": len(self.data.train), "val_count": len(self.data.val), "world_size": self.info.world,
                  "rank_weight_sha256": checksums, "workers": self.workers,
                  "images_per_s": self.images / max(self.compute_s, 1e-9),
                  "data_wait_share": self.data_s / max(self.compute_s, 1e-9),
                  "seconds": time.perf_counter() - self.started}
        if self.info.is_main:
            self.run_config["metrics"] = result
            atomic_write_text(self.run_dir / CONFIG_JSON, json.dumps(self.run_config, indent=2) + "\n")
            self.reporter.print(f"{stop_reason} at step {state.step}/{self.total}: loss {self.last_loss:.4f}, "
                                f"{result['images_per_s']:.1f} img/s"
                                + (f", best validation PSNR {state.best_psnr:.2f} dB (step {state.best_step})"
                                   if state.best_step else ""))
        return result


    def _keep_finished_summary(self) -> dict[str, Any]:
        """A run resumed after it had finished: config.json keeps the summary of the invocation that trained."""
        result = self.finished_summary
        if self.info.is_main:
            self.run_config["metrics"] = result
            atomic_write_text(self.run_dir / CONFIG_JSON, json.dumps(self.run_config, indent=2) + "\n")
            self.reporter.print(f"already {result.get('stop_reason')} at step {self.state.step}/{self.total}; nothing "
                                "to train")
        return result


def _finished_summary(run_dir: Path, step: int) -> dict[str, Any] | None:
    """The summary config.json holds for a run that finished at `step` (None for any other run)."""
    try:
        metrics = json.loads((run_dir / CONFIG_JSON).read_text()).get("metrics")
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) and metrics.get("steps") == step else None


def _diverged(step: int, loss: float, lr: float, saved_step: int | None, last_dir: Path) -> TrainingDiverged:
    """The error for a NaN/inf loss: where the last good checkpoint is (it is never overwritten)."""
    kept = f"the last good checkpoint is {last_dir} (step {saved_step})" if saved_step is not None else \
        "no checkpoint had been saved yet"
    return TrainingDiverged(f"training stopped: the loss became {loss} at step {step} (learning rate {lr:g}); "
                            f"{kept}; try a lower --lr")


def _weights_checksum(model: torch.nn.Module) -> str:
    """sha256 of all parameters and buffers (to check that processes agree)."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
