"""`transfer experiment --quick`: the whole Table 1 loop on a tiny budget writes every artefact, finite metrics."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from transfer.experiment import (NOTES_MARKER, SECTION_END, SECTION_START, Budget, Experiment, ZooRow, kept_sections,
                                 read_zoo_csv, replace_section, slug, subset_csvs, write_pairs_csv, write_zoo_csv,
                                 zoo_section)
from lowsim.pairs import find_pairs
from test_recipes import _stubbed_experiment as stubbed_experiment


def test_slug_collapses_punctuation() -> None:
    assert slug("fine-tuned 10%, last 2 blocks") == "fine-tuned-10-last-2-blocks"


def test_pairs_csv_round_trips_through_the_csv_layout(tmp_path: Path, lol_dev: Path) -> None:
    pairs = find_pairs(lol_dev)[:3]
    write_pairs_csv(tmp_path / "split" / "pool.csv", pairs)
    back = find_pairs(tmp_path / "split" / "pool.csv", layout="csv")
    assert [p.name for p in back] == [p.name for p in pairs]
    assert [p.dark.resolve() for p in back] == [p.dark.resolve() for p in pairs]


def test_fine_tuning_subsets_use_the_subset_selector_of_frac(tmp_path: Path, lol_dev: Path) -> None:
    from transfer.data import select_fraction
    from transfer.models import list_models

    pool = find_pairs(lol_dev)[:20]
    write_pairs_csv(tmp_path / "pool.csv", pool)
    for frac, seed in ((0.1, 0), (0.25, 3), (1.0, 0)):
        train_csv, holdout_csv, used = subset_csvs(tmp_path / "pool.csv", frac, seed, tmp_path / f"s{frac}-{seed}")
        train = [p.name for p in find_pairs(train_csv, layout="csv")]
        assert train == [p.name for p in select_fraction(pool, frac, seed)] and used == len(train)
        rest = [] if holdout_csv is None else [p.name for p in find_pairs(holdout_csv, layout="csv")]
        assert sorted(train + rest) == sorted(p.name for p in pool) and not set(train) & set(rest)
    assert set(Budget().zoo_models) == set(list_models()) and Budget().zoo_models[0] == "sid_unet"


def _zoo_row(model: str, psnr: float, speed: float) -> ZooRow:
    return ZooRow(model, 1000, 100, speed, 12.0, psnr - 1, 0.5, psnr, 0.6, 3.0)


def test_zoo_section_names_the_best_and_the_fastest_model(tmp_path: Path) -> None:
    exp = Experiment(pairs=tmp_path, clean=[tmp_path], out=tmp_path, docs=tmp_path, budget=Budget())
    lines = zoo_section([_zoo_row("a", 15.0, 90.0), _zoo_row("b", 17.5, 20.0)], exp, "20 real pairs")
    text = "\n".join(lines)
    assert lines[0] == SECTION_START and lines[-1] == SECTION_END
    assert "**b** (17.50 dB)" in text and "**a** (90.0 img/s)" in text
    assert "| a | 1,000 | 100 | 90.0 | 14.00 |" in text and "| - |" in text  # no per-image CSVs: no gap


def test_paired_gap_is_the_mean_per_image_difference_with_its_standard_error(tmp_path: Path) -> None:
    from transfer.evaluate import write_rows
    from transfer.experiment import paired_gap

    for model, psnrs in (("a", [10.0, 12.0, 14.0]), ("b", [11.0, 12.0, 16.0])):
        write_rows(tmp_path / "results" / f"zoo-{model}-finetuned-10.csv",
                   [{"name": f"img{i}", "psnr": p, "ssim": 0.5} for i, p in enumerate(psnrs)])
    mean, se = paired_gap(tmp_path, "a", "b")  # differences -1, 0, -2
    assert mean == pytest.approx(-1.0) and se == pytest.approx(1.0 / 3**0.5)
    assert paired_gap(tmp_path, "a", "missing") is None


def test_zoo_section_is_replaced_in_place_and_kept_by_a_rewrite(tmp_path: Path) -> None:
    page = "# T\n\ntable\n"
    once = replace_section(page, [SECTION_START, "old", SECTION_END])
    twice = replace_section(once + "\n" + NOTES_MARKER + "\nmy reading\n", [SECTION_START, "new", SECTION_END])
    assert "old" not in twice and twice.count(SECTION_START) == 1 and twice.index("new") < twice.index(NOTES_MARKER)
    (tmp_path / "results.md").write_text(twice)
    kept = "".join(kept_sections(tmp_path / "results.md"))
    assert "new" in kept and "my reading" in kept and "table" not in kept


def test_zoo_csv_round_trips(tmp_path: Path) -> None:
    rows = [_zoo_row("plain_cnn", 16.25, 300.5), _zoo_row("sid_unet", 18.0, 140.0)]
    write_zoo_csv(tmp_path / "zoo.csv", rows)
    assert read_zoo_csv(tmp_path / "zoo.csv") == rows


def test_a_seeded_row_is_the_mean_and_spread_of_its_seeds(tmp_path: Path) -> None:
    from transfer.experiment import Scores, seeded_row
    from transfer.experiment.page import row_line

    scores = [Scores(17.0, 0.6, 20.0, tmp_path / "results" / "a.csv"),
              Scores(18.0, 0.7, 21.0, tmp_path / "results" / "b.csv")]
    row = seeded_row("fine-tuned", scores, tmp_path, pairs_used="20 real", budget="-", seconds=1.0)
    assert (row.psnr, row.gt_mean, row.seed_psnr) == (17.5, 20.5, [17.0, 18.0])
    assert row.psnr_sd == pytest.approx(0.7071, abs=1e-4) and row.ssim == pytest.approx(0.65)
    line = row_line(row)
    assert "17.50 ± 0.71" in line and "20.50 ± 0.71" in line and "17.00 / 18.00" in line
    assert "[a.csv](results/a.csv), [b.csv](results/b.csv)" in line
    single = seeded_row("curve", scores[:1], tmp_path, pairs_used="0", budget="-", seconds=0.0)
    assert "| 17.00 | 20.00 |" in row_line(single) and single.seed_psnr == []


@pytest.mark.slow
@pytest.mark.timeout(1200)  # every stage is a subprocess (about 30 of them): 5-6 minutes on two busy cores
def test_quick_experiment_writes_every_artefact(tmp_path: Path, shared_data: Path) -> None:
    docs = tmp_path / "docs"
    cmd = [sys.executable, "-m", "transfer", "experiment", "--quick", "--pairs", str(shared_data / "lol-dev"),
           "--clean", str(shared_data / "clean" / "kodak24"), "--out", str(tmp_path / "work"), "--docs", str(docs)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1100)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for name in ("results.md", "results.json", "fig2_calibration_isp.png", "fig3_degradation.png",
                 "fig5_curves_pretrain.png", "fig5_curves_finetune.png", "fig7_comparison.png"):
        assert (docs / name).is_file() and (docs / name).stat().st_size > 0, name
    rows = json.loads((docs / "results.json").read_text())["rows"]
    names = [r["name"] for r in rows]
    for expected in ("identity (dark input)", "zero-shot (pretrained only)", "fine-tuned 10%, last 2 blocks",
                     "fine-tuned 10%, adapter", "fine-tuned 10%, all layers", "scratch 10% (same budget)",
                     "scratch 100% of the pool", "paper pipeline: zero-shot"):
        assert expected in names
    tuned = rows[names.index("fine-tuned 10%, adapter")]  # quick: one subset seed (several: the unit test above)
    assert tuned["csv"].endswith("seed-0.csv") and math.isfinite(tuned["gt_mean"])
    zoo = read_zoo_csv(docs / "results" / "zoo.csv")  # quick budget: the zoo rows run plain_cnn only
    assert [r.model for r in zoo] == ["plain_cnn"] and math.isfinite(zoo[0].finetuned_psnr)
    assert SECTION_START in (docs / "results.md").read_text()
    for row in rows:
        assert math.isfinite(row["psnr"]) and math.isfinite(row["ssim"]), row
        for csv_path in row["csv"].split(", "):
            frame = pd.read_csv(docs / csv_path)
            assert len(frame) > 0 and frame[["psnr", "ssim"]].notna().all().all()


def test_zoo_keeps_a_score_newer_than_the_weights_it_scored(tmp_path: Path) -> None:
    import os

    from transfer.evaluate import write_rows
    from transfer.experiment.zoo import _evaluate

    run = tmp_path / "run"
    (run / "best").mkdir(parents=True)
    weights, config = run / "best" / "model.safetensors", run / "config.json"
    weights.write_bytes(b"w")
    config.write_text("{}")
    exp = Experiment(pairs=tmp_path, clean=[tmp_path], out=tmp_path, docs=tmp_path)
    (tmp_path / "results").mkdir()
    write_rows(tmp_path / "results" / "m.csv", [{"name": "a", "psnr": 20.0, "ssim": 0.5}])
    calls: list = []
    exp.run = lambda stage, tool, *args: calls.append(stage) or 1.0
    os.utime(weights, (1, 1))
    os.utime(config, None)  # a resumed run rewrites its config.json, not a finished run's weights
    assert _evaluate(exp, "m", run, tmp_path / "val.csv") == (20.0, 0.5) and calls == []
    os.utime(weights, None)
    os.utime(tmp_path / "results" / "m.csv", (1, 1))
    _evaluate(exp, "m", run, tmp_path / "val.csv")
    assert calls == ["evaluate-m"]  # new weights: scored again


def test_noise_augmentation_reaches_the_main_fine_tuned_rows_only(tmp_path: Path, lol_dev: Path) -> None:
    pytest.importorskip("torch")
    from transfer.experiment import Budget
    from transfer.experiment.recipes import recipe_rows
    from transfer.experiment.runner import main_params
    from transfer.experiment.table1 import finetune_rows

    budget = Budget.quick()
    budget.finetune_methods, budget.finetune_augment_prob = ("last-blocks",), 0.5
    exp, pool_csv, val_csv, calls = stubbed_experiment(tmp_path, lol_dev, budget)
    finetune_rows(exp, pool_csv, val_csv, ["--width", 8], False, [])
    recipe_rows(exp, ["generic"], pool_csv, val_csv, ["--width", 8], ["--width", 8])
    finetunes = [args for _, _, args in calls if "finetune" in args]
    main, recipe = ([a for a in finetunes if ("pretrain-recipe-generic" in a[a.index("--checkpoint") + 1]) == r]
                    for r in (False, True))
    assert main and all(a[a.index("--augment-params") + 1] == str(main_params(exp)) and
                        a[a.index("--augment-prob") + 1] == "0.5" for a in main)
    assert recipe and not any("--augment-params" in a for a in recipe)  # a recipe row stays the recipe's own
    assert "noise augmentation of 0.5" in exp.rows[0].budget
    budget.finetune_augment_prob = 0.0  # the default: off
    assert not any("--augment-params" in a for a in _finetune_calls_of(tmp_path / "off", lol_dev, budget))


def _finetune_calls_of(tmp_path: Path, lol_dev: Path, budget) -> list:
    """The finetune command lines of the main fine-tuned rows of a stubbed experiment."""
    from transfer.experiment.table1 import finetune_rows

    exp, pool_csv, val_csv, calls = stubbed_experiment(tmp_path, lol_dev, budget)
    finetune_rows(exp, pool_csv, val_csv, ["--width", 8], False, [])
    return [args for _, _, args in calls if "finetune" in args]


def test_experiment_refuses_an_augmentation_share_outside_zero_one() -> None:
    from lowsim.errors import LowsimError
    from transfer.cli import _experiment_budget
    from transfer.experiment import Budget

    options = dict(n=None, pretrain_iters=None, finetune_iters=None, models=None, model=None, subset_seeds=None,
                   zoo_pretrain_iters=None, zoo_finetune_iters=None)
    with pytest.raises(LowsimError, match="--finetune-augment-prob must be in"):
        _experiment_budget(Budget(), **options, finetune_augment_prob=1.5)
    assert _experiment_budget(Budget(), **options, finetune_augment_prob=0.25).finetune_augment_prob == 0.25
    assert Budget().finetune_augment_prob == 0.0
