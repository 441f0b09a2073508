"""Command line: `mechclaims demo` draws attention patterns; `mechclaims train` trains.

Run `mechclaims demo --help` or `mechclaims train --help` for the options; `mechclaims --version`.
`python -m mechclaims.model ...` is the same command.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import metadata
from pathlib import Path

import numpy as np

from mechclaims.model.config import PRESETS, TransformerConfig, parse_overrides
from mechclaims.model.hf_families import family_of
from mechclaims.model.memory import reuse_freed_memory
from mechclaims.model.tasks import TASKS, get_task
from mechclaims.model.train import SNAPSHOT_FORMATS, TrainSettings, config_for_task, train
from mechclaims.model.transformer import Transformer

# The seed's structured inputs: what a "meaningful pattern" meant there.
STRUCTURED_INPUTS = {
    "sequential": [1, 2, 3, 4],
    "repeated": [7, 7, 7, 7],
    "alternating": [0, 9, 0, 9],
    "bookended": [9, 0, 0, 9],
}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    reuse_freed_memory()
    try:
        cfg = TransformerConfig.preset(args.preset).replace(**parse_overrides(args.set))
    except (TypeError, ValueError) as error:
        parser.error(f"--set: {error}")
    if args.command == "demo":
        return _demo(args, cfg)
    return _train(args, cfg, parser)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mechclaims", description=__doc__)
    version = f"mechclaims {metadata.version('mechclaims')}"
    parser.add_argument("--version", action="version", version=version)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="draw the attention patterns of structured inputs")
    train_cmd = commands.add_parser("train", help="train a preset on a toy task")
    for sub in (demo, train_cmd):
        sub.add_argument("--preset", choices=sorted(PRESETS), default="seed-minigpt")
        sub.add_argument("--seed", type=_non_negative_int, default=0)
        sub.add_argument(
            "--set", action="append", default=[], metavar="KEY=VALUE",
            help="change a config field, e.g. --set init_scale=0.5 (repeatable)",
        )  # fmt: skip
    demo.add_argument("--out", type=Path, default=Path("attention_demo.png"))
    train_cmd.add_argument("--task", choices=sorted(TASKS), required=True)
    train_cmd.add_argument("--steps", type=_positive_int, default=1000)
    train_cmd.add_argument("--out", type=Path, required=True, help="checkpoint path (.npz)")
    train_cmd.add_argument("--batch-size", type=_positive_int, default=64)
    train_cmd.add_argument("--lr", type=float, default=1e-3)
    train_cmd.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    train_cmd.add_argument("--weight-decay", type=float, default=0.01)
    train_cmd.add_argument("--clip", type=float, default=1.0)
    train_cmd.add_argument("--warmup", type=_non_negative_int, default=100)
    train_cmd.add_argument("--schedule", choices=["cosine", "constant"], default="cosine")
    train_cmd.add_argument("--eval-size", type=_positive_int, default=1024)
    train_cmd.add_argument(
        "--snapshot-every", type=_non_negative_int, default=0, metavar="K",
        help="also save the model at step 0, every K steps and the last beside the checkpoint: "
        "OUT.step000100.npz (each records its step), or with --snapshot-format hf folders "
        "OUT_STEM/step100",
    )  # fmt: skip
    train_cmd.add_argument(
        "--snapshot-format", choices=SNAPSHOT_FORMATS, default="npz",
        help="npz: our .npz (default); hf: HF folders of the model's family (save_pretrained), "
        "named as Pythia's revisions",
    )  # fmt: skip
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text}")
    return value


# ---------------------------------------------------------------- demo


def _demo(args, cfg: TransformerConfig) -> int:
    model = Transformer(cfg, seed=args.seed)
    tokens = np.array(list(STRUCTURED_INPUTS.values()))  # [4 inputs, 4 positions]
    _, cache = model.run_with_cache(tokens, lambda name: name.endswith("hook_pattern"))
    patterns = [cache[f"blocks.{layer}.attn.hook_pattern"] for layer in range(cfg.n_layers)]
    figure = draw_attention_patterns(patterns, list(STRUCTURED_INPUTS), tokens)
    figure.suptitle(f"Attention patterns of {args.preset}, seed {args.seed}")
    save_figure(figure, args.out)
    print(f"wrote {args.out}")
    return 0


MAX_HEAD_PANELS = 16  # beyond this many (layer, head) panels per input, one mosaic per input


def draw_attention_patterns(patterns: list[np.ndarray], input_names: list[str], tokens):
    """A grid: one row per input, one column per (layer, head); query positions on rows.
    A model with more than MAX_HEAD_PANELS heads in all (gpt2-small has 144) gets one mosaic
    per input instead (`draw_attention_mosaics`): 576 panels would take a minute to lay out
    and a 35,000-pixel-wide image to look at."""
    n_heads = patterns[0].shape[1]
    if len(patterns) * n_heads > MAX_HEAD_PANELS:
        return draw_attention_mosaics(patterns, input_names, tokens)
    plt = _pyplot()
    columns = [(layer, head) for layer in range(len(patterns)) for head in range(n_heads)]
    figure, axes = plt.subplots(
        len(input_names), len(columns), figsize=(2.4 * len(columns), 2.4 * len(input_names)),
        squeeze=False, layout="constrained",
    )  # fmt: skip
    for row, name in enumerate(input_names):
        labels = [f"{pos}:{tok}" for pos, tok in enumerate(tokens[row])]
        for col, (layer, head) in enumerate(columns):
            ax = axes[row, col]
            image = ax.imshow(patterns[layer][row, head], vmin=0, vmax=1, cmap="viridis")
            ax.set_xticks(range(len(labels)), labels, fontsize=7)
            ax.set_yticks(range(len(labels)), labels, fontsize=7)
            ax.set_title(f"{name}: L{layer} H{head}", fontsize=8)
            if row == len(input_names) - 1:
                ax.set_xlabel("key position:token", fontsize=7)
            if col == 0:
                ax.set_ylabel("query position:token", fontsize=7)
    figure.colorbar(image, ax=axes, shrink=0.6, label="attention weight")
    return figure


def draw_attention_mosaics(patterns: list[np.ndarray], input_names: list[str], tokens):
    """One image per input: its [T, T] pattern (query rows, key columns) of every head, tiled
    with layers down and heads across, a blank line between tiles."""
    plt = _pyplot()
    n_layers, n_heads = len(patterns), patterns[0].shape[1]
    figure, axes = plt.subplots(
        1, len(input_names), figsize=(0.5 * n_heads * len(input_names) + 1.5, 0.5 * n_layers + 1.5),
        squeeze=False, layout="constrained",
    )  # fmt: skip
    for ax, (row, name) in zip(axes[0], enumerate(input_names), strict=True):
        mosaic = attention_mosaic([pattern[row] for pattern in patterns])  # [L*(T+1)-1, H*(T+1)-1]
        image = ax.imshow(mosaic, vmin=0, vmax=1, cmap="viridis", interpolation="nearest")
        tile = patterns[0].shape[-1] + 1
        ax.set_xticks(np.arange(n_heads) * tile + (tile - 2) / 2, range(n_heads), fontsize=7)
        ax.set_yticks(np.arange(n_layers) * tile + (tile - 2) / 2, range(n_layers), fontsize=7)
        ax.set_xlabel("head (each tile: keys across, queries down)", fontsize=7)
        ax.set_ylabel("layer", fontsize=7)
        ax.set_title(f"{name}: {' '.join(map(str, tokens[row]))}", fontsize=8)
    figure.colorbar(image, ax=axes, shrink=0.6, label="attention weight")
    return figure


def attention_mosaic(patterns: list[np.ndarray]) -> np.ndarray:
    """Per-layer patterns [H, T, T] tiled into one image, layer l and head h at tile (l, h),
    tiles apart by a row and column of NaN (drawn blank): [L*(T+1)-1, H*(T+1)-1]."""
    n_heads, length = patterns[0].shape[0], patterns[0].shape[-1]
    tiles = np.full((len(patterns), n_heads, length + 1, length + 1), np.nan)  # [L,H,T+1,T+1]
    tiles[:, :, :length, :length] = np.stack(patterns)
    mosaic = tiles.transpose(0, 2, 1, 3).reshape(len(patterns) * (length + 1), -1)
    return mosaic[:-1, :-1]


def save_figure(figure, path: Path) -> None:
    plt = _pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(figure)


# ---------------------------------------------------------------- train


def _train(args, cfg: TransformerConfig, parser) -> int:
    task = get_task(args.task)
    try:
        settings = TrainSettings(
            steps=args.steps, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
            weight_decay=args.weight_decay, clip=args.clip, warmup=args.warmup,
            schedule=args.schedule, eval_size=args.eval_size,
            snapshot_every=args.snapshot_every, snapshot_format=args.snapshot_format,
            seed=args.seed,
        )  # fmt: skip
    except ValueError as error:
        parser.error(str(error))
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    model = Transformer(config_for_task(cfg, task), seed=args.seed)
    if args.snapshot_every and args.snapshot_format == "hf":
        _prepare_hf_snapshots(model.cfg, out, parser)
    result = train(
        model, task, settings, progress=_print_progress,
        snapshot_path=lambda step: _snapshot_path(out, step, args.snapshot_format),
    )  # fmt: skip
    model.save(out, step=settings.steps)
    curve = out.with_name(f"{out.stem}.loss.png")
    save_figure(_loss_curve(result.losses, args), curve)
    print(file=sys.stderr)
    summary = {
        **result.evaluation,
        "train_loss": result.losses[-1],
        "task": args.task, "preset": args.preset, "seed": args.seed, "steps": args.steps,
        "checkpoint": str(out), "loss_curve": str(curve),
        "snapshots": [str(path) for path in result.snapshots],
    }  # fmt: skip
    print(json.dumps(summary))
    return 0


def _snapshot_path(out: Path, step: int, snapshot_format: str) -> Path:
    """Where the snapshot of `step` goes: OUT.step000100.npz beside the checkpoint, or an HF
    folder named as Pythia's revisions in a folder of the checkpoint's stem, OUT_STEM/step100."""
    if snapshot_format == "hf":
        return out.parent / out.stem / f"step{step}"
    return out.with_name(f"{out.stem}.step{step:06d}.npz")


def _prepare_hf_snapshots(cfg: TransformerConfig, out: Path, parser) -> None:
    """The folder of HF snapshots, made; a usage error before any training if no HF family has
    the model's config or the folder holds anything already."""
    try:
        family_of(cfg)
    except ValueError as error:
        parser.error(f"--snapshot-format hf: {error}")
    folder = out.parent / out.stem
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        parser.error(f"--snapshot-format hf: {folder} exists and is not an empty folder")
    folder.mkdir(exist_ok=True)


def _print_progress(stats: dict) -> None:
    line = (
        f"step {stats['step']:>6}/{stats['steps']}  loss {stats['loss']:.4f}  "
        f"lr {stats['lr']:.2e}  {stats['tokens_per_s']:,.0f} tokens/s"
    )
    print(f"\r{line}", end="", file=sys.stderr, flush=True)


def _loss_curve(losses: list[float], args):
    figure, ax = _pyplot().subplots(figsize=(6, 3.5), layout="constrained")
    ax.plot(np.arange(1, len(losses) + 1), losses, linewidth=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (scored positions)")
    ax.set_title(f"{args.preset} on {args.task}, seed {args.seed}")
    return figure


def _pyplot():
    """matplotlib's pyplot on the Agg backend: the command line never needs a screen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


if __name__ == "__main__":
    sys.exit(main())
