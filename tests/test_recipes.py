"""lowsim generate --recipe: each recipe makes dark samples that regenerate bit-exactly and records its generator
and parameters; bad input is one line; the experiment's recipe rows (runner's `run` stubbed)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lowsim.generate import generate, regenerate
from lowsim.imageio import read_image
from lowsim.manifest import read_manifest
from lowsim.params import GENERIC_APPLIED_NAMES, UNPROCESS_PARAM_NAMES, V2_PARAM_NAMES, ParamDistribution
from lowsim.recipes import RECIPES, recipe_params

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPE_COLUMNS = {"generic": ("albumentations_seed", *GENERIC_APPLIED_NAMES), "unprocessing": UNPROCESS_PARAM_NAMES,
                  "uncalibrated": V2_PARAM_NAMES, "calibrated": V2_PARAM_NAMES}
MODELS = {"generic": "lowsim.generic/v1", "unprocessing": "lowsim.unprocess/v1",
          "uncalibrated": "lowsim.degrade/v2", "calibrated": "lowsim.degrade/v2"}


def lowsim_cli(*args: str) -> subprocess.CompletedProcess:
    """`python -m lowsim ARGS` with this checkout's sources first."""
    env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([sys.executable, "-m", "lowsim", *args], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.fixture(scope="module")
def recipe_sets(tmp_path_factory, clean_dir: Path) -> dict[str, Path]:
    """Four 64-px samples of Kodak per recipe: recipe name -> manifest."""
    pytest.importorskip("albumentations")
    root = tmp_path_factory.mktemp("recipes")
    manifests = {}
    for recipe in RECIPES:
        lol = REPO_ROOT / "src/lowsim/data/params/lol.json"
        params = recipe_params(recipe, lol if recipe == "calibrated" else None)
        result = generate(src=clean_dir / "kodak24", n=4, params=params, out=root / recipe, size=64, seed=3,
                          split_fractions="train=1", progress=False, recipe=recipe)
        manifests[recipe] = result.manifest
    return manifests


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_regenerates_bit_exactly_and_is_dark(recipe_sets: dict[str, Path], recipe: str) -> None:
    manifest = recipe_sets[recipe]
    frame, _ = read_manifest(manifest)
    assert len(frame) == 4
    darker = 0
    for _, row in frame.iterrows():
        clean, dark, _ = regenerate(manifest, row["key"])
        on_disk = read_image(manifest.parent / row["dark_file_name"])
        assert np.array_equal(dark, on_disk)
        darker += dark.astype(float).mean() < clean.astype(float).mean() * 0.8
    assert darker == len(frame)


@pytest.mark.parametrize("recipe", RECIPES)
def test_manifest_records_recipe_model_and_parameters(recipe_sets: dict[str, Path], recipe: str) -> None:
    frame, meta = read_manifest(recipe_sets[recipe])
    assert set(frame["recipe"]) == {recipe}
    assert set(frame["model"]) == {MODELS[recipe]}
    values = frame[list(RECIPE_COLUMNS[recipe])]
    assert values.notna().all().all()
    assert values.nunique().max() > 1  # drawn per sample, not constant
    own = recipe != "calibrated"
    assert ("--recipe " + recipe in meta["lowsim.command"]) == own


def test_generic_records_library_version_and_regenerate_checks_it(recipe_sets: dict[str, Path], tmp_path: Path) -> None:
    import albumentations
    import pyarrow.parquet as pq

    manifest = recipe_sets["generic"]
    frame, _ = read_manifest(manifest)
    assert set(frame["recipe_library_version"]) == {albumentations.__version__}
    table = pq.read_table(manifest)
    versions = table.column("recipe_library_version").to_pylist()
    forged = table.set_column(table.schema.get_field_index("recipe_library_version"), "recipe_library_version",
                              [["0.0.1"] * len(versions)]).replace_schema_metadata(table.schema.metadata)
    copy = manifest.parent / "forged.parquet"
    pq.write_table(forged, copy)
    from lowsim.errors import LowsimError

    with pytest.raises(LowsimError, match="albumentations 0.0.1"):
        regenerate(copy, frame["key"].iloc[0])


def test_unprocessing_read_noise_follows_the_papers_log_log_line(recipe_sets: dict[str, Path]) -> None:
    from lowsim.recipes.ranges import RangeDistribution

    dist = RangeDistribution.load(REPO_ROOT / "src/lowsim/data/params/unprocessing.json")
    rng = np.random.default_rng(0)
    draws = [dist.sample(rng) for _ in range(400)]
    shot = np.log([d.shot_variance for d in draws])
    read = np.log([d.read_variance for d in draws])
    slope, intercept = np.polyfit(shot, read, 1)
    assert abs(slope - 2.18) < 0.1 and abs(intercept - 1.20) < 0.6
    assert min(np.exp(shot)) >= 1e-4 and max(np.exp(shot)) <= 0.012
    weights = np.array([[d.ccm_weight_1, d.ccm_weight_2, d.ccm_weight_3, d.ccm_weight_4] for d in draws])
    assert np.allclose(weights.sum(axis=1), 1.0)


def test_shipped_recipe_files_match_their_code() -> None:
    from lowsim.recipes.generic import ranges_file_dict
    from lowsim.recipes.uncalibrated import uncalibrated_distribution

    shipped = REPO_ROOT / "src/lowsim/data/params"
    assert json.loads((shipped / "generic.json").read_text()) == json.loads(json.dumps(ranges_file_dict()))
    built, loaded = uncalibrated_distribution(), ParamDistribution.load(shipped / "v2-uncalibrated.json")
    assert np.allclose(built.mean, loaded.mean) and np.allclose(built.cov, loaded.cov)
    assert loaded.n_pairs == 0 and loaded.method == "uncalibrated"


@pytest.mark.parametrize("args, message", [
    (["--recipe", "kornia"], "--recipe must be one of generic, unprocessing, uncalibrated, calibrated; got 'kornia'"),
    (["--recipe", "generic", "--params", "lol"], "--recipe generic draws from its own shipped ranges"),
    (["--recipe", "unprocessing", "--params", "lol"], "does not use --params lol"),
])
def test_bad_recipe_input_is_one_line(tmp_path: Path, clean_dir: Path, args: list[str], message: str) -> None:
    result = lowsim_cli("generate", "--src", str(clean_dir / "kodak24"), "--n", "1", "--out", str(tmp_path / "o"),
                        *args)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


def test_generic_without_albumentations_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from lowsim.errors import LowsimError

    monkeypatch.setitem(sys.modules, "albumentations", None)  # import fails as if not installed
    with pytest.raises(LowsimError, match=r"pip install 'lowsim\[recipes\]'"):
        recipe_params("generic", None)


# ---------------------------------------------------------------------------- transfer experiment --recipes


def _stub_runs(exp, calls: list) -> None:
    """Replace the experiment's `run` by a recorder that writes the evaluate CSVs later steps read."""
    from transfer.evaluate import write_rows

    def run(stage: str, tool: str, *args) -> float:
        args = [str(a) for a in args]
        calls.append((stage, tool, args))
        if "evaluate" in args:
            out = Path(args[args.index("--out") + 1])
            write_rows(out, [{"name": f"img{i}", "psnr": 10.0 + i, "ssim": 0.5, "psnr_gt_mean": 12.0}
                             for i in range(3)])
        exp.stage_seconds[stage] = 1.0
        return 1.0

    exp.run = run


def _stubbed_experiment(tmp_path: Path, lol_dev: Path, budget) -> tuple:
    """An experiment on 20 pool and 3 val pairs of lol-dev whose stages are recorded, not run: (exp, pool CSV,
    val CSV, calls)."""
    from lowsim.pairs import find_pairs
    from transfer.experiment import Experiment, write_pairs_csv

    pool_csv, val_csv = tmp_path / "pool.csv", tmp_path / "val.csv"
    pairs = find_pairs(lol_dev)
    write_pairs_csv(pool_csv, pairs[:20])
    write_pairs_csv(val_csv, pairs[20:23])
    exp = Experiment(pairs=lol_dev, clean=[tmp_path], out=tmp_path / "out", docs=tmp_path / "docs", budget=budget)
    calls: list = []
    _stub_runs(exp, calls)
    return exp, pool_csv, val_csv, calls


def test_recipe_rows_generate_pretrain_and_finetune_at_the_main_rows_budget(tmp_path: Path, lol_dev: Path) -> None:
    pytest.importorskip("torch")
    from transfer.experiment import Budget
    from transfer.experiment.recipes import recipe_rows

    budget = Budget.quick()
    exp, pool_csv, val_csv, calls = _stubbed_experiment(tmp_path, lol_dev, budget)
    rows = recipe_rows(exp, ["generic", "unprocessing"], pool_csv, val_csv, ["--width", 8], ["--width", 8])
    assert [r.name for r in rows] == ["recipe generic: zero-shot", "recipe generic: fine-tuned 10%, last 2 blocks",
                                      "recipe unprocessing: zero-shot",
                                      "recipe unprocessing: fine-tuned 10%, last 2 blocks"]
    generates = [args for stage, _, args in calls if stage.startswith("generate-recipe-")]
    assert [a[a.index("--recipe") + 1] for a in generates] == ["generic", "unprocessing"]
    for args in generates:
        assert args[args.index("--n") + 1] == str(budget.n_synthetic)
        assert args[args.index("--size") + 1] == str(budget.synthetic_size) and "--params" not in args
    pretrains = [args for stage, _, args in calls if stage.startswith("pretrain-recipe-")]
    assert all(a[a.index("--iters") + 1] == str(budget.pretrain_iters) and a[a.index("--model") + 1] == budget.model
               for a in pretrains) and len(pretrains) == 2
    finetunes = [args for stage, _, args in calls if "finetune" in args]
    assert len(finetunes) == 2 * len(budget.subset_seeds)
    assert all("--trainable-blocks" in a and "pretrain-recipe-" in a[a.index("--checkpoint") + 1] for a in finetunes)


def test_recipe_section_gives_the_paired_difference_over_seeds(tmp_path: Path) -> None:
    from transfer.evaluate import write_rows
    from transfer.experiment import Budget, Experiment
    from transfer.experiment.page import recipe_section, seed_csvs

    budget = Budget.quick()
    budget.subset_seeds = (0, 1)
    exp = Experiment(pairs=tmp_path, clean=[tmp_path], out=tmp_path, docs=tmp_path, budget=budget)
    ours = "fine-tuned 10%, last 2 blocks"
    for name, per_seed in ((ours, ([12.0, 13.0, 15.0], [14.0, 13.0, 17.0])),  # image means 13, 13, 16
                           (f"recipe generic: {ours}", ([11.0, 13.0, 13.0], [11.0, 13.0, 15.0]))):  # 11, 13, 14
        for path, psnrs in zip(seed_csvs(tmp_path, name, (0, 1)), per_seed):
            write_rows(path, [{"name": f"img{i}", "psnr": p, "ssim": 0.5} for i, p in enumerate(psnrs)])
    text = "\n".join(recipe_section(exp, ["generic", "unprocessing"], ours))
    assert "| generic | +1.33 ± 0.67 |" in text  # differences 2, 0, 2
    assert "| unprocessing | - |" in text  # no CSVs: no gap


@pytest.mark.parametrize("text", ["kornia", "generic,generic", "calibrated"])
def test_experiment_recipes_refuses_unknown_repeated_or_calibrated(text: str) -> None:
    from lowsim.errors import LowsimError
    from transfer.experiment.recipes import parse_recipes

    with pytest.raises(LowsimError, match="--recipes takes distinct names"):
        parse_recipes(text)
    assert parse_recipes(None) == () and parse_recipes("generic, uncalibrated") == ("generic", "uncalibrated")


def test_recipe_rows_follow_the_first_fine_tuning_method_and_its_rate(tmp_path: Path, lol_dev: Path) -> None:
    pytest.importorskip("torch")
    from transfer.experiment import Budget
    from transfer.experiment.recipes import recipe_rows
    from transfer.experiment.table1 import finetune_rows

    budget = Budget.quick()
    budget.finetune_methods, budget.finetune_lr = ("all", "last-blocks"), 3e-4
    exp, pool_csv, val_csv, calls = _stubbed_experiment(tmp_path, lol_dev, budget)
    finetune_rows(exp, pool_csv, val_csv, ["--width", 8], False, [])
    rows = recipe_rows(exp, ["generic"], pool_csv, val_csv, ["--width", 8], ["--width", 8])
    assert [r.name for r in exp.rows[:2]] == ["fine-tuned 10%, all layers", "fine-tuned 10%, last 2 blocks"]
    assert "adapter" not in " ".join(r.name for r in exp.rows)
    assert rows[1].name == "recipe generic: fine-tuned 10%, all layers"
    finetunes = [args for _, _, args in calls if "finetune" in args]
    assert all(a[a.index("--lr") + 1] == "0.0003" for a in finetunes)
    recipe_finetunes = [a for a in finetunes if "pretrain-recipe-generic" in a[a.index("--checkpoint") + 1]]
    assert recipe_finetunes and all(a[a.index("--method") + 1] == "all" for a in recipe_finetunes)


@pytest.mark.parametrize("text", ["sideways", "all,all", ""])
def test_experiment_refuses_unknown_or_repeated_fine_tuning_methods(text: str) -> None:
    from lowsim.errors import LowsimError
    from transfer.cli import _method_list

    with pytest.raises(LowsimError, match="--finetune-methods takes distinct names"):
        _method_list(text)
    assert _method_list("all, adapter") == ("all", "adapter")
