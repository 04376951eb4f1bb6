"""The dataset card of a generated dataset: OUT/README.md with the YAML header the Hugging Face hub reads
(configs with one data folder per split, features, example counts per split), then what made it: the params
summary, the command, the sources, and how to read 16-bit images."""
from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

import numpy as np

# Hugging Face's name for each split folder (it reads a folder named `val` as the `validation` split)
HF_SPLIT_NAMES = {"val": "validation", "valid": "validation", "dev": "validation"}
_ARROW_TO_HF = {"string": "string", "int32": "int32", "int64": "int64", "double": "float64", "bool": "bool"}

SIXTEEN_BIT_NOTE = """\
16-bit datasets (`--bit-depth 16`) hold 16-bit RGB PNGs. PIL, and so the `datasets` Image feature, reduces
16-bit RGB to 8 bits when it decodes them; read them at full depth with OpenCV:

```python
import cv2, datasets, numpy as np
ds = datasets.load_dataset("imagefolder", data_dir=OUT).cast_column("dark", datasets.Image(decode=False))
item = ds["train"][0]["dark"]
data = item["bytes"] or open(item["path"], "rb").read()
dark = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)[..., ::-1]  # uint16 RGB
```
(or `lowsim.imageio.read_image(path)`)."""


def hf_split_name(split: str) -> str:
    return HF_SPLIT_NAMES.get(split, split)


def features(schema: Any) -> list[dict[str, str]]:
    """The manifest schema (pyarrow) as Hugging Face features: `<kind>_file_name` columns are `<kind>` images."""
    out = []
    for field in schema:
        if field.name.endswith("_file_name"):
            out.append({"name": field.name.removesuffix("_file_name"), "dtype": "image"})
        else:
            out.append({"name": field.name, "dtype": _ARROW_TO_HF.get(str(field.type), "string")})
    return out


def yaml_header(split_counts: Mapping[str, int], schema: Any) -> str:
    """The front matter: config (data files per split folder), features and split sizes. JSON is valid YAML."""
    splits = [s for s, count in split_counts.items() if count]
    config = {"config_name": "default",
              "data_files": [{"split": hf_split_name(s), "path": f"{s}/**"} for s in splits]}
    info = {"features": features(schema),
            "splits": [{"name": hf_split_name(s), "num_examples": split_counts[s]} for s in splits]}
    lines = ["---", "task_categories:", "- image-to-image", "tags:", "- low-light", "- synthetic", "- lowsim",
             f"configs:\n- {json.dumps(config)}", f"dataset_info: {json.dumps(info)}", "---"]
    return "\n".join(lines) + "\n"


def params_table(rows: Sequence[Mapping[str, Any]], names: Sequence[str], mean: Mapping[str, float]) -> str:
    """Markdown: per parameter the distribution's mean and the 10th/50th/90th percentiles of the drawn values."""
    lines = ["| parameter | mean (distribution) | p10 | p50 | p90 (drawn) |", "|---|---:|---:|---:|---:|"]
    for name in names:
        values = np.array([r[name] for r in rows if r.get(name) is not None], dtype=float)
        if not len(values):
            continue
        p10, p50, p90 = np.percentile(values, [10, 50, 90])
        lines.append(f"| {name} | {mean.get(name, float('nan')):.4g} | {p10:.4g} | {p50:.4g} | {p90:.4g} |")
    return "\n".join(lines)


def render_card(*, title: str, split_counts: Mapping[str, int], schema: Any, rows: Sequence[Mapping[str, Any]],
                dist: Any, command: str, src_root: str, n_sources: int, bit_depth: int) -> str:
    """The whole README.md."""
    counts = ", ".join(f"{hf_split_name(s)} {c}" for s, c in split_counts.items())
    body = [
        f"# {title}", "",
        f"Synthetic low-light pairs made by lowsim from clean photos: `dark` is the "
        f"degraded image, `clean` its target, both {bit_depth}-bit PNG; every parameter of each sample is a column.",
        "", f"Samples per split: {counts}. Splits go by source photo (crops of one photo never straddle splits).",
        "", "## How it was made", "", f"```bash\n{command}\n```", "",
        f"Sources: {n_sources} photos under `{src_root}` (each row's `source_path` and `source_sha256`).",
        f"Degradation model `{dist.model}`, sampler `{dist.sampler}`, calibrated by `{dist.method}` on "
        f"{dist.n_pairs} pairs. The full parameter distribution (mean, covariance, schema version) and this "
        "command are in the Parquet footer of the manifest and of every `metadata.parquet` (keys `lowsim.params`, `lowsim.command`).",
        "", "## Parameters", "", params_table(rows, list(dist.names), dist.natural_mean()), "",
        "Fixed: " + (", ".join(f"{k} = {v:g}" for k, v in dist.fixed.items()) or "none") + ".",
        "", "## Loading", "", "```python\nimport datasets\nds = datasets.load_dataset(\"imagefolder\", "
        "data_dir=OUT)  # train / validation / test\n```", "", "## 16-bit images", "", SIXTEEN_BIT_NOTE, "",
    ]
    return yaml_header(split_counts, schema) + "\n" + "\n".join(body)
