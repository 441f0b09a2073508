"""The architecture sweep: which architectural choice, if any, creates structure beyond each
claim's null?

The seed's future direction: "test different architectures for interpretability bias" (the
three presets were chosen by hand). A factorial design over the registry's factors (norm,
activation, attention, init, causal mask, width): every combination an architecture, each
measured on several seeds with the controlled statistics of claims 1, 3 and 4, of the network
and of the null each claim's controlled reading is decided against, on the same inputs
(mechclaims.interp.claims.sweep). The statistic explained is the paired difference
network - null. Main effects by least squares on factor indicators, fitted per seed, with
t-intervals across seeds at a family-wise level over every term of every statistic
(Bonferroni); a factor's term raises it (interval above the claim's margin), lowers it (below
minus the margin), is negligible (inside ± the margin) or unresolved; and the interaction of
the two largest factors, in the same family. Per architecture, whether it is beyond its null by
the margin, Benjamini-Hochberg across the architectures.

Each architecture is a test parameter: one whose measurement fails fails its own tests, and
the effects are fitted on the others (named). Opt-in: `pytest claims -m sweep`.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from claim_plots import SOURCES, new_figure, threshold_line
from mechclaims.fixtures.plugin import OPTIONS_KEY, REGISTRY_KEY, run_seeds
from mechclaims.fixtures.registry import claim_thresholds
from mechclaims.interp.claims.catalog import STUDIED
from mechclaims.interp.claims.measured import (
    NULL_NAMES,
    compared,
    studied_margin,
    studied_null,
)
from mechclaims.interp.claims.sweep import (
    STATISTICS,
    beyond_null_by_margin,
    cells,
    factor_terms,
    family_size,
    interaction,
    largest_factors,
    main_effects,
    measure,
    paired_values,
    term_confidence,
)
from mechclaims.interp.claims.sweep import architecture as architecture_config
from mechclaims.interp.sources import source_for
from mechclaims.model.config import TransformerConfig

CLAIM = "sweep"
READING = "sweep"
STATEMENT = "Some architectural choice creates structure beyond the claims' nulls."
pytestmark = pytest.mark.sweep


def sweep_factors(config: pytest.Config) -> dict:
    """The registry's factors of the sweep ({} without a registry or a sweep)."""
    registry = config.stash[REGISTRY_KEY] or {"claims": {}}
    return registry["claims"].get(CLAIM, {}).get("factors", {})


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The architectures (every combination of the factors' levels) and the factors' terms."""
    factors = sweep_factors(metafunc.config)
    if "architecture" in metafunc.fixturenames:
        ids = list(cells(factors))
        metafunc.parametrize("architecture", ids, ids=ids)
    if "factor" in metafunc.fixturenames:
        terms = [term for term, _, _ in factor_terms(factors)]
        metafunc.parametrize("factor", terms, ids=terms)


def cell_source(pytestconfig: pytest.Config, architecture_id: str, thresholds: dict):
    """The ModelSource of one architecture: the base preset with its levels."""
    levels = cells(sweep_factors(pytestconfig))[architecture_id]
    base = TransformerConfig.preset(thresholds["base_preset"])
    cfg = architecture_config(base, levels)
    return source_for(cfg, pytestconfig.stash[OPTIONS_KEY].panel_rule)


def planned_measurements(item: pytest.Item) -> list[tuple]:
    """What a sweep test asks memo for (the broker's plan, see measurements_of in
    mechclaims.fixtures.plugin): its architecture for its seed; for an effect's test, every
    architecture that can be built (one that cannot fails its own tests) on every seed."""
    config, params = item.config, item.callspec.params
    thresholds = claim_thresholds(config.stash[REGISTRY_KEY]["claims"][CLAIM], None)
    if "architecture" in params:
        ids, seeds = [params["architecture"]], [params["seed"]]
    else:
        ids, seeds = list(cells(sweep_factors(config))), run_seeds(config, CLAIM)
    planned = []
    for architecture_id in ids:
        try:
            source = cell_source(config, architecture_id, thresholds)
        except ValueError:
            continue
        planned += [(measure, source, seed, thresholds) for seed in seeds]
    return planned


@pytest.mark.claim(f"{CLAIM}/{READING}", statement=STATEMENT)
def test_architecture(evidence, memo, pytestconfig, architecture, seed, thresholds):
    result = memo(measure, cell_source(pytestconfig, architecture, thresholds), seed, thresholds)
    evidence.record(**{
        f"{claim.replace('-', '_')}_{side}": values[side]
        for claim, values in result.items() for side in ("network", "null")
    })  # fmt: skip
    assert all(np.isfinite(list(values.values())).all() for values in result.values())


@pytest.mark.claim(f"{CLAIM}/{READING}", statement=STATEMENT, decides=True)
@pytest.mark.parametrize("statistic", STATISTICS)
def test_effect_across_seeds(
    evidence, judge_word, memo, pytestconfig, seeds, thresholds, statistic, factor
):
    factors = sweep_factors(pytestconfig)
    values, kept, failed = measured_cells(memo, pytestconfig, seeds, thresholds, statistic)
    margin = studied_margin(thresholds, statistic)
    family = family_size(factors)
    level = term_confidence(thresholds["family_error"], family)
    effects = main_effects(values, list(kept.values()), factors, margin, level)
    i = effects.terms.index(factor)
    beyond = beyond_null_by_margin(values, margin, thresholds["architecture_fdr"])  # [A] bool
    null = NULL_NAMES[studied_null(statistic)]
    account = (
        f"{effects.word(factor)}: {contrast(factor, factors)} {effects.value[i]:+.3g} "
        f"[{effects.low[i]:.3g}, {effects.high[i]:.3g}] in {compared(statistic)} against "
        f"±{margin:g} ({level:.4f} intervals: family-wise {thresholds['family_error']:g} over "
        f"{family} terms); architectures: {len(kept)} ({beyond.sum()} beyond the {null} by "
        f"{margin:g}, BH {thresholds['architecture_fdr']:g}), {len(seeds)} seeds"
    )
    if factor == effects.terms[0]:  # one figure and table per statistic
        pair = largest_factors(effects)
        joint = interaction(values, list(kept.values()), factors, pair, margin, level)
        evidence.table("main effects and the interaction of the two largest",
                       effects_rows(effects, joint, factors, len(kept)))  # fmt: skip
        evidence.figure("architectures and main effects",
                        sweep_figure(values, kept, factors, effects, joint, beyond, statistic,
                                     thresholds))  # fmt: skip
    judge_word(READING, {"statistic": statistic, "factor": factor}, effects.word(factor),
               account, architectures=len(kept), failed_architectures=failed,
               null=studied_null(statistic), architectures_beyond_null=int(beyond.sum()),
               effect=effects.value[i], effect_low=effects.low[i],
               effect_high=effects.high[i], margin=margin, term_confidence=level,
               family_size=family)  # fmt: skip


def measured_cells(memo, pytestconfig, seeds, thresholds: dict, statistic: str):
    """values [seeds, A] of network - null for every architecture measured on every seed,
    those architectures {id: levels}, and the ids of those whose measurement failed (their own
    tests show why; the effects are fitted without them)."""
    results, kept, failed = [], {}, []
    for architecture_id, levels in cells(sweep_factors(pytestconfig)).items():
        try:
            source = cell_source(pytestconfig, architecture_id, thresholds)
            results.append([memo(measure, source, seed, thresholds) for seed in seeds])
        except Exception:  # any failure of one cell: it fails its own tests, not the sweep's
            failed.append(architecture_id)
            continue
        kept[architecture_id] = levels
    return paired_values(results, statistic), kept, failed


def contrast(term: str, factors: dict) -> str:
    """What a term compares, e.g. `norm: post - pre`."""
    field, level = next((f, lv) for t, f, lv in factor_terms(factors) if t == term)
    return f"{term}: {level} - {factors[field][0]}"


def effects_rows(effects, joint, factors: dict, architectures: int) -> list[dict]:
    """The table: per term (main effects, then the interaction) its estimate, interval and
    word against ± the margin."""
    rows = []
    for kind, table in (("main effect", effects), ("interaction", joint)):
        for i, term in enumerate(table.terms):
            rows.append({
                "architectures": architectures, "kind": kind, "term": term,
                "factors": table.factor_of[i],
                "compares": contrast(term, factors) if kind == "main effect" else term,
                "effect": float(table.value[i]), "low": float(table.low[i]),
                "high": float(table.high[i]), "margin": table.margin,
                "finding": table.word(term),
            })  # fmt: skip
    return rows


def sweep_figure(values, kept: dict, factors: dict, effects, joint, beyond, statistic: str,
                 thresholds: dict):  # fmt: skip
    """Left: every architecture's mean network - null over seeds (rows: the first half of the
    factors' levels, columns: the rest), a dot where it is beyond its null by the margin (BH
    across architectures). Right: main effects and the interaction, with their family-wise
    intervals, against ± the margin."""
    figure, (ax_map, ax_effects) = new_figure(2, width=6.0, height=5.0)
    fields = list(factors)
    rows_of, columns_of = fields[: len(fields) // 2], fields[len(fields) // 2 :]
    row_keys = list(itertools.product(*(factors[field] for field in rows_of)))
    column_keys = list(itertools.product(*(factors[field] for field in columns_of)))
    grid = np.full((len(row_keys), len(column_keys)), np.nan)
    margin, label = effects.margin, compared(statistic)
    for value, cell, above in zip(values.T, kept.values(), beyond, strict=True):
        r = row_keys.index(tuple(cell[f] for f in rows_of))
        c = column_keys.index(tuple(cell[f] for f in columns_of))
        grid[r, c] = value.mean()
        if above:
            ax_map.plot(c, r, "o", color="black", markersize=3)
    limit = np.nanmax(np.abs(grid))
    image = ax_map.imshow(grid, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    figure.colorbar(image, ax=ax_map, label=f"{label}\n({STUDIED[statistic].studied_units})")
    ax_map.set_yticks(range(len(row_keys)), ["/".join(map(str, key)) for key in row_keys],
                      fontsize=6)  # fmt: skip
    ax_map.set_xticks(range(len(column_keys)), ["/".join(map(str, key)) for key in column_keys],
                      fontsize=6, rotation=90)  # fmt: skip
    ax_map.set_ylabel("/".join(rows_of))
    ax_map.set_xlabel("/".join(columns_of))
    ax_map.set_title(f"{len(kept)} architectures; dot: beyond the "
                     f"{NULL_NAMES[studied_null(statistic)]} by {margin:g}\n"
                     f"(BH {thresholds['architecture_fdr']:g} across architectures)",
                     fontsize=9)  # fmt: skip
    terms = [*effects.terms, *joint.terms]
    value = np.concatenate([effects.value, joint.value])
    low, high = np.concatenate([effects.low, joint.low]), np.concatenate([effects.high, joint.high])
    positions = np.arange(len(terms))[::-1]
    network = SOURCES["network"]
    ax_effects.errorbar(value, positions, xerr=[value - low, high - value], fmt=network.marker,
                        color=network.colour, capsize=3)  # fmt: skip
    ax_effects.axvline(0.0, color="black", linewidth=0.6)
    threshold_line(ax_effects, margin, "+margin", vertical=True)
    threshold_line(ax_effects, -margin, "-margin", vertical=True)
    ax_effects.set_yticks(positions, terms, fontsize=7)
    ax_effects.set_xlabel(f"effect on {label}\n({STUDIED[statistic].studied_units})")
    ax_effects.set_title(f"main effects and interaction\n{effects.confidence:.2%} t-intervals "
                         f"across seeds (family-wise {thresholds['family_error']:g})",
                         fontsize=9)  # fmt: skip
    ax_effects.legend(fontsize=7, loc="best")
    ax_effects.grid(axis="x", alpha=0.3)
    return figure
