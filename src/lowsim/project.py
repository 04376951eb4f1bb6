"""The project-folder convention: what the commands use when an option is left out.

A project folder is the working directory the commands run in:

    lowsim.toml              optional: default options per command, one table each ([calibrate], [generate],
                             [pretrain], [finetune], ...; keys are option names with `_` for `-`);
                             $LOWSIM_CONFIG names another file
    params/<name>.json       `lowsim calibrate --pairs DIR` (name: the pairs folder's, which the file records);
                             the newest is generate's default params and its pairs finetune's default --pairs
    data/<src name>/         `lowsim generate --src DIR`: the dataset and its manifest.parquet
    runs/pretrain/, runs/finetune/   `transfer pretrain`, `transfer finetune`

Every default taken from here is printed (one `note:` line on stdout); one that cannot be resolved is a
one-line error naming the command to run first.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from lowsim.errors import LowsimError

CONFIG_FILE = "lowsim.toml"
CONFIG_ENV = "LOWSIM_CONFIG"
PARAMS_DIR = "params"
SHIPPED_PARAMS = "data/params"  # inside the lowsim package
DATA_DIR = "data"
MANIFEST_NAME = "manifest.parquet"
LEGACY_MANIFESTS_DIR = "manifests"  # where manifests went before they moved beside their dataset


def note(message: str) -> None:
    """Say which default was used (stdout: stderr is kept for the one line of an error)."""
    print(f"note: {message}", flush=True)


def newest(paths: Iterable[Path]) -> Path | None:
    """The most recently modified path (ties: the last name), or None for none."""
    stamped = [(p.stat().st_mtime_ns, str(p), p) for p in paths if p.exists()]
    return max(stamped)[2] if stamped else None


def shown(path: Path, root: Path | None = None) -> str:
    """A path as the user should read it: relative to the project folder when inside it."""
    root = Path.cwd() if root is None else root
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


# ---- config: default options per command -------------------------------------------------------------------

def config_path(root: Path | None = None) -> Path | None:
    """$LOWSIM_CONFIG, else lowsim.toml in the project folder; None when there is none."""
    named = os.environ.get(CONFIG_ENV)
    if named:
        path = Path(named)
        if not path.is_file():
            raise LowsimError(f"config file not found (named by ${CONFIG_ENV})", path)
        return path
    path = (Path.cwd() if root is None else root) / CONFIG_FILE
    return path if path.is_file() else None


def load_config(root: Path | None = None) -> dict[str, dict[str, Any]]:
    """The config's tables (command name -> {option: value}); {} without a config file."""
    path = config_path(root)
    if path is None:
        return {}
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise LowsimError(f"cannot read the config ({err})", path) from None
    bad = [key for key, value in data.items() if not isinstance(value, dict)]
    if bad:
        raise LowsimError(f"expected one table per command ([generate], [pretrain], ...); {bad[0]!r} is not one",
                          path)
    return {command: {key.replace("-", "_"): value for key, value in table.items()}
            for command, table in data.items()}


def command_defaults(group: Any, argv: list[str]) -> dict[str, dict[str, Any]]:
    """Click's default_map for `group` (a click Group) from the config. The invoked command's table is
    announced, and a key that is none of its options is refused (a typo would otherwise be ignored)."""
    config = load_config()
    command = next((a for a in argv if not a.startswith("-")), None)
    table = config.get(command or "", {})
    subcommand = group.commands.get(command) if command else None
    if subcommand is None or not table:
        return config
    names = {p.name for p in subcommand.params}
    unknown = sorted(set(table) - names)
    if unknown:
        raise LowsimError(f"[{command}] has no option {unknown[0]!r} (its options: {', '.join(sorted(names))})",
                          config_path())
    settings = ", ".join(f"{k}={v!r}" for k, v in table.items())
    note(f"{shown(config_path() or Path(CONFIG_FILE))} [{command}]: {settings}")
    return config


# ---- what calibrate, generate, pretrain and finetune leave for the next command ----------------------------

def default_params_out(pairs: Path) -> Path:
    """params/<pairs folder name>.json (a CSV of pairs: its stem)."""
    return Path(PARAMS_DIR) / f"{Path(pairs).resolve().stem or 'params'}.json"


def pairs_dir_entry(pairs: Path, params_out: Path) -> str:
    """How a params file records the pairs it was fitted on: relative to the params file's folder (a project
    folder moved together with its data keeps working; no machine path is written into a repository)."""
    return os.path.relpath(Path(pairs).resolve(), Path(params_out).resolve().parent)


def calibrated_pairs(params: Path) -> tuple[Path, str]:
    """(pairs folder, layout) a params file was calibrated on."""
    from lowsim.params import ParamDistribution

    info = ParamDistribution.load(params).info or {}
    entry = info.get("pairs_dir")
    if not entry:
        raise LowsimError("this params file does not record its pairs folder; run `lowsim calibrate --pairs DIR` "
                          "first (or pass --pairs)", params)
    return (Path(params).resolve().parent / entry).resolve(), str(info.get("layout", "auto"))


def newest_params(root: Path | None = None) -> Path | None:
    """The newest params/*.json of the project folder, None when there is none."""
    folder = (Path.cwd() if root is None else root) / PARAMS_DIR
    return newest(folder.glob("*.json")) if folder.is_dir() else None


def shipped_params(name: str) -> Path:
    """A params file shipped inside the package (`lol`: model v2 calibrated on LOL's pool split with per-pair
    white-balance gains and the pixel-scale noise matched, its exposure following the scene's metered light;
    `lol-v2d` the same fits without that exposure anchor, the default before; `lol-v2c` without the pixel-scale
    match, the default before that; `lol-v2a` without the gains either; `lol-v2b` that one with the output black point;
    `lol-v1`)."""
    from importlib import resources

    path = Path(str(resources.files("lowsim").joinpath(SHIPPED_PARAMS, f"{name}.json")))
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.json"))
        raise LowsimError(f"no shipped params named {name!r} (shipped: {', '.join(known)})")
    return path


def resolve_params(params: Path | None) -> Path:
    """--params as given (a file, or the name of a shipped one: `lol`, `lol-v1`); else the newest params/*.json of
    the project folder; else the shipped LOL calibration. The default used is printed."""
    if params is not None:
        if params.is_file() or params.suffix or len(params.parts) > 1:
            return params
        return shipped_params(str(params))
    found = newest_params()
    if found is not None:
        return describe_default("--params", found, f"the newest in {PARAMS_DIR}/")
    shipped = shipped_params("lol")
    note("--params: the shipped LOL calibration (lol); `lowsim calibrate --pairs DIR` fits your own camera")
    return shipped


def default_dataset_dir(src: Path | None) -> Path:
    """data/<src folder name>, or data/synthetic for the bundled sample photos."""
    name = Path(src).resolve().name if src is not None else "synthetic"
    return Path(DATA_DIR) / (name or "synthetic")


def default_manifest(out: Path) -> Path:
    """The manifest lives beside its dataset: OUT/manifest.parquet."""
    return Path(out) / MANIFEST_NAME


def newest_manifest(root: Path | None = None) -> Path:
    """The newest data/*/manifest.parquet (or legacy manifests/*.parquet) of the project folder."""
    root = Path.cwd() if root is None else root
    found = newest([*root.glob(f"{DATA_DIR}/*/{MANIFEST_NAME}"), *root.glob(f"{LEGACY_MANIFESTS_DIR}/*.parquet")])
    if found is None:
        raise LowsimError(f"no manifest found in {DATA_DIR}/*/{MANIFEST_NAME}; run `lowsim generate --src DIR "
                          "--n N` first (or pass --manifest)")
    return found


def describe_default(option: str, value: Path, why: str) -> Path:
    """Print that `option` defaulted to `value` (and why), and return it."""
    note(f"{option} {shown(value)} ({why})")
    return value

