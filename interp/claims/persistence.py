"""Claim 6, persistence through training: the per-seed measurements of both readings.

The claim, its tests and figures are in claims/test_claim6_persistence.py.
Pure functions of (model source, seed, thresholds) returning plain values, so that the harness's
broker can run them in this process or anywhere else; the claim's tests record and decide on them.
"""

from __future__ import annotations

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
    train_from_init,
)
from mechclaims.interp.selectivity import selectivity_test
from mechclaims.interp.units import activations, embedding_only, unit_sets
from mechclaims.model.tasks import PATTERN_FAMILIES, get_task
from mechclaims.model.train import TrainSettings, config_for_task
from mechclaims.model.transformer import Transformer

TASK = "patterns"
FACTORS = ("token", "position")
CURVE_SEEDS = 3  # loss curves drawn per preset
CHANCE = 0.1  # next-token accuracy of a uniform guess over the 10 tokens


def training(cfg, seed: int, thresholds: dict) -> TrainedPair:
    """The model of (cfg, seed) and its copy trained on the task, by the registry's budget."""
    task = get_task(TASK)
    settings = TrainSettings(
        steps=thresholds["train_steps"],
        batch_size=thresholds["train_batch_size"],
        lr=thresholds["train_lr"],
        warmup=thresholds["train_warmup"],
        seed=seed,
    )
    families = {
        name: members
        for name, members in family_sequences(task.vocab_size, task.seq_len).items()
        if name in PATTERN_FAMILIES
    }
    model = Transformer(config_for_task(cfg, task), seed=seed)
    return train_from_init(model, task, settings, families)


def measure(cfg, seed: int, thresholds: dict) -> dict:
    """Both readings of one (cfg, seed), from one training: {"seed_protocol": ...,
    "controlled": ..., "structured_accuracy": mean trained accuracy over the families}."""
    pair = training(cfg, seed, thresholds)
    return {
        "seed_protocol": seed_protocol(pair, seed, thresholds),
        "controlled": controlled(pair, seed, thresholds),
        "structured_accuracy": float(np.mean(list(pair.trained_accuracy.values()))),
    }


def mlp_activations(model: Transformer, tokens: np.ndarray) -> np.ndarray:
    """Every MLP neuron of every layer: [n, T, U]."""
    sets = [unit_set for unit_set in unit_sets(model) if unit_set.label.endswith("mlp")]
    return np.concatenate(list(activations(model, tokens, sets).values()), axis=-1)


def seed_protocol(pair: TrainedPair, seed: int, thresholds: dict) -> dict:
    """The notebook's ANOVA rule before and after training, on the same random sequences."""
    tokens = random_sequences(np.random.default_rng([seed, 6, 0]), thresholds["seed_samples"],
                              pair.initial.cfg.vocab_size, get_task(TASK).n_ctx)  # fmt: skip
    result = {}
    for stage, model in (("init", pair.initial), ("trained", pair.trained)):
        measured = notebook_selectivity(mlp_activations(model, tokens), tokens,
                                        thresholds["seed_alpha"])  # fmt: skip
        result[f"{stage}_token_share"] = float(measured.token_selective.mean())
        result[f"{stage}_position_share"] = float(measured.position_selective.mean())
        result[f"{stage}_both_share"] = float(measured.both_selective.mean())
        for factor in FACTORS:
            eta2 = getattr(measured, f"{factor}_eta2")
            result[f"{stage}_{factor}_eta2_range"] = [float(eta2.min()), float(eta2.max())]
            result[f"{stage}_{factor}_eta2"] = eta2
    result["neurons"] = int(measured.token_eta2.size)
    result.update(training_summary(pair))
    return result


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


def controlled(pair: TrainedPair, seed: int, thresholds: dict) -> dict:
    """Selective sets and eta² at init (discovery design) and after training (held-out design),
    against random matching of neurons; the retest and embedding-alone comparisons."""
    vocab, length = pair.initial.cfg.vocab_size, get_task(TASK).n_ctx
    rng = np.random.default_rng([seed, 6, 1])
    discovery = balanced_sequences(rng, thresholds["n_sequences"], vocab, length)
    heldout = heldout_balanced_sequences(discovery, rng, thresholds["n_sequences"], vocab)
    init = factor_selectivity(mlp_activations(pair.initial, discovery), discovery, rng, thresholds)
    trained = factor_selectivity(mlp_activations(pair.trained, heldout), heldout, rng, thresholds)
    retest = eta2_by_factor(mlp_activations(pair.initial, heldout), heldout)  # [2,U]
    embedding_init = eta2_by_factor(embedding_only(pair.initial, discovery), discovery)  # [2,d]
    embedding_trained = eta2_by_factor(embedding_only(pair.trained, heldout), heldout)  # [2,d]
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


def factor_selectivity(acts, tokens, rng, thresholds: dict) -> dict:
    """{factor: eta² [U]} and {factor_selective: [U] bool} by claim 3's rule, per factor."""
    test = selectivity_test(acts, tokens, rng, thresholds["n_permutations"])
    selective = test.selective_by_factor(thresholds["fdr"], thresholds["min_eta2"])  # [2,U]
    eta2 = (test.token_eta2, test.position_eta2)
    return {
        **dict(zip(FACTORS, eta2, strict=True)),
        **{f"{factor}_selective": row for factor, row in zip(FACTORS, selective, strict=True)},
    }
