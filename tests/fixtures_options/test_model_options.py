"""The model options (--seeds, --model-preset, --model-set) and the fixtures they parametrize."""

from __future__ import annotations

import pytest

from mechclaims.fixtures.registry import parse_seeds
from mechclaims.model.config import PRESETS, TransformerConfig
from mechclaims.model.transformer import Transformer

PLUGIN = ("-p", "mechclaims.fixtures.plugin")

PARAMETRIZED_TESTS = """
import json

import pytest

def test_preset_and_seed(preset, seed, model_config, seeds):
    assert model_config.n_layers >= 1
    assert seed in seeds

def test_config_only(model_config, model_overrides):
    print("CONFIG", model_config.init_scale, model_overrides)

def test_seeds_are_not_parametrized(seeds):
    print("SEEDS", list(seeds))

@pytest.mark.parametrize("seed", [7])
def test_own_seed(seed):
    pass
"""


def collected(pytester: pytest.Pytester, *args: str) -> list[str]:
    """The node ids a collection with the model options collects."""
    pytester.makepyfile(test_models=PARAMETRIZED_TESTS)
    result = pytester.runpytest(*PLUGIN, "--collect-only", "-q", *args)
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    return [line for line in result.stdout.lines if "::" in line]


def test_parse_seeds():
    assert parse_seeds("2:5") == (2, 3, 4)
    assert parse_seeds("3") == (3,)
    assert parse_seeds(" 0:1 ") == (0,)


def test_default_is_every_preset_and_twenty_seeds_without_a_registry(pytester):
    ids = collected(pytester)
    assert [nodeid for nodeid in ids if "test_preset_and_seed" in nodeid] == [
        f"test_models.py::test_preset_and_seed[{preset}-seed{seed}]"
        for preset in PRESETS
        for seed in range(20)
    ]
    assert [nodeid for nodeid in ids if "test_config_only" in nodeid] == [
        f"test_models.py::test_config_only[{preset}]" for preset in PRESETS
    ]
    assert "test_models.py::test_seeds_are_not_parametrized" in ids
    assert [nodeid for nodeid in ids if "test_own_seed" in nodeid] == [
        "test_models.py::test_own_seed[7]"
    ]


def test_default_presets_come_from_the_registry(pytester):
    pytester.mkdir("claims")
    registry = pytester.path / "claims" / "registry.toml"
    registry.write_text('presets = ["gpt2-style", "tiny-mha"]\n')
    assert collected(pytester, "--seeds", "0", "-k", "test_preset_and_seed") == [
        "test_models.py::test_preset_and_seed[gpt2-style-seed0]",
        "test_models.py::test_preset_and_seed[tiny-mha-seed0]",
    ]


def test_command_line_chooses_presets_and_seeds_in_order(pytester):
    args = ["--seeds", "3:5", "--model-preset", "tiny-mha", "--model-preset", "seed-minigpt"]
    assert collected(pytester, *args, "-k", "test_preset_and_seed") == [
        "test_models.py::test_preset_and_seed[tiny-mha-seed3]",
        "test_models.py::test_preset_and_seed[tiny-mha-seed4]",
        "test_models.py::test_preset_and_seed[seed-minigpt-seed3]",
        "test_models.py::test_preset_and_seed[seed-minigpt-seed4]",
    ]


def test_ini_sets_defaults_and_the_command_line_overrides_them(pytester):
    pytester.makepyprojecttoml(
        "[tool.pytest.ini_options]\n"
        'model_seeds = "5:7"\n'
        'model_presets = ["gpt2-style"]\n'
        'model_set = ["init_scale=0.5"]\n'
    )
    pytester.makepyfile(test_models=PARAMETRIZED_TESTS)
    result = pytester.runpytest(*PLUGIN, "-s", "-v")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(
        [
            "*test_preset_and_seed[[]gpt2-style-seed5] PASSED*",
            "*test_preset_and_seed[[]gpt2-style-seed6] PASSED*",
            "*CONFIG 0.5 {'init_scale': 0.5}*",
            "*SEEDS [[]5, 6]*",
        ]
    )
    result = pytester.runpytest(*PLUGIN, "-s", "--seeds", "1", "--model-set", "init_scale=2")
    result.stdout.fnmatch_lines(["*CONFIG 2.0 {'init_scale': 2.0}*", "*SEEDS [[]1]*"])


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        (["--seeds", "5:5"], "", "--seeds: need 0 <= START < STOP, got '5:5'"),
        (["--seeds=-1:3"], "", "--seeds: need 0 <= START < STOP, got '-1:3'"),
        (["--seeds", "a:b"], "", "--seeds: expected START:STOP or N with integers, got 'a:b'"),
        ([], 'model_seeds = "9:3"', "ini option model_seeds: need 0 <= START < STOP, got '9:3'"),
        (["--model-preset", "gpt3"], "", "--model-preset: unknown preset 'gpt3'*"),
        ([], 'model_presets = ["gpt3"]', "ini option model_presets: unknown preset 'gpt3'*"),
        (["--model-set", "d_model"], "", "--model-set: expected KEY=VALUE, got 'd_model'"),
        (["--model-set", "d_modle=8"], "", "--model-set: unknown config field 'd_modle'; did you*"),
        (["--model-set", "n_heads=3"], "", "--model-set (preset seed-minigpt): n_heads=3 must*"),
        ([], 'model_set = ["causal=maybe"]', "ini option model_set: causal must be true or false*"),
    ],
)  # fmt: skip
def test_bad_values_are_usage_errors_naming_the_option(pytester, args, ini, message):
    pytester.makepyfile(test_ran="def test_ran():\n    open('ran', 'w').close()\n")
    if ini:
        pytester.makepyprojecttoml(f"[tool.pytest.ini_options]\n{ini}\n")
    result = pytester.runpytest(*PLUGIN, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert not (pytester.path / "ran").exists()


GOOD_CLAIM = """
[claims.tiny]
seed_sentence = "a tiny claim"
[claims.tiny.thresholds]
required_rate = { value = 0.5, why = "most seeds" }
[claims.tiny.verdicts.controlled]
tiny-mha = { verdict = "supported", why = "it holds" }
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('presets = "tiny-mha"\n', "*registry.toml: presets must be a non-empty list*"),
        ("[claims.tiny\n", "*registry.toml is not valid TOML: *line 1*"),
        (GOOD_CLAIM.replace('"supported"', '"maybe"'),
         "*registry.toml: claims.tiny.verdicts.controlled.tiny-mha.verdict must be one of "
         "supported, refuted, inconclusive; got 'maybe'"),
        (GOOD_CLAIM.replace("[claims.tiny.thresholds]\nrequired_rate = { value = 0.5, why = "
                            '"most seeds" }\n', ""),
         "*registry.toml: claims.tiny.thresholds is missing: every claim needs its thresholds"),
        (GOOD_CLAIM.replace(', why = "most seeds"', ""),
         "*registry.toml: claims.tiny.thresholds.required_rate must be { value = ..., why = *"),
        (GOOD_CLAIM.replace('seed_sentence = "a tiny claim"', ""),
         "*registry.toml: claims.tiny.seed_sentence is missing*"),
        (GOOD_CLAIM.replace("verdicts.controlled", "verdicts.guessed"),
         "*registry.toml: claims.tiny.verdicts.guessed is not a reading (seed-protocol, *)"),
        (GOOD_CLAIM.replace(', why = "it holds"', ""),
         "*registry.toml: claims.tiny.verdicts.controlled.tiny-mha.why must give *"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("where", ["default", "option", "ini"])
def test_a_bad_registry_is_a_one_line_usage_error_naming_file_and_key(
    pytester, text, message, where
):
    pytester.makepyfile(test_ran="def test_ran():\n    open('ran', 'w').close()\n")
    path = {"default": "claims/registry.toml", "option": "mine.toml", "ini": "conf/reg.toml"}
    (pytester.path / path[where]).parent.mkdir(exist_ok=True)
    (pytester.path / path[where]).write_text(text)
    args = ["--claims-registry", path[where]] if where == "option" else []
    if where == "ini":
        pytester.makepyprojecttoml(
            f'[tool.pytest.ini_options]\nclaims_registry = "{path[where]}"\n'
        )
    result = pytester.runpytest(*PLUGIN, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    option = {"default": "the claims registry", "option": "--claims-registry",
              "ini": "ini claims_registry"}[where]  # fmt: skip
    stem = path[where].rsplit("/", 1)[-1]
    result.stderr.fnmatch_lines([f"ERROR: {option}: {message.replace('registry.toml', stem)}"])
    assert len([line for line in result.stderr.lines if line.strip()]) == 1
    assert not (pytester.path / "ran").exists()


@pytest.mark.parametrize("how", ["option", "ini"])
def test_a_named_registry_that_is_missing_is_a_usage_error(pytester, how):
    if how == "option":
        result = pytester.runpytest(*PLUGIN, "--claims-registry", "nowhere.toml")
        expected = "ERROR: --claims-registry: */nowhere.toml does not exist"
    else:
        pytester.makepyprojecttoml('[tool.pytest.ini_options]\nclaims_registry = "no.toml"\n')
        result = pytester.runpytest(*PLUGIN)
        expected = "ERROR: ini claims_registry: */no.toml does not exist"
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([expected])


def test_without_a_registry_only_the_tests_that_need_it_fail(pytester):
    pytester.makepyfile(
        """
        def test_needs_it(registry):
            pass

        def test_does_not(seeds):
            pass
        """
    )
    result = pytester.runpytest(*PLUGIN)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*no claims registry: claims/registry.toml does not exist*"])


def test_model_fixture_builds_the_configured_model(pytester):
    pytester.makepyfile(
        """
        def test_model(model, model_config):
            shape = (model_config.vocab_size, model_config.d_model)
            assert model.params["embed.W_E"].shape == shape
        """
    )
    result = pytester.runpytest(*PLUGIN, "--seeds", "0:2")
    result.assert_outcomes(passed=2 * len(PRESETS))


def test_a_design_a_model_cannot_serve_stops_the_run_naming_the_claim(pytester):
    pytester.makepyfile(
        test_long="""
from mechclaims.interp.claims.declaration import Claim, Reading

def measure(source, seed, thresholds):
    return {}

CLAIM = Claim("long-claim", "", {"controlled": Reading(measure, "x", holds=None)}, context=20)

def test_it(model_source, seed):
    open("ran", "w").close()
""",
    )
    result = pytester.runpytest(*PLUGIN, "--model-preset", "tiny-mha", "--seeds", "0")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        ["*claim long-claim cannot run on preset tiny-mha: its designs need 20 positions and the "
         "model has n_ctx=8*"]
    )  # fmt: skip
    assert not (pytester.path / "ran").exists()


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("1,2,3", "--token-panel (preset tiny-mha): token panel needs 10 distinct token ids*"),
        ("middle", "--token-panel (preset tiny-mha): token panel must be spread or first or *"),
    ],
)
def test_a_bad_token_panel_is_a_usage_error(pytester, rule, message):
    result = pytester.runpytest(*PLUGIN, "--model-preset", "tiny-mha", "--token-panel", rule)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])


def test_the_model_source_carries_the_chosen_panel(pytester):
    pytester.makepyfile(
        """
        def test_panel(model_source):
            print("PANEL", model_source.panel, model_source.cfg.vocab_size)
        """
    )
    args = ("--model-preset", "gpt2-style", "--model-set", "vocab_size=1000", "-s")
    result = pytester.runpytest(*PLUGIN, *args, "--token-panel", "first")
    result.stdout.fnmatch_lines(["*PANEL (0, 1, 2, 3, 4, 5, 6, 7, 8, 9) 1000*"])
    result = pytester.runpytest(*PLUGIN, *args)
    result.stdout.fnmatch_lines(["*PANEL (0, 111, 222, 333, 444, 555, 666, 777, 888, 999) 1000*"])


def _checkpoint(path, **changes):
    Transformer(TransformerConfig.preset("tiny-mha").replace(**changes), seed=0).save(path)
    return str(path)


@pytest.mark.parametrize(
    ("make", "extra", "message"),
    [
        (lambda tmp: str(tmp / "nowhere.npz"), (),
         "--model-checkpoint: */nowhere.npz does not exist"),
        (lambda tmp: (tmp / "junk.npz").write_text("junk") and str(tmp / "junk.npz"), (),
         "--model-checkpoint: */junk.npz: truncated or not an .npz file (no zip archive)"),
        (lambda tmp: _checkpoint(tmp / "small.npz", vocab_size=8), (),
         "--model-checkpoint: the designs need 10 tokens; the model's vocabulary has 8"),
        (lambda tmp: _checkpoint(tmp / "short.npz", n_ctx=3), (),
         "--model-checkpoint: */short.npz: no claim runs on it: its designs need 4 positions and "
         "the model has n_ctx=3"),
        (lambda tmp: _checkpoint(tmp / "fine.npz"), ("--model-preset", "tiny-mha"),
         "--model-checkpoint and --model-preset do not go together*"),
    ],
)  # fmt: skip
def test_a_bad_checkpoint_is_a_usage_error_before_any_test(pytester, make, extra, message):
    pytester.makepyfile(test_ran="def test_ran():\n    open('ran', 'w').close()\n")
    path = make(pytester.path)
    result = pytester.runpytest(*PLUGIN, "--model-checkpoint", path, *extra)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert not (pytester.path / "ran").exists()


def test_a_checkpoint_run_runs_the_checkpoint_tests_and_not_the_presets(pytester):
    pytester.makepyfile(
        """
        def test_of_a_preset(preset):
            pass

        def test_of_a_checkpoint(checkpoint_model_source, seeds):
            print("SOURCE", checkpoint_model_source.cfg.d_model, checkpoint_model_source.init_seed)

        def test_of_neither():
            pass
        """
    )
    path = _checkpoint(pytester.path / "model.npz")
    result = pytester.runpytest(*PLUGIN, "--model-checkpoint", path, "-s")
    result.assert_outcomes(passed=2, deselected=len(PRESETS))
    result.stdout.fnmatch_lines(["*SOURCE 16 0*"])
    result = pytester.runpytest(*PLUGIN)
    result.assert_outcomes(passed=len(PRESETS) + 1, deselected=1)
