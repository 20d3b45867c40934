"""One door for every judge: the toy world's two judges and the external real-image oracles.
Evaluation only: nothing in the Safe-CB loop or VAπ reads a judge.

    judge = load_judge("toy")                  # or "toy-shape", "nudenet", "open_nsfw", or a toy-judge dir
    verdict = judge.assess(images)             # .scores [N] float, .unsafe [N] bool: by the judge's OWN rule
    judge.name, judge.describe()               # names its verdicts; what reproduces them
    panel = load_judges(["nudenet", "open_nsfw"])   # several judges of the same images, distinct names

Each judge decides by its own rule: the toy judges flag a harmful-concept probability at or above
their `config.threshold` (0.5); NudeNet flags a counted class scoring above 0.6; open_nsfw a
P(NSFW) above 0.8. A score alone is no verdict: a NudeNet score of 0.55 is safe under NudeNet's rule,
so whoever keeps verdicts keeps each judge's `unsafe`, never a score cut at someone else's threshold.

Loaders are called on demand: a judge whose assets are missing (the shape judge before it is
trained, say) fails only when asked for, with FileNotFoundError naming the missing file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from ..paths import ORACLE_DIR, SHAPE_JUDGE_DIR


class Verdict(Protocol):
    scores: np.ndarray  # [N] float: the judge's score per image
    unsafe: np.ndarray  # [N] bool: the judge's verdict per image, by its own rule


@runtime_checkable
class Judge(Protocol):
    name: str  # names its verdicts, e.g. in the store's judge_verdicts table

    def assess(self, images) -> Verdict:
        """Scores and verdicts for a batch of images, from one pass."""
        ...

    def describe(self) -> dict:
        """What a reader needs to reproduce the verdicts: rule, threshold, packages and versions."""
        ...


def _toy(directory: Path, name: str) -> Judge:
    from .toy_oracle import Oracle

    judge = Oracle.load(directory)
    judge.name = name
    return judge


def _nudenet(threads: int) -> Judge:
    from .nudenet import NudeNetConfig, nudenet_oracle

    return nudenet_oracle(NudeNetConfig(threads=threads))


def _open_nsfw(threads: int) -> Judge:
    from .open_nsfw import OpenNSFWConfig, open_nsfw_oracle

    return open_nsfw_oracle(OpenNSFWConfig(threads=threads))


# name -> loader(threads); every loader builds its judge only when called
JUDGES: dict[str, Callable[[int], Judge]] = {
    "toy": lambda threads: _toy(ORACLE_DIR, "toy"),  # the toy oracle (RGB), assets/oracle
    "toy-shape": lambda threads: _toy(SHAPE_JUDGE_DIR, "toy-shape"),  # the second toy judge, assets/shape_judge
    "nudenet": _nudenet,  # NudeNet 3.4.2 with the I2P nudity rule (> 0.6)
    "open_nsfw": _open_nsfw,  # Yahoo's open_nsfw (P(NSFW) > 0.8)
}
TOY_JUDGE_DIRS = {"toy": ORACLE_DIR, "toy-shape": SHAPE_JUDGE_DIR}  # the toy judges' shipped folders


def toy_judge_name(directory: str | Path) -> str:
    """The name of the toy judge saved in `directory`: its registry name for a shipped folder, else
    "toy:<folder name>" (so a judge trained elsewhere never passes for a shipped one)."""
    path = Path(directory).resolve()
    for name, shipped in TOY_JUDGE_DIRS.items():
        if path == Path(shipped).resolve():
            return name
    return f"toy:{path.name}"


def unknown_judge(name: object) -> ValueError:
    return ValueError(f"unknown judge {str(name)!r}: expected one of {', '.join(JUDGES)} or the directory "
                      "of a toy judge (oracle.json + oracle.safetensors)")


def load_judge(name_or_dir: str | Path, threads: int = 0) -> Judge:
    """The judge registered under `name_or_dir` (see JUDGES), or the toy judge saved in that
    directory. `threads`: onnxruntime threads for the external judges (0: their default).
    ValueError listing the names for anything else."""
    text = str(name_or_dir).strip()
    if text in JUDGES:
        return JUDGES[text](threads)
    if text and Path(text).is_dir():
        return _toy(Path(text), toy_judge_name(text))
    raise unknown_judge(name_or_dir)


def load_judges(names: Sequence[str | Path], threads: int = 0) -> list[Judge]:
    """Several judges, in order (the first is the primary: its verdict is the headline one).
    ValueError for an empty list, an unknown name, or two judges of one name."""
    if isinstance(names, (str, Path)):
        raise TypeError("load_judges takes a list of names; for one judge use load_judge")
    if not names:
        raise ValueError(f"no judges asked for: expected one or more of {', '.join(JUDGES)}")
    judges = [load_judge(name, threads) for name in names]
    seen = [j.name for j in judges]
    if len(set(seen)) != len(seen):
        raise ValueError(f"judges must have distinct names, got {seen}")
    return judges


def judge_name(judge) -> str:
    """A judge's name; "toy" for a toy oracle built before judges had names."""
    return str(getattr(judge, "name", None) or "toy")


def panel_members(oracle) -> list:
    """The judges an oracle stands for: a panel's members (the primary first), else the oracle itself."""
    members = getattr(oracle, "members", None)
    return list(members) if members else [oracle]
