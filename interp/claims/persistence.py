"""Claim 6, persistence through training: the per-seed measurements of both readings.

The claim, its tests and figures are in claims/test_claim6_persistence.py.
Pure functions of (model source, seed, thresholds) returning plain values, so that the harness's
broker can run them in this process or anywhere else; the claim's tests record and decide on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mechclaims.interp.inputs import balanced_sequences, family_sequences, random_sequences
from mechclaims.interp.persistence import (
    TrainedPair,
    eta2_by_factor,
    heldout_balanced_sequences,
    notebook_selectivity,
    overlap_test,
    rank_agreement,
    rank_correlation,
    tracked_persistence,
    train_from_init,
)
from mechclaims.interp.selectivity import selectivity_test
from mechclaims.interp.sources import PANEL_SIZE, ModelSource
from mechclaims.interp.units import activations, embedding_only, unit_sets
from mechclaims.model.tasks import PATTERN_FAMILIES, get_task
from mechclaims.model.train import TrainSettings
from mechclaims.model.transformer import Transformer

TASK = "patterns"
FACTORS = ("token", "position")
CURVE_SEEDS = 3  # loss curves drawn per preset
CHANCE = 0.1  # next-token accuracy of a uniform guess over the 10 tokens
NOTEBOOK_LENGTH = 8  # the notebook measured selectivity on random sequences of length 8
CONTEXT = NOTEBOOK_LENGTH  # positions the designs need (training needs the task's 7)


def training(source: ModelSource, seed: int, thresholds: dict) -> TrainedPair:
    """The model of (source, seed) and its copy trained on the task (its tokens written as the
    source's panel), by the registry's budget."""
    task = get_task(TASK).on_tokens(source.panel)
    settings = train_settings(thresholds, seed, eval_size=thresholds["train_eval_size"])
    return train_from_init(source.model(seed), task, settings, structured_families(source, task))


def train_settings(thresholds: dict, seed: int, **more) -> TrainSettings:
    """The registry's training budget (train_steps, train_batch_size, train_lr, train_warmup),
    and `more` settings."""
    return TrainSettings(
        steps=thresholds["train_steps"],
        batch_size=thresholds["train_batch_size"],
        lr=thresholds["train_lr"],
        warmup=thresholds["train_warmup"],
        seed=seed,
        **more,
    )


def structured_families(source: ModelSource, task) -> dict[str, np.ndarray]:
    """{family: its member sequences [n, T] as the source's token ids}, the task's structured
    families (PATTERN_FAMILIES)."""
    return {
        name: source.tokens(members)
        for name, members in family_sequences(PANEL_SIZE, task.seq_len).items()
        if name in PATTERN_FAMILIES
    }


def measure(source: ModelSource, seed: int, thresholds: dict) -> dict:
    """Both readings of one (source, seed), from one training: {"seed_protocol": ...,
    "controlled": ..., "structured_accuracy": mean trained accuracy over the families}."""
    pair = training(source, seed, thresholds)
    return {
        "seed_protocol": seed_protocol(pair, source, seed, thresholds),
        "controlled": controlled(pair, source, seed, thresholds),
        "structured_accuracy": float(np.mean(list(pair.trained_accuracy.values()))),
    }


@dataclass(frozen=True)
class ModelPair:
    """A model and its initialization: what the controlled reading compares."""

    initial: Transformer
    trained: Transformer


def against_init(source: ModelSource, seed: int, thresholds: dict) -> dict:
    """The controlled reading for a given model (a checkpoint, one of its baselines, a planted
    stand-in for a trained model) against its own initialization, rebuilt from its seed
    (`source.initialization`); `seed` draws the inputs. A random init is its own
    initialization (the retest); a baseline is treated as the checkpoint is."""
    init_seed = source.initialization(seed)
    if init_seed is None:
        raise ValueError(
            "claim 6 needs the model's own initialization; this checkpoint does not record the "
            "seed its weights were drawn with (mechclaims' trainer records it)"
        )
    pair = ModelPair(Transformer(source.cfg, seed=init_seed), source.model(seed))
    return controlled(pair, source, seed, thresholds)


def mlp_activations(model: Transformer, tokens: np.ndarray) -> dict[str, np.ndarray]:
    """{layer's label: its MLP neurons [n, T, d_mlp]}, every layer."""
    sets = [unit_set for unit_set in unit_sets(model) if unit_set.label.endswith("mlp")]
    return activations(model, tokens, sets)


def seed_protocol(pair: TrainedPair, source: ModelSource, seed: int, thresholds: dict) -> dict:
    """The notebook's two measurements, as its code made them (per layer of MLP neurons, one-way
    ANOVA by token and by position, significant if p < seed_alpha / d_mlp):
    (a) `discover_features_comprehensive` at init on `seed_samples` random sequences of length
        8: the share of neurons both token- and position-selective ("all MLP neurons are");
    (b) `train_and_track`: per layer and factor, the `track_top` significant neurons of largest
        eta² at init (on `track_samples` sequences), re-measured after training on fresh ones
        (eta² if still significant, else 0), maintained if above `maintained_eta2` and above
        `maintained_ratio` of the initial eta²; persistence, the share maintained."""
    rng = np.random.default_rng([seed, 6, 0])
    discovery, before, after = (
        random_sequences(rng, thresholds[key], PANEL_SIZE, NOTEBOOK_LENGTH)
        for key in ("seed_samples", "track_samples", "track_samples")
    )
    alpha = thresholds["seed_alpha"]
    at_init = notebook_layers(pair.initial, source, discovery, alpha)
    both = np.concatenate([layer.both_selective for layer in at_init])
    result = {"init_both_share": float(both.mean()), "neurons": int(both.size)}
    for factor in FACTORS:
        eta2 = np.concatenate([getattr(layer, f"{factor}_eta2") for layer in at_init])
        result[f"init_{factor}_share"] = float(
            np.mean(np.concatenate([getattr(layer, f"{factor}_selective") for layer in at_init]))
        )
        result[f"init_{factor}_eta2_range"] = [float(eta2.min()), float(eta2.max())]
        result[f"init_{factor}_eta2"] = eta2
    initial = notebook_layers(pair.initial, source, before, alpha)
    trained = notebook_layers(pair.trained, source, after, alpha)
    rates = []
    for layer, (start, end) in enumerate(zip(initial, trained, strict=True)):
        for factor in FACTORS:
            tracked = tracked_persistence(start, end, factor, thresholds["track_top"],
                                          thresholds["maintained_eta2"],
                                          thresholds["maintained_ratio"])  # fmt: skip
            result[f"L{layer}_{factor}_persistence"] = tracked.persistence
            result[f"L{layer}_{factor}_tracked"] = tracked.units
            if tracked.persistence is not None:
                rates.append(tracked.persistence)
    result["persistence"] = float(np.mean(rates)) if rates else None
    result.update(training_summary(pair))
    return result


def notebook_layers(model, source: ModelSource, tokens: np.ndarray, alpha: float) -> list:
    """The notebook's ANOVA rule, layer by layer (its Bonferroni counts one layer's neurons)."""
    by_layer = mlp_activations(model, source.tokens(tokens))  # {label: [n,T,d_mlp]}
    return [notebook_selectivity(acts, tokens, alpha) for acts in by_layer.values()]


def training_summary(pair: TrainedPair) -> dict:
    """What training achieved: held-out loss and accuracy, accuracy per structured family."""
    summary = {
        "heldout_loss_init": pair.initial_evaluation["loss"],
        "heldout_loss_trained": pair.evaluation["loss"],
        "heldout_accuracy_trained": pair.evaluation["accuracy"],
        "train_loss_first": float(pair.losses[0]),
        "train_loss_last": float(pair.losses[-1]),
        "losses": pair.losses,
    }
    for family, accuracy in pair.trained_accuracy.items():
        summary[f"{family}_accuracy_init"] = pair.initial_accuracy[family]
        summary[f"{family}_accuracy_trained"] = accuracy
    return summary


def controlled(
    pair: TrainedPair | ModelPair, source: ModelSource, seed: int, thresholds: dict
) -> dict:
    """Selective sets and eta² at init (discovery design) and after training (held-out design),
    against random matching of neurons; the retest and embedding-alone comparisons."""
    length = get_task(TASK).n_ctx
    rng = np.random.default_rng([seed, 6, 1])
    discovery = balanced_sequences(rng, thresholds["n_sequences"], PANEL_SIZE, length)
    heldout = heldout_balanced_sequences(discovery, rng, thresholds["n_sequences"], PANEL_SIZE)
    seen_before, seen_after = source.tokens(discovery), source.tokens(heldout)
    init = factor_selectivity(all_mlp(pair.initial, seen_before), discovery, rng, thresholds)
    trained = factor_selectivity(all_mlp(pair.trained, seen_after), heldout, rng, thresholds)
    retest = eta2_by_factor(all_mlp(pair.initial, seen_after), heldout)  # [2,U]
    embedding_init = eta2_by_factor(embedding_only(pair.initial, seen_before), discovery)  # [2,d]
    embedding_trained = eta2_by_factor(embedding_only(pair.trained, seen_after), heldout)  # [2,d]
    result, holds = {"neurons": int(init["token"].size)}, []
    for i, factor in enumerate(FACTORS):
        overlap = overlap_test(init[f"{factor}_selective"], trained[f"{factor}_selective"])
        agreement = rank_agreement(init[factor], trained[factor], rng,
                                   thresholds["n_permutations"])  # fmt: skip
        embedding = rank_agreement(embedding_init[i], embedding_trained[i], rng,
                                   thresholds["n_permutations"])  # fmt: skip
        result.update({
            f"{factor}_selective_init": overlap.initial,
            f"{factor}_selective_trained": overlap.trained,
            f"{factor}_shared": overlap.shared,
            f"{factor}_persistence": overlap.persistence,
            f"{factor}_random_persistence": overlap.random_persistence,
            f"{factor}_overlap_p": overlap.p_value,
            f"{factor}_rank_correlation": agreement.correlation,
            f"{factor}_rank_null_95": agreement.null_high,
            f"{factor}_rank_p": agreement.p_value,
            f"{factor}_retest_correlation": rank_correlation(init[factor], retest[i]),
            f"{factor}_embedding_rank_correlation": embedding.correlation,
            f"{factor}_embedding_rank_p": embedding.p_value,
            f"{factor}_eta2_init": init[factor],
            f"{factor}_eta2_trained": trained[factor],
        })  # fmt: skip
        holds.append(
            overlap.p_value < thresholds["alpha"] and agreement.p_value < thresholds["alpha"]
        )
    result["holds"] = bool(all(holds))
    return result


def all_mlp(model: Transformer, tokens: np.ndarray) -> np.ndarray:
    """Every MLP neuron of every layer: [n, T, U]."""
    return np.concatenate(list(mlp_activations(model, tokens).values()), axis=-1)


def factor_selectivity(acts, tokens, rng, thresholds: dict) -> dict:
    """{factor: eta² [U]} and {factor_selective: [U] bool} by claim 3's rule, per factor."""
    test = selectivity_test(acts, tokens, rng, thresholds["n_permutations"])
    selective = test.selective_by_factor(thresholds["fdr"], thresholds["min_eta2"])  # [2,U]
    eta2 = (test.token_eta2, test.position_eta2)
    return {
        **dict(zip(FACTORS, eta2, strict=True)),
        **{f"{factor}_selective": row for factor, row in zip(FACTORS, selective, strict=True)},
    }
