#!/usr/bin/env bash
# Set up .venv and run the main job on the embedded default: degrade scikit-image's bundled sample photos
# with the shipped LOL params (lowsim/data/params/lol.json) into out/quickstart (PNG pairs + Parquet manifest), then draw Figure 3.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/lowsim generate --n 24 --size 256 --out out/quickstart --manifest out/quickstart.parquet --workers 2
first=$(.venv/bin/python -c "import pandas as pd; print(pd.read_parquet('out/quickstart.parquet').query('status == \"ok\"').key.iloc[0])")
.venv/bin/lowsim regenerate out/quickstart.parquet --key "$first" --out out/quickstart-regenerated.png
.venv/bin/python - <<'PY'
import numpy as np, pandas as pd
from lowsim.imageio import read_image
rows = pd.read_parquet("out/quickstart.parquet").query("status == 'ok'")
same = np.array_equal(read_image("out/quickstart/" + rows.dark_file_name.iloc[0]), read_image("out/quickstart-regenerated.png"))
print(f"{len(rows)} ok samples in out/quickstart; sample {rows.key.iloc[0]} regenerates bit-exactly: {same}")
PY
photo=$(.venv/bin/python -c "import skimage, pathlib; print(pathlib.Path(skimage.__file__).parent / 'data' / 'astronaut.png')")
.venv/bin/lowsim preview --src "$photo" --out out/quickstart-preview.png
echo "preview strip: out/quickstart-preview.png"
