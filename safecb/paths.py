"""Where the shipped assets live."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
TOY_MODEL_DIR = ASSETS / "toy-janus"  # the embedded default model, Hugging Face layout
ORACLE_DIR = ASSETS / "oracle"  # the independent concept detector (evaluation only)
SHAPE_JUDGE_DIR = ASSETS / "shape_judge"  # the second toy judge: shape-only input (evaluation only)
CONFIGS_DIR = ROOT / "configs"  # named Safe-CB config presets (SafeCBConfig.preset)
