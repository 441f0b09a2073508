"""Claim 6, persistence through training: the per-seed measurements of both readings.

The claim, its tests and figures are in claims/test_claim6_persistence.py.
Pure functions of (model source, seed, thresholds) returning plain values, so that the harness's
broker can run them in this process or anywhere else. The module ends with the claim's
declaration (`CLAIM`, mechclaims.interp.claims.declaration): what each reading measures, records
and decides a seed by, which its tests, the broker's plan, the checkpoint judge and the studies
read.

One training per (source, seed) serves both readings, the seed notebook's (its `train_and_track`
in `multi_seed_persistence_experiment`): Adam at a constant rate (torch's defaults: no weight
decay, no clipping, no warmup), `train_epochs` passes in order over a fixed data set of
`train_samples` sequences of length 8 drawn by its `create_training_data` (`notebook_sequences`),
in batches of `train_batch_size`, the last one partial. The model is the source's, with the
claim's own config of its preset (the registry's `config_for`: the notebook's model had no
attention mask, and it computed in float32). What training taught is measured on
`family_samples` fresh sequences of each of the notebook's families: the structured ones decide
the precondition, the random one shows a model that reads the token it is asked to predict (an
unmasked one can).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from mechclaims.interp.claims.declaration import Claim, Reading, beyond_margins
from mechclaims.interp.inputs import balanced_sequences, random_sequences
from mechclaims.interp.persistence import (
    TrainedPair,
    anova_by_factor,
    eta2_by_factor,
    heldout_balanced_sequences,
    notebook_selectivity,
    overlap_test,
    rank_agreement,
    rank_correlation,
    selective_by_factor,
    tracked_persistence,
    train_from_init,
)
from mechclaims.interp.planted import Controls
from mechclaims.interp.sources import PANEL_SIZE, ModelSource
from mechclaims.interp.units import activations, embedding_only, unit_sets
from mechclaims.interp.verdicts import evidence_beyond
from mechclaims.model.tasks import PATTERN_FAMILIES, notebook_sequences
from mechclaims.model.train import TrainSettings
from mechclaims.model.transformer import Transformer

FACTORS = ("token", "position")
CURVE_SEEDS = 3  # loss curves drawn per preset
CHANCE = 0.1  # next-token accuracy of a uniform guess over the 10 tokens
NOTEBOOK_LENGTH = 8  # the notebook's sequences, in training and in its selectivity measurements
TRAINED_POSITIONS = NOTEBOOK_LENGTH - 1  # the model reads S[:-1]: the positions training shapes
STRUCTURED = ("ascending", "repeating", "alternating")  # the families the precondition asks for
# The notebook's optimizer, optim.Adam(lr=...) with torch's defaults, and no schedule.
NOTEBOOK_OPTIMIZER = {"optimizer": "adamw", "weight_decay": 0.0, "clip": 0.0, "warmup": 0,
                      "schedule": "constant"}  # fmt: skip
# The controlled reading's comparisons (margin rule, one part per factor): the eta² rank
# correlation across neurons, init against trained, beyond the same with neurons shuffled.
BEYOND = {
    f"shuffled_{factor}": (f"{factor}_rank_correlation", f"{factor}_shuffled_rank_correlation")
    for factor in FACTORS
}


def training(source: ModelSource, seed: int, thresholds: dict) -> TrainedPair:
    """The model of (source, seed) and its copy trained as the notebook trained (module
    docstring), the data written as the source's panel."""
    data = notebook_sequences(np.random.default_rng([seed, 6, 2]), thresholds["train_samples"],
                              NOTEBOOK_LENGTH, PANEL_SIZE)  # fmt: skip
    settings = TrainSettings(batch_size=thresholds["train_batch_size"], lr=thresholds["train_lr"],
                             **NOTEBOOK_OPTIMIZER)  # fmt: skip
    families = notebook_families(source, seed, thresholds["family_samples"])
    return train_from_init(source.model(seed), source.tokens(data), thresholds["train_epochs"],
                           settings, families)  # fmt: skip


def notebook_families(source: ModelSource, seed: int, samples: int) -> dict[str, np.ndarray]:
    """{family: `samples` fresh sequences of it [samples, 8] as the source's token ids}, each of
    the notebook's families (PATTERN_FAMILIES) drawn by its rule."""
    rng = np.random.default_rng([seed, 6, 3])
    return {
        family: source.tokens(notebook_sequences(rng, samples, NOTEBOOK_LENGTH, PANEL_SIZE,
                                                 (family,)))
        for family in PATTERN_FAMILIES
    }  # fmt: skip


def measure(source: ModelSource, seed: int, thresholds: dict) -> dict:
    """Both readings of one (source, seed), from one training: {"seed_protocol": ...,
    "controlled": ..., "structured_accuracy": mean trained accuracy over the STRUCTURED
    families, "random_accuracy": the trained accuracy on random sequences}."""
    pair = training(source, seed, thresholds)
    return {
        "seed_protocol": seed_protocol(pair, source, seed, thresholds),
        "controlled": controlled(pair, source, seed, thresholds),
        "structured_accuracy": float(np.mean([pair.trained_accuracy[f] for f in STRUCTURED])),
        "random_accuracy": pair.trained_accuracy["random"],
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
    """What training achieved: the training loss, and accuracy per family before and after."""
    summary = {
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
    """Eta² of every MLP neuron by token and by position, at init on a balanced design
    (discovery) and after training on another sharing no sequence with it (held out), over the
    positions training shapes. Per factor: their rank correlation across neurons, and the same
    with the neurons shuffled (what the margin rule decides on, `controlled_evidence`);
    reported beside: the overlap of the selective sets (`selective_by_factor`) against random
    matching with its phi, the retest (the initial model on both designs) and the embedding
    alone."""
    rng = np.random.default_rng([seed, 6, 1])
    discovery = balanced_sequences(rng, thresholds["n_sequences"], PANEL_SIZE, TRAINED_POSITIONS)
    heldout = heldout_balanced_sequences(discovery, rng, thresholds["n_sequences"], PANEL_SIZE)
    seen_before, seen_after = source.tokens(discovery), source.tokens(heldout)
    init = anova_by_factor(all_mlp(pair.initial, seen_before), discovery)  # [2,U] each
    trained = anova_by_factor(all_mlp(pair.trained, seen_after), heldout)
    selective = [selective_by_factor(anova, thresholds["fdr"], thresholds["min_eta2"])
                 for anova in (init, trained)]  # fmt: skip
    retest = eta2_by_factor(all_mlp(pair.initial, seen_after), heldout)  # [2,U]
    embedding_init = eta2_by_factor(embedding_only(pair.initial, seen_before), discovery)  # [2,d]
    embedding_trained = eta2_by_factor(embedding_only(pair.trained, seen_after), heldout)  # [2,d]
    result = {"neurons": int(init.eta2.shape[1])}
    for i, factor in enumerate(FACTORS):
        overlap = overlap_test(selective[0][i], selective[1][i])
        agreement = rank_agreement(init.eta2[i], trained.eta2[i], rng,
                                   thresholds["n_permutations"])  # fmt: skip
        embedding = rank_agreement(embedding_init[i], embedding_trained[i], rng,
                                   thresholds["n_permutations"])  # fmt: skip
        result.update({
            f"{factor}_rank_correlation": agreement.correlation,
            f"{factor}_shuffled_rank_correlation": agreement.null_mean,
            f"{factor}_rank_null_95": agreement.null_high,
            f"{factor}_rank_p": agreement.p_value,
            f"{factor}_selective_init": overlap.initial,
            f"{factor}_selective_trained": overlap.trained,
            f"{factor}_shared": overlap.shared,
            f"{factor}_persistence": overlap.persistence,
            f"{factor}_random_persistence": overlap.random_persistence,
            f"{factor}_overlap_p": overlap.p_value,
            f"{factor}_overlap_phi": overlap.phi,
            f"{factor}_retest_correlation": rank_correlation(init.eta2[i], retest[i]),
            f"{factor}_embedding_rank_correlation": embedding.correlation,
            f"{factor}_embedding_rank_p": embedding.p_value,
            f"{factor}_eta2_init": init.eta2[i],
            f"{factor}_eta2_trained": trained.eta2[i],
        })  # fmt: skip
    return result


# What the controlled reading decides on across seeds: the margin rule on each factor's rank
# correlation beyond shuffled neurons, paired by seed.
controlled_evidence = functools.partial(evidence_beyond, pairs=BEYOND)


def all_mlp(model: Transformer, tokens: np.ndarray) -> np.ndarray:
    """Every MLP neuron of every layer: [n, T, U]."""
    return np.concatenate(list(mlp_activations(model, tokens).values()), axis=-1)


# Per-neuron and per-step arrays of a seed's results, kept for the figures, not recorded.
ARRAYS = ("losses", "init_token_eta2", "init_position_eta2", "token_eta2_init",
          "token_eta2_trained", "position_eta2_init", "position_eta2_trained")  # fmt: skip


def notebook_holds(result: dict, thresholds: dict) -> bool:
    """The seed protocol on one seed: (nearly) all neurons selective at init, and most tracked
    neurons' selectivity maintained through training."""
    persistence = result["persistence"]
    return bool(
        result["init_both_share"] >= thresholds["seed_min_share"]
        and persistence is not None
        and persistence >= thresholds["seed_min_persistence"]
    )


def beyond_shuffled(result: dict) -> dict[str, float]:
    """{null: rank correlation minus its shuffled null} of one seed: what the margin rule
    decides on."""
    return {name: result[network] - result[null] for name, (network, null) in BEYOND.items()}


CLAIM = Claim(
    id="persistence",
    statement="Selectivity present at initialization persists through training.",
    readings={
        "seed-protocol": Reading(
            measure,
            part="seed_protocol",
            statistic="persistence",
            threshold="seed_min_persistence",
            holds=notebook_holds,
            hidden=(*ARRAYS, "persistence"),
        ),
        "controlled": Reading(
            measure,
            part="controlled",
            on_checkpoint=against_init,
            statistic=lambda result, _: min(beyond_shuffled(result).values()),
            threshold=lambda thresholds: min(thresholds[f"margin_{name}"] for name in BEYOND),
            holds=beyond_margins(BEYOND),
            hidden=ARRAYS,
        ),
    },
    context=NOTEBOOK_LENGTH,
    beyond=BEYOND,
    controlled_evidence=controlled_evidence,
    # A model whose weights are its init's moved by a tenth of each tensor's SD keeps which
    # neurons are selective and reaches "supported"; another random init in the trained
    # model's place does not (tests/controls).
    controls=Controls(measure=against_init, positive="kept", negative="unrelated"),
    needs_initialization=True,
)
