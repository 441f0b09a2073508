"""Claim 5: random features respond consistently to meaningful patterns.

The seed's README: "random features respond consistently to meaningful patterns". Its code
printed dimension 0 of the residual stream after block 0, at the last position, for four
hand-made inputs: [1,2,3,4], [4,3,2,1], [7,7,7,7], [0,9,0,9]. It had no baseline.

Seed protocol, made measurable: the four responses as z-scores against dimension 0's responses
to random sequences. The claim holds on a seed if one of them is unusual (max |z| > 2); four
random sequences would do that about 17% of the time, which is recorded beside it.

Controlled: "consistently" and "meaningful" as something measurable, for every unit set at the
last position. The seed's families (ascending, descending, repeating, alternating; every member)
are unions of difference patterns, relations (x1 - x0, x2 - x1, x3 - x2) mod 10 whose 10 members
never share a token at a position; 24 other patterns drawn at random are the "random sequences"
they are held against. Responses are taken beyond the tokens one by one (minus the best fit that
adds up one effect per position and token, without labels): what depends on how the tokens
relate. (a) Responses within a family agree (mean pairwise cosine of centered responses) more
than within random relations; (b) a nearest-centroid decoder trained on half of each pattern's
members recovers the family of the other half better than chance. The null of both shuffles the
family labels among whole patterns, the families' and the random ones: single sequences are not
exchangeable (a network that just adds up per-position token effects makes members of one
pattern agree LESS than random sequences, since they never share a token), whole patterns are.
The tests hold on a seed if both are discoveries in at least half the unit sets: "consistently".

"Meaningful": that null cannot tell the seed's relations from their layout, which positions hold
the same token (ascending and descending: all distinct; repeating AAAA; alternating ABAB), and
the layout alone sets the families apart from most random relations. So the same decoder also
runs, on the same network and seed, on layout-matched stand-ins drawn per seed: a random
all-distinct relation for each of ascending and descending, every relation of AABB or of ABBA
for alternating; repeating, the only relation of its layout, stays in both designs (the same
inputs and split: it enters the paired difference only through what it is confused with). The
two designs share the random relations, their splits and one forward pass. Decided by the
margin rule across seeds on the decoder's held-out accuracy (median over unit sets) on the
seed's families minus on the stand-ins, AND the tests above. The recall of each family in both
designs shows what is encoded. The embedding alone at the last position sees only the last
token, which the additive fit removes whole: its accuracy is 0.25, chance, by construction; it
is reported beside, with i.i.d. Gaussian features, not deciding. Both statistics are
rotation-invariant; a random rotation enters the per-unit reading (share of units whose
response differs by family), reported beside the decision.

Also: the attention patterns of the seed's structured inputs, per preset (figure and row
entropies).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from claim_plots import (
    FAMILY_COLOURS,
    THRESHOLD_COLOUR,
    across_seeds,
    beyond_nulls_figure,
    new_figure,
    source_legend,
    source_style,
    sources_across_seeds,
    threshold_line,
)
from mechclaims.interp.claims.structured_inputs import (
    CLAIM,
    NULL_SOURCES,
    SEED_DIM,
    UNIT_SOURCES,
    controlled_evidence,
    structured_tokens,
)
from mechclaims.interp.inputs import SEED_STRUCTURED, family_sequences, token_layouts
from mechclaims.interp.sources import PANEL_SIZE
from mechclaims.interp.stats import (
    summarize_across_seeds,
)
from mechclaims.interp.units import SEED_SEQ_LEN, SEED_UNITS
from mechclaims.model.__main__ import draw_attention_patterns

ATTENTION_STATEMENT = "The attention patterns of the seed's structured inputs, per preset."


@pytest.mark.claim(f"{CLAIM.id}/seed-protocol", statement=CLAIM.statement)
def test_seed_protocol(read_seed):
    seed_result = read_seed()
    assert seed_result["inputs"] == list(SEED_STRUCTURED)
    assert seed_result["responses"].shape == (len(SEED_STRUCTURED),)
    assert np.all(np.isfinite(seed_result["responses"]))
    assert 0.0 <= seed_result["chance_empirical"] <= 1.0


@pytest.mark.claim(f"{CLAIM.id}/controlled", statement=CLAIM.statement)
def test_controlled(read_seed):
    controlled_result = read_seed()
    sets = controlled_result["unit_sets"]
    accuracies = [controlled_result[f"{s}_{design}decoder_accuracy"]
                  for s in [*sets, *NULL_SOURCES] for design in ("", "layout_")]  # fmt: skip
    assert all(0.0 <= accuracy <= 1.0 for accuracy in accuracies)
    assert all(0.0 < controlled_result[f"{s}_agreement_p"] <= 1.0 for s in sets)


@pytest.mark.claim(f"{CLAIM.id}/seed-protocol", statement=CLAIM.statement, decides=True)
def test_seed_protocol_across_seeds(evidence, judge, read_seeds, seeds, thresholds):
    results = read_seeds()
    max_abs_z = np.array([result["max_abs_z"] for result in results])
    evidence.figure("the four structured inputs as z-scores among random sequences",
                    _seed_protocol_figure, max_abs_z, results[0], seeds, thresholds)  # fmt: skip
    holds = CLAIM.readings["seed-protocol"].seeds_hold(results, thresholds)
    evidence.record(chance_rate=results[0]["chance_normal"], observed_rate=float(holds.mean()))
    judge(CLAIM.id, "seed-protocol", holds)


def _seed_protocol_figure(max_abs_z, first: dict, seeds, thresholds: dict):
    """The first seed's responses, and the largest |z| per seed against the seed's cut-off."""
    figure, (ax_first, ax_seeds) = new_figure(2)
    _draw_seed_responses(ax_first, first, seeds[0], thresholds["seed_z"])
    across_seeds(ax_seeds, max_abs_z, seeds, thresholds["seed_z"],
                 "max |z| of the 4 structured inputs")  # fmt: skip
    ax_seeds.set_title(f"|z| > {thresholds['seed_z']:g} by chance for 4 random inputs: "
                       f"{first['chance_normal']:.2f}", fontsize=9)  # fmt: skip
    return figure


def _draw_seed_responses(ax, result: dict, seed: int, cut: float) -> None:
    """Dim 0's responses to random sequences (histogram) and to the four structured inputs."""
    ax.hist(result["reference_responses"], bins=30, color="#bbbbbb", label="random sequences")
    mean, std = result["reference_mean"], result["reference_std"]
    for sign in (-1, 1):
        ax.axvline(mean + sign * cut * std, color=THRESHOLD_COLOUR, linestyle="--", linewidth=1,
                   label=f"mean ± {cut:g} std" if sign < 0 else None)  # fmt: skip
    for index, (tokens, value, z) in enumerate(
        zip(SEED_STRUCTURED.values(), result["responses"], result["z_scores"], strict=True)
    ):
        ax.axvline(value, color=FAMILY_COLOURS[index], linewidth=2,
                   label=f"{list(tokens)}: z = {z:+.2f}")  # fmt: skip
    ax.set_xlabel(f"dim {SEED_DIM} of {SEED_UNITS.hook}, last position (seed {seed})")
    ax.set_ylabel("random sequences (count)")
    ax.legend(fontsize=6, loc="best")


@pytest.mark.claim(f"{CLAIM.id}/controlled", statement=CLAIM.statement, decides=True)
def test_controlled_across_seeds(evidence, judge, read_seeds, thresholds):
    results = read_seeds()
    sets = results[0]["unit_sets"]
    evidence.figure("decoder, agreement and family-selective units against nulls",
                    _controlled_figure, results, sets)  # fmt: skip
    evidence.figure("agreement within families", _agreement_figure, results, sets)
    evidence.figure("the seed's families against their layout-matched stand-ins",
                    _layout_figure, results)  # fmt: skip
    deciding = controlled_evidence(results)
    evidence.figure("beyond the layout (margin rule)", beyond_nulls_figure, deciding, thresholds,
                    {"layout": "held-out accuracy"})  # fmt: skip
    judge(CLAIM.id, "controlled", **deciding)


def _controlled_figure(results: list[dict], sets: list[str]):
    """The decoder's accuracy, the agreement within families and the family-selective units,
    each unit set against the nulls."""
    labels = {f"network {s}" if s in sets else s: s for s in [*sets, *NULL_SOURCES]}
    figure, (ax_decoder, ax_agreement, ax_units) = new_figure(3)
    sources_across_seeds(
        ax_decoder,
        {label: [r[f"{s}_decoder_accuracy"] for r in results] for label, s in labels.items()},
        "held-out balanced accuracy of the family (share)",
    )
    threshold_line(ax_decoder, results[0]["chance"], "chance")
    null_medians = [
        np.median([r[f"{s}_decoder_null_median"] for r in results]) for s in labels.values()
    ]
    shuffled = {**source_style("shuffled"), "label": "shuffled (patterns relabelled)"}
    ax_decoder.scatter(np.arange(len(labels)), null_medians, s=30, zorder=4, **shuffled)
    source_legend(ax_decoder, labels)
    sources_across_seeds(
        ax_agreement,
        {
            label: [r[f"{s}_agreement"] - r[f"{s}_agreement_null_mean"] for r in results]
            for label, s in labels.items()
        },
        "family agreement − random relations' (cosine)",
    )
    ax_agreement.axhline(0.0, color="black", linewidth=0.8)
    sources_across_seeds(
        ax_units,
        {name: [r[f"{name}_family_median_eta2"] for r in results] for name in UNIT_SOURCES},
        "median eta² of a unit by family (share of variance)",
    )
    return figure


def _layout_name(tokens) -> str:
    """A sequence's layout in letters: which positions hold the same token ([0,1,0,1]: ABAB)."""
    layout = token_layouts(np.asarray([tokens]))[0]
    letters = {first: "ABCDEFGHIJ"[rank] for rank, first in enumerate(np.unique(layout))}
    return "".join(letters[first] for first in layout)


def _layout_figure(results: list[dict]):
    """Per family, the network's held-out recall (median over unit sets) of the seed's family
    and of its layout-matched stand-in (median, 95% range over seeds), and each seed's balanced
    accuracy on both designs, paired."""
    families = results[0]["families"]
    figure, (ax_recall, ax_paired) = new_figure(2, width=5.5)
    positions = np.arange(len(families))
    for offset, key, hatch in ((-0.2, "", None), (0.2, "layout_", "///")):
        recall = summarize_across_seeds(
            np.array([r[f"network_{key}decoder_recall_by_family"] for r in results])
        )
        ax_recall.bar(positions + offset, recall.median, width=0.4, color=FAMILY_COLOURS,
                      hatch=hatch, edgecolor="black", linewidth=0.5)  # fmt: skip
        ax_recall.errorbar(positions + offset, recall.median,
                           yerr=[recall.median - recall.low, recall.high - recall.median],
                           fmt="none", color="black", linewidth=0.8)  # fmt: skip
    seed_layouts = [_layout_name(m[0]) for m in family_sequences(PANEL_SIZE, SEED_SEQ_LEN).values()]
    stand_ins = [
        ", ".join(sorted({_layout_name(r["layout_stand_ins"][f].split()) for r in results}))
        for f in range(len(families))
    ]
    ax_recall.set_xticks(positions, [f"{family} {seed}\nvs {matched} (hatched)" for family, seed,
                                     matched in zip(families, seed_layouts, stand_ins,
                                                    strict=True)], fontsize=7)  # fmt: skip
    threshold_line(ax_recall, results[0]["chance"], "chance")
    ax_recall.set_ylabel("held-out recall (network)")
    ax_recall.set_title("Each family and its stand-in of the same layout", fontsize=9)
    ax_recall.legend(fontsize=7)
    ax_recall.grid(axis="y", alpha=0.3)
    for name in ("network", "embedding"):
        pairs = np.array([[r[f"{name}_decoder_accuracy"], r[f"{name}_layout_decoder_accuracy"]]
                          for r in results])  # fmt: skip  # [seeds, 2]
        style = {**source_style(name), "label": None}
        ax_paired.plot([0, 1], pairs.T, color=style["color"], alpha=0.5, linewidth=0.8)
        ax_paired.scatter(np.repeat([[0, 1]], len(pairs), axis=0), pairs, s=12, zorder=3, **style)
    threshold_line(ax_paired, results[0]["chance"], "chance")
    ax_paired.set_xticks([0, 1], ["the seed's families", "layout-matched stand-ins"])
    ax_paired.set_xlim(-0.4, 1.4)
    ax_paired.set_ylabel("held-out balanced accuracy")
    ax_paired.set_title("Median over unit sets, paired by seed (the same network)", fontsize=9)
    source_legend(ax_paired, ["network", "embedding"])
    ax_paired.grid(axis="y", alpha=0.3)
    return figure


def _agreement_figure(results: list[dict], sets: list[str]):
    """Mean pairwise cosine within each family, and the same with random relations in the
    family's place (its null mean), per unit set and null: medians and 95% ranges over seeds."""
    names = [*sets, *NULL_SOURCES]
    families = results[0]["families"]
    figure, (ax,) = new_figure(1, width=9.0)
    positions = np.arange(len(names))
    width = 0.8 / len(families)
    for index, family in enumerate(families):
        x = positions + (index - (len(families) - 1) / 2) * width
        observed, null = (
            summarize_across_seeds(
                np.array(
                    [[r[f"{n}_agreement_by_family{kind}"][index] for n in names] for r in results]
                )
            )
            for kind in ("", "_null_mean")
        )
        ax.bar(x, observed.median, width=width, color=FAMILY_COLOURS[index], label=family)
        ax.errorbar(x, observed.median,
                    yerr=[observed.median - observed.low, observed.high - observed.median],
                    fmt="none", color="black", linewidth=0.8)  # fmt: skip
        null_label = "random relations in its place (null mean)" if index == 0 else None
        ax.scatter(x, null.median, marker="_", s=160, color="black", zorder=3, label=null_label)
    ax.set_xticks(positions, [name.replace("_", " ") for name in names], fontsize=8)
    ax.set_ylabel("mean pairwise cosine within a family")
    ax.set_title("Agreement within the seed's families vs random relations (median, 95% range "
                 "over seeds)", fontsize=9)  # fmt: skip
    ax.axhline(0.0, color="black", linewidth=0.5)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    return figure


@pytest.mark.claim(f"{CLAIM.id}/attention", statement=ATTENTION_STATEMENT)
def test_attention_patterns(evidence, model_source, preset, seeds):
    model = model_source.model(seeds[0])
    tokens = structured_tokens()
    patterns_only = lambda name: name.endswith("hook_pattern")  # noqa: E731
    _, cache = model.run_with_cache(model_source.tokens(tokens), names_filter=patterns_only)
    patterns = [cache[f"blocks.{layer}.attn.hook_pattern"] for layer in range(model.cfg.n_layers)]
    evidence.figure("attention patterns", _attention_figure, patterns, tokens, preset, seeds[0])
    entropies = [scipy.stats.entropy(pattern, axis=-1) for pattern in patterns]  # [in, H, q]
    causal = model.cfg.causal
    length = SEED_SEQ_LEN
    keys_seen = np.arange(1, length + 1) if causal else np.full(length, length)  # [q]
    evidence.record(
        model_seed=seeds[0],
        inputs=list(SEED_STRUCTURED),
        **{f"entropy_L{layer}": entropy for layer, entropy in enumerate(entropies)},
        uniform_entropy=np.log(keys_seen),  # [q] the most a row can have
    )
    for pattern in patterns:  # [inputs, heads, q, k]
        rounding = 16 * np.finfo(pattern.dtype).eps  # a sum of <= 16 probabilities: float32 too
        np.testing.assert_allclose(pattern.sum(axis=-1), 1.0, rtol=0, atol=rounding)
        if causal:
            above_diagonal = np.triu(np.ones((SEED_SEQ_LEN, SEED_SEQ_LEN), dtype=bool), k=1)
            assert np.all(pattern[..., above_diagonal] == 0.0)


def _attention_figure(patterns: list, tokens, preset: str, seed: int):
    """The attention patterns of the seed's structured inputs, a panel per layer and head."""
    figure = draw_attention_patterns(patterns, list(SEED_STRUCTURED), tokens)
    figure.suptitle(f"Attention patterns of the structured inputs: {preset}, seed {seed}")
    return figure
