"""A run through training: checkpoints of one run, in the order of their training steps.

`pytest claims/ --model-checkpoint A --model-checkpoint B ...` judges each checkpoint against
the random inits of its config; when the checkpoints are snapshots of one training run (Pythia's
revisions `step0`, `step1000`, ... as folders on disk, or the snapshots `mechclaims train
--snapshot-every K` writes: .npz files, or with `--snapshot-format hf` HF folders `step0`,
`step10`, ...), the report also draws each reading through training. A
checkpoint's step comes from

    its name        the file or folder name (not its parents'), by STEP_PATTERNS: `step1000`,
                    `step_1000`, `step-1000`, `run.step001000.npz`, `pythia-step1000`,
                    `checkpoint-1000` (HF Trainer's folders)
    what it records our .npz: the key STEP_KEY (`mechclaims train` writes it); an HF folder:
                    `step` in config.json, `global_step` in trainer_state.json (HF Trainer's)

and where several give one they must agree. The checkpoints are a run (`training_run`) when more
than one is given and each has a step: one config for all (a run does not change its model's
shape) and no step twice. When none has a step they are checkpoints of different models, judged
each on its own as before, in the order given; a single checkpoint is judged on its own whatever
its name. Anything between (some with a step, some without) is an error naming the paths.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import numpy as np

from mechclaims.model.config import TransformerConfig
from mechclaims.model.transformer import STEP_KEY

# On the file or folder name: `step` (then an optional _ or -) or `checkpoint-`, then the digits,
# each a word of the name (its start or end, or . _ - on both sides).
STEP_PATTERNS = (
    re.compile(r"(?:^|[._-])step[_-]?(\d+)(?=[._-]|$)"),
    re.compile(r"(?:^|[._-])checkpoint-(\d+)(?=[._-]|$)"),
)
RECORDED_STEPS = {"config.json": "step", "trainer_state.json": "global_step"}  # of an HF folder


def name_step(path: str) -> int | None:
    """The step the checkpoint's file or folder name gives (STEP_PATTERNS), or None."""
    name = Path(path).name
    found = {int(digits) for pattern in STEP_PATTERNS for digits in pattern.findall(name)}
    if len(found) > 1:
        raise ValueError(f"{path}: its name gives more than one step: {sorted(found)}")
    return found.pop() if found else None


def recorded_steps(path: str) -> dict[str, int]:
    """{where: step} of the steps the checkpoint records (the module docstring)."""
    recorded = _recorded_in_folder(Path(path)) if Path(path).is_dir() else _recorded_in_npz(path)
    for where, step in recorded.items():
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"{path}: {where} must be a non-negative integer, got {step!r}")
    return recorded


def _recorded_in_npz(path: str) -> dict[str, int]:
    with np.load(path, allow_pickle=False) as data:
        return {STEP_KEY: data[STEP_KEY].item()} if STEP_KEY in data.files else {}


def _recorded_in_folder(folder: Path) -> dict[str, int]:
    recorded = {}
    for file, key in RECORDED_STEPS.items():
        raw = _json(folder / file) if (folder / file).is_file() else {}
        if key in raw:
            recorded[f"{file} {key}"] = raw[key]
    return recorded


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON ({error})") from None


def training_step(path: str) -> int | None:
    """The checkpoint's training step: from its name and what it records, which must agree;
    None if neither gives one."""
    named = name_step(path)
    given = {**({"its name": named} if named is not None else {}), **recorded_steps(path)}
    if len(set(given.values())) > 1:
        steps = ", ".join(f"{where} {step}" for where, step in given.items())
        raise ValueError(f"{path}: its steps disagree: {steps}")
    return next(iter(given.values()), None)


def training_run(configs: dict[str, TransformerConfig]) -> dict[str, int]:
    """{path: step} of checkpoints ({path: config}) that are one run through training, in the
    order of their steps; {} for a single checkpoint or checkpoints none of which has a step
    (the module docstring). A ValueError naming the paths for anything ambiguous."""
    if len(configs) < 2:
        return {}
    steps = {path: training_step(path) for path in configs}
    without = [path for path, step in steps.items() if step is None]
    if len(without) == len(steps):
        return {}
    if without:
        raise ValueError(
            f"{len(without)} of {len(steps)} checkpoints give no training step "
            f"({', '.join(without)}): name each as step1000, run.step001000.npz or "
            "checkpoint-1000, or give none a step"
        )
    check_one_config(configs)
    ordered = sorted(steps, key=steps.get)
    for earlier, later in itertools.pairwise(ordered):
        if steps[earlier] == steps[later]:
            raise ValueError(f"two checkpoints at step {steps[later]}: {earlier}, {later}")
    return {path: steps[path] for path in ordered}


def check_one_config(configs: dict[str, TransformerConfig]) -> None:
    """A ValueError naming two checkpoints of the run whose configs differ, and the fields."""
    (first, config), *rest = configs.items()
    for path, other in rest:
        fields = [name for name, value in config.to_dict().items()
                  if other.to_dict()[name] != value]  # fmt: skip
        if fields:
            raise ValueError(
                f"the checkpoints of one run share a config; {first} and {path} differ in "
                f"{', '.join(fields)}"
            )
