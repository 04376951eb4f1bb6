"""The founding paper's Table 1 on real pairs, end to end, with one command (`transfer experiment`).

- `runner`: `Budget`, `Experiment` (runs the project's own commands as subprocesses, times and scores them),
  the real-pair split and the fine-tuning subsets (transfer.data's subset selector).
- `table1`: `run_experiment`, the Table 1 rows (synthetic test, floors, zero-shot, fine-tuned, scratch, the
  paper pipeline) and the figures.
- `zoo`: `run_zoo` / `run_zoo_only`, every registered model at one shared budget.
- `page`: docs/results.md, results.json and results/zoo.csv.
"""
from __future__ import annotations

from transfer.experiment.page import (NOTES_MARKER, PAPER_TABLE1, SECTION_END, SECTION_START, ZOO_CSV, ZooRow,
                                      find_section, kept_sections, machine_description, paired_gap, read_zoo_csv,
                                      replace_section, update_results_page, write_results, write_zoo_csv,
                                      zoo_section)
from transfer.experiment.runner import (Budget, Experiment, Row, Scores, default_zoo_models, make_synthetic,
                                        read_means, read_scores, seeded_row, slug, subset_csvs, write_pairs_csv)
from transfer.experiment.table1 import FINETUNE_ROWS, fit_fixed_curve, fixed_gamma_floor, run_experiment
from transfer.experiment.zoo import run_zoo, run_zoo_only

__all__ = ["FINETUNE_ROWS", "NOTES_MARKER", "PAPER_TABLE1", "SECTION_END", "SECTION_START", "ZOO_CSV", "Budget",
           "Experiment", "Row", "Scores", "ZooRow", "default_zoo_models", "find_section", "fit_fixed_curve",
           "fixed_gamma_floor", "kept_sections", "machine_description", "make_synthetic", "paired_gap", "read_means",
           "read_scores", "read_zoo_csv", "replace_section", "run_experiment", "seeded_row", "run_zoo", "run_zoo_only", "slug", "subset_csvs", "update_results_page",
           "write_pairs_csv", "write_results", "write_zoo_csv", "zoo_section"]
