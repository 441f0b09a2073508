"""Optimizers, schedules, toy tasks, the training loop and the command line."""

import itertools
import json
import math
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import logsumexp

from mechclaims.evidence.recorder import close_figure
from mechclaims.model import train as train_module
from mechclaims.model.__main__ import attention_mosaic, draw_attention_patterns
from mechclaims.model.config import TransformerConfig
from mechclaims.model.optim import SGD, AdamW, FlatParams, clip_grad_norm, learning_rate
from mechclaims.model.tasks import (
    PATTERN_FAMILIES,
    TASKS,
    get_task,
    notebook_sequences,
    pattern_sequences,
)
from mechclaims.model.train import TrainSettings, config_for_task, evaluate, train, train_epochs
from mechclaims.model.transformer import Transformer


def _params(rng):
    return {"W": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}


def _grads(rng):
    return {"W": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}


# ---------------------------------------------------------------- optimizers


def test_flat_params_keep_values_and_become_views_of_one_buffer():
    params = _params(np.random.default_rng(0))
    before = {name: value.copy() for name, value in params.items()}
    flat = FlatParams(params)
    for name in params:
        np.testing.assert_array_equal(params[name], before[name])
        assert np.shares_memory(params[name], flat.buffer)
    flat.buffer += 1.0
    np.testing.assert_array_equal(params["b"], before["b"] + 1.0)


def test_sgd_with_momentum_follows_its_recurrence():
    rng = np.random.default_rng(1)
    params = _params(rng)
    reference = {name: value.copy() for name, value in params.items()}
    velocity = {name: np.zeros_like(value) for name, value in params.items()}
    optimizer = SGD(params, lr=0.1, momentum=0.9, weight_decay=0.01)
    for _ in range(3):
        grads = _grads(rng)
        optimizer.step(grads)
        for name in reference:
            velocity[name] = 0.9 * velocity[name] + grads[name]
            decay = 0.1 * 0.01 if reference[name].ndim >= 2 else 0.0
            reference[name] = reference[name] * (1 - decay) - 0.1 * velocity[name]
    for name in params:
        np.testing.assert_allclose(params[name], reference[name], rtol=1e-12)


def test_adamw_follows_its_recurrence_and_decays_matrices_only():
    rng = np.random.default_rng(2)
    params = _params(rng)
    reference = {name: value.copy() for name, value in params.items()}
    m = {name: np.zeros_like(value) for name, value in params.items()}
    v = {name: np.zeros_like(value) for name, value in params.items()}
    optimizer = AdamW(params, lr=0.01, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1)
    for step in range(1, 5):
        grads = _grads(rng)
        optimizer.step(grads, lr=0.01 * step)
        lr = 0.01 * step
        for name in reference:
            m[name] = 0.8 * m[name] + 0.2 * grads[name]
            v[name] = 0.9 * v[name] + 0.1 * grads[name] ** 2
            m_hat, v_hat = m[name] / (1 - 0.8**step), v[name] / (1 - 0.9**step)
            if reference[name].ndim >= 2:
                reference[name] = reference[name] * (1 - lr * 0.1)
            reference[name] = reference[name] - lr * m_hat / (np.sqrt(v_hat) + 1e-6)
    for name in params:
        np.testing.assert_allclose(params[name], reference[name], rtol=1e-10)


@pytest.mark.parametrize(
    ("optimizer", "kwargs"),
    [(SGD, {"lr": -1.0}), (SGD, {"lr": 0.1, "momentum": 1.0}), (AdamW, {"lr": float("nan")}),
     (AdamW, {"lr": 0.1, "betas": (0.9, 1.0)})],
)  # fmt: skip
def test_optimizers_reject_bad_hyperparameters(optimizer, kwargs):
    with pytest.raises(ValueError, match=r"lr|momentum|betas"):
        optimizer(_params(np.random.default_rng(0)), **kwargs)


@given(scale=st.floats(0.01, 100.0), max_norm=st.floats(0.1, 10.0))
def test_clip_grad_norm_bounds_the_norm_and_keeps_the_direction(scale, max_norm):
    grads = {name: value * scale for name, value in _grads(np.random.default_rng(3)).items()}
    before = {name: value.copy() for name, value in grads.items()}
    norm = clip_grad_norm(grads, max_norm)
    expected = math.sqrt(sum(float((g**2).sum()) for g in before.values()))
    assert norm == pytest.approx(expected)
    after = math.sqrt(sum(float((g**2).sum()) for g in grads.values()))
    assert after <= max_norm * (1 + 1e-9)
    factor = min(1.0, max_norm / expected)
    for name in grads:
        np.testing.assert_allclose(grads[name], before[name] * factor, rtol=1e-6)


def test_learning_rate_warms_up_then_decays_to_a_tenth():
    assert learning_rate(0, 100, 1.0, 10, "cosine") == pytest.approx(0.1)
    assert learning_rate(9, 100, 1.0, 10, "cosine") == pytest.approx(1.0)
    assert learning_rate(10, 100, 1.0, 10, "cosine") == pytest.approx(1.0)
    assert learning_rate(100, 100, 1.0, 10, "cosine") == pytest.approx(0.1)
    rates = [learning_rate(step, 100, 1.0, 10, "cosine") for step in range(10, 101)]
    assert all(a >= b for a, b in itertools.pairwise(rates))
    assert learning_rate(50, 100, 1.0, 10, "constant") == 1.0
    with pytest.raises(ValueError, match="schedule"):
        learning_rate(50, 100, 1.0, 10, "linear")


# ---------------------------------------------------------------- tasks


@pytest.mark.parametrize("name", sorted(TASKS))
def test_task_batches_are_next_token_pairs_with_the_answer_scored(name):
    task = get_task(name)
    tokens, targets, loss_mask = task.batch(np.random.default_rng(0), 64)
    assert tokens.shape == targets.shape == loss_mask.shape == (64, task.n_ctx)
    np.testing.assert_array_equal(tokens[:, 1:], targets[:, :-1])
    assert tokens.max() < task.vocab_size
    assert loss_mask.all(axis=0).sum() == task.seq_len - task.scored_from
    assert not loss_mask[:, : task.scored_from - 1].any()


@pytest.mark.parametrize(
    ("name", "answer"),
    [
        ("copy", lambda x: x),
        ("reverse", lambda x: x[:, ::-1]),
        ("sort", lambda x: np.sort(x, axis=1)),
        ("modular-add", lambda x: (x[:, :1] + x[:, 1:2]) % 10),
    ],
)
def test_task_answers_are_right(name, answer):
    task = get_task(name)
    tokens, targets, loss_mask = task.batch(np.random.default_rng(1), 50)
    sequences = np.concatenate([tokens, targets[:, -1:]], axis=1)
    problem = sequences[:, : task.input_len]
    np.testing.assert_array_equal(targets[loss_mask].reshape(50, -1), answer(problem))


@pytest.mark.parametrize("name", sorted(TASKS))
def test_held_out_problems_never_appear_in_training_batches(name):
    task = get_task(name)
    train_tokens, train_targets, _ = task.batch(np.random.default_rng(2), 500, "train")
    test_tokens, test_targets, _ = task.batch(np.random.default_rng(2), 500, "test")
    train_seq = np.concatenate([train_tokens, train_targets[:, -1:]], axis=1)
    test_seq = np.concatenate([test_tokens, test_targets[:, -1:]], axis=1)
    assert not task.is_held_out(train_seq).any()
    assert task.is_held_out(test_seq).all()
    train_problems = {tuple(row) for row in train_seq[:, : task.input_len]}
    assert not train_problems & {tuple(row) for row in test_seq[:, : task.input_len]}


def test_task_batches_are_deterministic_and_validated():
    task = get_task("sort")
    first = task.batch(np.random.default_rng(7), 8)
    second = task.batch(np.random.default_rng(7), 8)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="split"):
        task.batch(np.random.default_rng(0), 8, "valid")
    with pytest.raises(ValueError, match="unknown task"):
        get_task("parity")


def test_pattern_sequences_follow_their_families():
    sequences = pattern_sequences(np.random.default_rng(3), 400, 9, 10)
    steps = np.diff(sequences, axis=1) % 10
    ascending = (steps == 1).all(axis=1)
    repeating = (steps == 0).all(axis=1)
    alternating = (sequences[:, 2:] == sequences[:, :-2]).all(axis=1) & (steps[:, 0] != 0)
    structured = ascending | repeating | alternating
    assert len(PATTERN_FAMILIES) == 4
    # about three in four sequences are structured; random ones almost never look structured
    assert 0.65 < structured.mean() < 0.85


def _periods(sequences: np.ndarray) -> list[set[int]]:
    """Per sequence, the periods p in 1..4 with S[p:] == S[:-p]."""
    return [{p for p in range(1, 5) if (row[p:] == row[:-p]).all()} for row in sequences]


def test_notebook_sequences_follow_the_notebooks_families():
    """Its create_training_data: ascending, repeating (a pattern of 2-4 tokens), alternating
    (a != b), random, equally often; one family alone when asked."""
    rng = np.random.default_rng(4)
    by_family = {name: notebook_sequences(rng, 3000, 8, 10, (name,)) for name in PATTERN_FAMILIES}
    assert ((np.diff(by_family["ascending"], axis=1) % 10) == 1).all()
    alternating = by_family["alternating"]
    assert (alternating[:, 0] != alternating[:, 1]).all()
    assert all(2 in periods and 1 not in periods for periods in _periods(alternating))
    repeating = _periods(by_family["repeating"])
    assert all(periods & {2, 3, 4} for periods in repeating)
    shortest = np.array([min(periods & {2, 3, 4}) for periods in repeating])
    # periods 2, 3, 4 drawn equally: a pattern of 4 (or 3) can repeat a shorter one by chance
    assert 0.3 < np.mean(shortest == 2) < 0.4
    assert 0.28 < np.mean(shortest == 3) < 0.38
    assert np.mean([1 in periods for periods in repeating]) < 0.05  # a constant is rare
    random = by_family["random"]
    np.testing.assert_allclose(np.bincount(random.ravel(), minlength=10) / random.size, 0.1,
                               atol=0.01)  # fmt: skip
    mixed = notebook_sequences(rng, 4000)
    ascending = ((np.diff(mixed, axis=1) % 10) == 1).all(axis=1)
    assert mixed.shape == (4000, 8)
    assert 0.22 < ascending.mean() < 0.28
    with pytest.raises(ValueError, match="families"):
        notebook_sequences(rng, 5, families=("descending",))


# ---------------------------------------------------------------- training


def test_config_for_task_grows_the_model_to_the_task():
    cfg = TransformerConfig.preset("tiny-mha")
    grown = config_for_task(cfg, get_task("copy"))
    assert grown.n_ctx == 11
    assert grown.vocab_size == 10
    assert config_for_task(TransformerConfig.preset("seed-minigpt"), get_task("copy")).n_ctx == 512


def _small_run(seed: int, steps: int = 60, **changes):
    task = get_task("copy")
    model = Transformer(config_for_task(TransformerConfig.preset("tiny-mha"), task), seed=seed)
    settings = TrainSettings(steps=steps, batch_size=32, lr=3e-3, warmup=5, eval_size=256,
                             seed=seed, **changes)  # fmt: skip
    return task, model, settings


def test_training_lowers_the_loss_and_is_deterministic():
    task, model, settings = _small_run(0)
    before = evaluate(model, task, 256, 0)["loss"]
    result = train(model, task, settings)
    assert result.evaluation["loss"] < before - 0.1
    assert np.mean(result.losses[-10:]) < np.mean(result.losses[:10])
    again = train(_small_run(0)[1], task, settings)
    assert again.losses == result.losses


def test_evaluation_in_chunks_equals_one_pass_over_every_problem(monkeypatch):
    """Chunks of 3 problems (a small EVAL_LOGITS) give the numbers of one pass over all 50,
    computed here independently: the chunks cover every problem once, each with its targets."""
    task, model, _ = _small_run(3)
    tokens, targets, loss_mask = task.batch(np.random.default_rng([7, 2]), 50, "test")
    logits = model(tokens)  # [50,T,V]
    log_probs = logits - logsumexp(logits, axis=-1, keepdims=True)
    chosen = np.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]  # [50,T]
    expected_loss = -chosen[loss_mask].mean()
    expected_accuracy = (logits.argmax(axis=-1) == targets)[loss_mask].mean()
    monkeypatch.setattr(train_module, "EVAL_LOGITS", 3 * tokens.shape[1] * model.cfg.vocab_size)
    batches = []  # problems per forward pass: the chunks hold at most EVAL_LOGITS logits
    forward = Transformer.__call__
    monkeypatch.setattr(Transformer, "__call__",
                        lambda self, x: batches.append(len(x)) or forward(self, x))  # fmt: skip
    chunked = evaluate(model, task, 50, 7)
    assert chunked["loss"] == pytest.approx(expected_loss, rel=1e-12)
    assert chunked["accuracy"] == expected_accuracy
    assert batches == [3] * 16 + [2]


def _adam_reference(model: Transformer, sequences, epochs: int, batch: int, lr: float) -> dict:
    """The notebook's training written out: torch's Adam (betas 0.9, 0.999, eps 1e-8, no weight
    decay, no clipping, a constant rate), batches in order, the last one partial."""
    params = {name: value.copy() for name, value in model.params.items()}
    twin = Transformer.from_params(model.cfg, params)
    moments = {name: (np.zeros_like(value), np.zeros_like(value)) for name, value in params.items()}
    step = 0
    for _ in range(epochs):
        for start in range(0, len(sequences), batch):
            chunk = sequences[start : start + batch]
            _, grads = twin.loss_and_grads(chunk[:, :-1], chunk[:, 1:])
            step += 1
            for name, grad in grads.items():
                first, second = moments[name]
                first[...] = 0.9 * first + 0.1 * grad
                second[...] = 0.999 * second + 0.001 * grad**2
                corrected = np.sqrt(second / (1 - 0.999**step)) + 1e-8
                twin.params[name] -= lr / (1 - 0.9**step) * first / corrected
    return twin.params


def test_training_by_epochs_passes_over_the_data_in_order_as_the_notebook_did(monkeypatch):
    """Every pass sees the sequences in order, in batches of 4 (the last one partial), S[:-1]
    predicting S[1:] everywhere; Adam as the notebook's: the same weights as Adam written out."""
    cfg = TransformerConfig.preset("tiny-mha")
    sequences = notebook_sequences(np.random.default_rng(5), 10)  # [10,8]
    expected = _adam_reference(Transformer(cfg, seed=1), sequences, 2, 4, 0.01)
    seen = []
    loss_and_grads = Transformer.loss_and_grads
    monkeypatch.setattr(Transformer, "loss_and_grads",
                        lambda self, x, y, mask=None: seen.append((x, y, mask))
                        or loss_and_grads(self, x, y, mask))  # fmt: skip
    model = Transformer(cfg, seed=1)
    settings = TrainSettings(batch_size=4, lr=0.01, weight_decay=0.0, clip=0.0, warmup=0,
                             schedule="constant")  # fmt: skip
    result = train_epochs(model, sequences, 2, settings)
    assert [len(tokens) for tokens, _, _ in seen] == [4, 4, 2] * 2
    for epoch in range(2):
        part = seen[3 * epoch : 3 * epoch + 3]
        np.testing.assert_array_equal(np.concatenate([x for x, _, _ in part]), sequences[:, :-1])
        np.testing.assert_array_equal(np.concatenate([y for _, y, _ in part]), sequences[:, 1:])
        assert all(mask is None for _, _, mask in part)
    assert len(result.losses) == 6
    assert result.evaluation == {}
    for name, value in expected.items():
        np.testing.assert_allclose(model.params[name], value, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="epochs"):
        train_epochs(model, sequences, 0, settings)


def test_training_with_sgd_also_learns():
    task, model, settings = _small_run(1, optimizer="sgd", steps=80)
    result = train(model, task, settings)
    assert np.mean(result.losses[-10:]) < np.mean(result.losses[:10])


def test_snapshots_are_saved_at_step_zero_every_k_steps_and_at_the_end(tmp_path):
    task, model, settings = _small_run(2, steps=25, snapshot_every=10)
    initial = {name: value.copy() for name, value in model.params.items()}
    result = train(model, task, settings, snapshot_path=lambda step: tmp_path / f"{step}.npz")
    assert [path.name for path in result.snapshots] == ["0.npz", "10.npz", "20.npz", "25.npz"]
    first = Transformer.load(result.snapshots[0])
    for name, value in initial.items():
        np.testing.assert_array_equal(first.params[name], value)
    last = Transformer.load(result.snapshots[-1])
    for name, value in model.params.items():
        np.testing.assert_array_equal(last.params[name], value)


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"steps": 0}, "steps"), ({"optimizer": "lbfgs"}, "optimizer"), ({"warmup": -1}, "warmup")],
)
def test_train_settings_reject_bad_values(changes, field):
    with pytest.raises(ValueError, match=field):
        TrainSettings(**changes)


# ---------------------------------------------------------------- command line


# The console script the package installs beside this interpreter, and the module form.
CONSOLE_SCRIPT = [str(Path(sys.executable).with_name("mechclaims"))]
MODULE = [sys.executable, "-m", "mechclaims.model"]


def _run_cli(*args, cwd, command=CONSOLE_SCRIPT):
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, cwd=cwd, check=False, timeout=300
    )


@pytest.mark.parametrize("command", [CONSOLE_SCRIPT, MODULE], ids=["mechclaims", "python-m"])
def test_cli_version_names_the_installed_package(tmp_path, command):
    done = _run_cli("--version", cwd=tmp_path, command=command)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"mechclaims {metadata.version('mechclaims')}"


def test_cli_train_writes_checkpoint_curve_and_a_json_summary(tmp_path):
    out = tmp_path / "run" / "ckpt.npz"
    done = _run_cli("train", "--preset", "tiny-mha", "--task", "copy", "--steps", "30",
                    "--seed", "3", "--out", str(out), "--snapshot-every", "15",
                    "--set", "d_mlp=32", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"loss", "accuracy", "train_loss"} <= set(summary)
    assert 0.0 <= summary["accuracy"] <= 1.0
    assert "tokens/s" in done.stderr
    assert (tmp_path / "run" / "ckpt.loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = Transformer.load(out)
    assert model.cfg.d_mlp == 32
    assert len(summary["snapshots"]) == 3


def test_cli_train_is_deterministic(tmp_path):
    runs = [
        _run_cli(
            "train",
            "--preset",
            "tiny-mha",
            "--task",
            "sort",
            "--steps",
            "10",
            "--seed",
            "4",
            "--out",
            str(tmp_path / f"{k}.npz"),
            cwd=tmp_path,
        )
        for k in range(2)
    ]
    summaries = [json.loads(run.stdout.strip().splitlines()[-1]) for run in runs]
    assert summaries[0]["loss"] == summaries[1]["loss"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--task", "copy", "--out", "x.npz", "--set", "n_head=2"], "n_heads"),
        (["train", "--task", "copy", "--out", "x.npz", "--set", "n_heads=3"], "n_heads"),
        (["train", "--task", "nope", "--out", "x.npz"], "invalid choice"),
        (["train", "--task", "copy", "--out", "x.npz", "--steps", "0"], "positive"),
        (["demo", "--preset", "gpt5"], "invalid choice"),
    ],
)
def test_cli_rejects_bad_arguments_with_a_usage_error(tmp_path, args, message):
    done = _run_cli(*args, cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr


@pytest.mark.parametrize("command", [CONSOLE_SCRIPT, MODULE], ids=["mechclaims", "python-m"])
def test_cli_demo_draws_the_attention_patterns(tmp_path, command):
    done = _run_cli("demo", "--preset", "tiny-mha", "--out", "demo.png", cwd=tmp_path,
                    command=command)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "demo.png" in done.stdout
    assert (tmp_path / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_attention_mosaic_puts_each_head_at_its_tile_with_blank_lines_between():
    rng = np.random.default_rng(0)
    patterns = [rng.random((3, 4, 4)) for _ in range(2)]  # 2 layers of [H=3, T=4, T=4]
    mosaic = attention_mosaic(patterns)
    assert mosaic.shape == (2 * 5 - 1, 3 * 5 - 1)
    for layer, head in itertools.product(range(2), range(3)):
        tile = mosaic[layer * 5 : layer * 5 + 4, head * 5 : head * 5 + 4]
        np.testing.assert_array_equal(tile, patterns[layer][head])
    assert np.isnan(mosaic[4]).all()
    assert np.isnan(mosaic[:, [4, 9]]).all()
    assert np.isfinite(mosaic).sum() == 2 * 3 * 16


def test_many_heads_draw_one_mosaic_per_input():
    """gpt2-small's 144 heads: an image per input (not 576 panels), each the input's mosaic."""
    rng = np.random.default_rng(1)
    patterns = [rng.random((2, 12, 4, 4)) for _ in range(12)]  # 12 layers of [inputs, H, T, T]
    tokens = np.array([[0, 1, 2, 3], [4, 5, 6, 7]])
    figure = draw_attention_patterns(patterns, ["a", "b"], tokens)
    images = [ax.get_images() for ax in figure.axes if ax.get_images()]
    assert len(images) == 2
    np.testing.assert_array_equal(
        images[1][0].get_array().filled(np.nan), attention_mosaic([p[1] for p in patterns])
    )
    assert images[0][0].get_array().shape == (59, 59)
    close_figure(figure)
