"""A study's named budgets: `--budget NAME` swaps in its corpus and overrides; explicit flags still win."""

import argparse

import pytest

from raybio.study import Budget, Study, base_config, check_extra_axes, parse, study_axes

STUDY = Study(
    name="toy",
    question="?",
    add_args=lambda g: None,
    axes=lambda args: {"experts": [1, 2]},
    budgets={"long": Budget(about="longer", data=["bundled:lambda"], overrides=["train.max_steps=600"])},
)


def _experiment(argv):
    args = parse(STUDY, argv, "")
    return args, base_config(STUDY, args)


def test_budget_long_trains_its_own_corpus_and_steps():
    args, exp = _experiment(["--budget", "long"])
    assert args.budget == "long" and exp.train.max_steps == 600
    assert exp.data.sources == ["bundled:lambda"]


def test_default_budget_keeps_the_preset_and_explicit_flags_beat_the_budget():
    _, default = _experiment([])
    assert default.train.max_steps == 200
    _, flagged = _experiment(["--budget", "long", "--max-steps", "50"])
    assert flagged.train.max_steps == 50


def test_studies_without_budgets_have_no_budget_flag():
    plain = Study(name="plain", question="?", add_args=lambda g: None, axes=lambda a: {})
    try:
        parse(plain, ["--budget", "long"], "")
    except SystemExit:
        return
    raise AssertionError("--budget accepted by a study that defines none")


def test_expert_count_long_budget_is_the_multiomic_findings_run():
    import runpy

    study = runpy.run_path("sweeps/expert_count.py")["STUDY"]
    long = study.budgets["long"]
    assert long.data == ["bundled:human_chr22", "bundled:ecoli", "bundled:ecoli_proteins"]
    assert "data.tokenizer.kind=multiomic" in long.overrides and "train.max_steps=600" in long.overrides
    assert isinstance(parse(study, ["--budget", "long"], ""), argparse.Namespace)


def test_train_seeds_repeat_every_config_once_per_seed():
    from raybio.tune.space import trial_experiment

    args = parse(STUDY, ["--train-seeds", "0", "1"], "")
    assert study_axes(STUDY, args) == {"experts": [1, 2], "train.seed": [0, 1]}
    assert study_axes(STUDY, parse(STUDY, [], "")) == {"experts": [1, 2]}
    base = base_config(STUDY, args)
    assert trial_experiment(base, {"train.seed": 1}).train.seed == 1


def test_an_extra_axis_crosses_the_study_axes_and_reaches_the_trial_config():
    from raybio.tune.space import trial_experiment

    args = parse(STUDY, ["--axis", "model.d_ffn=512,2048"], "")
    axes = study_axes(STUDY, args)
    assert axes == {"experts": [1, 2], "model.d_ffn": [512, 2048]}
    assert trial_experiment(base_config(STUDY, args), {"experts": 1, "model.d_ffn": 2048}).model.ffn_hidden == 2048


def test_a_malformed_or_duplicate_extra_axis_is_refused_with_the_form_to_use():
    for bad, message in [("d_ffn=512", "section.field=value1,value2"), ("experts.x=", "section.field")]:
        with pytest.raises(ValueError, match=message):
            study_axes(STUDY, parse(STUDY, ["--axis", bad], ""))
    with pytest.raises(ValueError, match="already swept"):
        study_axes(STUDY, parse(STUDY, ["--axis", "train.seed=0,1", "--train-seeds", "0", "1"], ""))


def test_an_extra_axis_naming_no_config_field_stops_before_the_sweep_with_the_field_named():
    from raybio.config import ConfigError

    args = parse(STUDY, ["--axis", "model.d_fnn=512,2048"], "")
    with pytest.raises(ConfigError, match="d_fnn"):
        check_extra_axes(base_config(STUDY, args), args)
    args = parse(STUDY, ["--axis", "train.lr=-1"], "")
    with pytest.raises(ConfigError, match=r"train\.lr"):
        check_extra_axes(base_config(STUDY, args), args)
    good = parse(STUDY, ["--axis", "model.d_ffn=512,2048"], "")
    check_extra_axes(base_config(STUDY, good), good)  # valid values pass silently
