"""The scaling study's analysis on records whose losses come from a known law: the laws it fits, the design it
picks at C*, predicted vs measured, and the report it draws; "not identified" where the runs cannot tell.

Records are built from the study's real configs (micro ladder × designs × budgets, each run's N and D as
raybio resolves them), with losses from a known law times log-normal noise. References: the known law itself,
scipy's t-interval, hand arithmetic.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from raybio.analysis import scaling_plots, scaling_report, scaling_study
from raybio.analysis.document import Document, to_markdown
from raybio.analysis.report import sweep_document
from raybio.analysis.scaling import predict_loss
from raybio.analysis.scaling_study import BUDGET_AXIS, ROLE, active_params, compute, fit_laws, law_from, with_check
from raybio.config import load_config
from raybio.models.flops import flops_per_token
from raybio.tune.record import SEED_AXIS, SweepMeta, SweepRecord
from raybio.tune.space import trial_experiment

DENSE = {"E": 1.1, "A": 20.0, "alpha": 0.35, "B": 25.0, "beta": 0.3}
MOE = {"E": 1.1, "A": 8.0, "g": 8.0, "gamma": 0.5, "alpha": 0.35, "B": 25.0, "beta": 0.3}
BUDGETS = [6e10, 1.8e11, 5.4e11]
SIZES = ["micro-1", "micro-2", "micro-3", "micro-4", "micro-5", "micro-6"]
DESIGNS = ["dense", "moe_g1", "moe_g2", "moe_g4"]
NOISE = 0.002
N_BOOT = 30


def true_loss(n, d, g=None):
    if g is None:
        p = DENSE
        return p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]
    p = MOE
    return p["E"] + (p["g"] / g ** p["gamma"] + p["A"]) / n ** p["alpha"] + p["B"] / d ** p["beta"]


def base():
    return load_config("micro-3", overrides=["data.tokenizer.kind=nucleotide", "model.moe.num_experts=4",
                                             "model.moe.top_k=1"])  # fmt: skip


def run_row(budget, size, design, seed, rng) -> dict:
    """One trial as results_table writes it, its loss from the known law."""
    exp = trial_experiment(base(), {BUDGET_AXIS: budget, "size": size, "design": design})
    n, t = active_params(exp), exp.train
    d = t.max_steps * t.batch_size * exp.data.seq_len
    fpt = flops_per_token(exp.model, exp.data.seq_len, exp.data.tokenizer.build().vocab_size).train
    loss = true_loss(n, d, scaling_study.granularity(design)) * np.exp(NOISE * rng.standard_normal())
    return {"trial_id": f"t{rng.integers(1 << 30):x}", "status": "OK", BUDGET_AXIS: budget, "size": size,
            "design": design, SEED_AXIS: seed, "val_loss": loss, "val_loss_se": 0.002, "val_unigram_loss": 1.39,
            "params_active": n, "params_total": n, "flops_per_token_train": fpt, "train_flops_cum": fpt * d,
            "step": t.max_steps}  # fmt: skip


def record_of(rows: list[dict], uri: str, axes: dict) -> SweepRecord:
    meta = SweepMeta(name="scaling", study="scaling", axes=axes, base=base().model_dump(), command="python ...")
    return SweepRecord(uri, meta, pd.DataFrame(rows).drop(columns=[SEED_AXIS]))


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    rng = np.random.default_rng(0)
    rows = [run_row(c, s, d, 0, rng) for c in BUDGETS for s in SIZES for d in DESIGNS]
    record = record_of(rows, str(tmp_path_factory.mktemp("scaling")), {BUDGET_AXIS: BUDGETS, "size": SIZES,
                                                                       "design": DESIGNS})  # fmt: skip
    return record, fit_laws(record, n_boot=N_BOOT)


def test_laws_recover_the_known_exponents_with_intervals_covering_them(grid):
    _, laws = grid
    dense, moe = laws["dense"]["estimates"], laws["moe"]["estimates"]
    for name in ("alpha", "beta"):
        assert dense[name]["identified"], dense[name]["why"]
        assert dense[name]["low"] <= DENSE[name] <= dense[name]["high"]
        assert moe[name]["value"] == pytest.approx(MOE[name], abs=0.05)
    assert laws["isoflop"]["dense"]["a"]["identified"]
    minima = laws["isoflop"]["dense"]["minima"]
    assert all(m["n_opt"] is not None for m in minima)
    assert minima[0]["n_opt"] < minima[-1]["n_opt"]  # the optimum grows with compute


def test_the_check_picks_the_design_with_the_lowest_identified_prediction(grid):
    _, laws = grid
    check = laws["check"]
    assert check["compute"] == pytest.approx(4 * max(BUDGETS)) and check["ratio"] == pytest.approx(4.0)
    assert "extrapolating 4.0×" in check["warning"]  # printed at ≥ 3×
    known = [c for c in check["candidates"] if c["predicted"]["identified"]]
    assert check["pick"] == min(known, key=lambda c: c["predicted"]["value"])
    pick = check["pick"]
    truth = true_loss(pick["N"], pick["D"], scaling_study.granularity(pick["design"]))
    pred = pick["predicted"]
    assert pred["low"] <= truth <= pred["high"] and pred["value"] == pytest.approx(truth, rel=0.01)
    # The truth's best candidate is the pick or predicted within the pick's interval of it.
    best = min(check["candidates"], key=lambda c: true_loss(c["N"], c["D"], scaling_study.granularity(c["design"])))
    assert true_loss(best["N"], best["D"], scaling_study.granularity(best["design"])) >= pred["low"]


def test_each_moe_design_has_its_own_law_with_krajewskis_coefficient_at_its_granularity(grid):
    # At one G, Krajewski's law is Chinchilla's with A_G = A + g / G^gamma: each arm's own fit recovers that.
    _, laws = grid
    assert list(laws["arms"]) == ["moe_g1", "moe_g2", "moe_g4"]
    for design, fit in laws["arms"].items():
        g = scaling_study.granularity(design)
        est, params = fit["estimates"], law_from(fit).params
        assert all(e["identified"] for e in est.values()), {k: e["why"] for k, e in est.items()}
        assert params["alpha"] == pytest.approx(MOE["alpha"], abs=0.05)
        assert params["A"] == pytest.approx(MOE["A"] + MOE["g"] / g ** MOE["gamma"], rel=0.3)


def test_leverage_of_the_moe_designs_matches_the_known_laws_ordering(grid):
    _, laws = grid
    at_cmax = {lev["G"]: lev["estimate"] for lev in laws["leverage"] if lev["compute"] == max(BUDGETS)}
    assert sorted(at_cmax) == [1, 2, 4]
    assert all(e["identified"] and e["value"] > 1 for e in at_cmax.values())  # A + g/G^γ < the dense A
    assert at_cmax[1]["value"] < at_cmax[4]["value"]  # finer experts are worth more dense compute


def test_fits_round_trip_through_json_and_predict_the_same(grid):
    _, laws = grid
    again = json.loads(json.dumps(laws))
    fit, back = law_from(laws["dense"]), law_from(again["dense"])
    a, b = predict_loss(fit, N=3e5, D=1e7), predict_loss(back, N=3e5, D=1e7)
    assert (a.value, a.low, a.high) == pytest.approx((b.value, b.low, b.high), rel=1e-9)


def true_optimum(compute_: float, k: float) -> tuple[float, float]:
    """(N_opt, L*) of the known dense law at C = k·N·D, by numerical minimisation over log N."""
    loss = lambda log_n: true_loss(np.exp(log_n), compute_ / (k * np.exp(log_n)))  # noqa: E731
    res = optimize.minimize_scalar(loss, bounds=(np.log(1e2), np.log(1e9)), method="bounded", options={"xatol": 1e-9})
    return float(np.exp(res.x)), float(res.fun)


def test_the_figures_curves_are_evaluated_from_saved_fits_and_follow_the_known_law(grid, monkeypatch):
    record, laws = grid
    monkeypatch.setattr(scaling_study, "fit_laws", lambda *a, **k: pytest.fail("the saved laws were refitted"))
    record.fits = {"laws": json.loads(json.dumps(laws, sort_keys=True))}  # saved before the laws carried curves
    curves = json.loads(json.dumps(compute(record)["curves"]))
    cs = np.array(curves["compute"])
    assert cs[0] == pytest.approx(0.5 * min(BUDGETS)) and cs[-1] == pytest.approx(1.5 * laws["check"]["compute"])
    truth = np.array([true_optimum(c, laws["flops_per_param_token"]) for c in cs])
    inside = (cs >= min(BUDGETS)) & (cs <= max(BUDGETS))
    n_opt, loss = curves["n_opt"], curves["optimal_loss"]["dense"]
    assert n_opt["identified"] and loss["identified"] and curves["check"]["identified"]
    assert np.array(n_opt["value"])[inside] == pytest.approx(truth[inside, 0], rel=0.02)
    assert np.array(loss["value"])[inside] == pytest.approx(truth[inside, 1], rel=0.005)
    assert (np.array(loss["low"]) <= np.array(loss["value"])).all() and (np.array(loss["value"]) <= loss["high"]).all()
    runs = record.ok[record.ok["design"] == "dense"]
    fitted = curves["fitted"]["dense"]
    assert fitted["loss"] == pytest.approx(runs["val_loss"].tolist())  # each run beside its own fitted loss
    d = runs["train_flops_cum"] / runs["flops_per_token_train"]
    assert fitted["fitted"] == pytest.approx(true_loss(runs["params_active"], d).tolist(), rel=0.01)
    for m, parabola in zip(laws["isoflop"]["dense"]["minima"], curves["parabolas"]["dense"], strict=True):
        at = runs[np.isclose(runs[BUDGET_AXIS], m["compute"])]
        assert parabola["N"][0] == pytest.approx(at["params_active"].min())
        assert parabola["N"][-1] == pytest.approx(at["params_active"].max())
        own = np.polyfit(np.log(at["params_active"]), at["val_loss"], 2)
        assert parabola["loss"] == pytest.approx(np.polyval(own, np.log(parabola["N"])).tolist())


def check_rows(laws: dict, seeds: list[int], offset: float) -> list[dict]:
    """The check's runs: the pick's design at C*, its loss the known law's times (1 + offset), seed noise."""
    pick, rng = laws["check"]["pick"], np.random.default_rng(7)
    rows = [run_row(laws["check"]["compute"], pick["size"], pick["design"], s, rng) for s in seeds]
    for row in rows:
        row["val_loss"] *= 1 + offset
    return rows


@pytest.mark.parametrize(("offset", "hit"), [(0.0, True), (0.05, False)])
def test_predicted_vs_measured_is_a_hit_only_inside_the_interval_and_within_one_percent(grid, offset, hit):
    record, laws = grid
    axes = {BUDGET_AXIS: [laws["check"]["compute"]], "size": [laws["check"]["pick"]["size"]],
            "design": [laws["check"]["pick"]["design"]], SEED_AXIS: [0, 1, 2]}  # fmt: skip
    check = SweepRecord(record.uri, record.meta.model_copy(update={"axes": axes}),
                        pd.DataFrame(check_rows(laws, [0, 1, 2], offset)))  # fmt: skip
    merged = with_check(record, check, json.loads(json.dumps(laws)))
    assert (merged.results[ROLE] == "check").sum() == 3 and merged.meta.axes[SEED_AXIS] == [0, 1, 2]
    m = compute(merged)["check"]["measured"]
    losses = check.results["val_loss"].to_numpy()
    ref = stats.t.interval(0.95, 2, loc=losses.mean(), scale=stats.sem(losses))
    assert m["mean"] == pytest.approx(losses.mean()) and m["ci"] == pytest.approx(list(ref))
    pred = laws["check"]["pick"]["predicted"]["value"]
    assert m["diff"] == pytest.approx(losses.mean() - pred) and m["rel"] == pytest.approx(m["diff"] / pred)
    assert (m["inside"] and m["within_tolerance"]) is hit and m["verdict"].startswith("hit" if hit else "miss")
    assert ("signs" in m) is not hit


def test_a_miss_under_the_fitted_floor_says_so_and_a_hit_gives_no_signs(grid):
    record, laws = grid
    axes = {BUDGET_AXIS: [laws["check"]["compute"]], "size": [laws["check"]["pick"]["size"]],
            "design": [laws["check"]["pick"]["design"]], SEED_AXIS: [0, 1]}  # fmt: skip
    check = SweepRecord(record.uri, record.meta.model_copy(update={"axes": axes}),
                        pd.DataFrame(check_rows(laws, [0, 1], -0.5)))  # fmt: skip
    m = compute(with_check(record, check, json.loads(json.dumps(laws))))["check"]["measured"]
    floor = law_from(scaling_study.design_law(laws, laws["check"]["pick"]["design"])).params["E"]
    assert m["mean"] < floor  # half the truth: below the fitted E (1.1 by construction)
    assert m["signs"][0] == "the check learned more than its law extrapolates to C*"
    assert any(f"below the law's fitted floor E = {floor:.4f}" in sign for sign in m["signs"])


def test_the_report_draws_every_figure_and_states_the_answers(grid):
    record, laws = grid
    record.fits = {"laws": json.loads(json.dumps(laws, sort_keys=True))}  # as fits.json keeps it
    doc = sweep_document(record)
    names = {f.name for f in doc.figures()}
    assert {"isoflop.png", "n_opt.png", "law_fit.png", "dense_vs_moe.png", "check.png"} <= names
    md = to_markdown(doc)
    assert "## Scaling laws" in md and "### Predictive check at 2.16 TFLOP" in md
    assert "train.flop_budget ∈ [60 G, 180 G, 540 G]" in md
    assert "e+" not in scaling_report.console_text(laws)  # human units: no raw exponents
    assert "Extrapolation warning" in md
    a_row = next(line for line in md.splitlines() if line.startswith("| A "))  # the dense law's (first) table
    assert a_row.rstrip(" |").endswith(f"{np.exp(laws['dense']['theta'][1]):.4f}")  # A's term at the centre, not E's


def test_the_answer_holds_its_runs_so_figures_and_sections_need_nothing_but_fits_json(grid):
    record, _ = grid
    answer = json.loads(json.dumps(compute(record)))  # as fits.json keeps it; no record below
    runs = scaling_study.runs_table(record)
    assert len(answer["runs"]) == len(runs)
    assert [r["loss"] for r in answer["runs"]] == pytest.approx(runs["loss"].tolist(), rel=1e-14)
    figures = scaling_plots.draw(answer)
    md = to_markdown(Document("scaling", scaling_report.sections(answer, figures)))
    assert f"every run ({len(runs)})" in md and "![IsoFLOP profiles" in md


def test_runs_at_one_size_leave_the_laws_not_identified_and_pick_nothing(tmp_path):
    rng = np.random.default_rng(3)
    rows = [run_row(c, "micro-3", "dense", 0, rng) for c in BUDGETS for _ in range(3)]
    record = record_of(rows, str(tmp_path), {BUDGET_AXIS: BUDGETS, "size": ["micro-3"], "design": ["dense"]})
    laws = fit_laws(record, n_boot=10)
    assert not laws["dense"]["estimates"]["alpha"]["identified"]
    assert laws["check"]["pick"] is None and "not identified" in laws["check"]["why"]
    assert "no interior minimum" in laws["isoflop"]["dense"]["minima"][0]["why"] or "model sizes" in \
        laws["isoflop"]["dense"]["minima"][0]["why"]  # fmt: skip
    text = scaling_report.console_text(laws)
    assert "not identified" in text and "No design picked" in text


def test_a_design_splits_the_ffn_of_its_size_whatever_the_axis_order():
    """Records come back from sweep.json with their axes sorted: the result must not depend on the order."""
    params = {BUDGET_AXIS: 1e12, "size": "micro-1", "design": "moe_g2"}
    a = trial_experiment(base(), params)
    b = trial_experiment(base(), dict(reversed(params.items())))
    assert a == b
    d = load_config("micro-1").model.d_model
    assert (a.model.d_model, a.model.moe.num_experts, a.model.moe.top_k, a.model.moe.expert_hidden) == (d, 8, 2, 2 * d)


def test_a_miss_with_check_seeds_far_wider_than_the_grids_says_by_how_much(grid):
    # Two seeds per size at the largest budget, SDs known by construction; the pooled SD is the root of the mean
    # of the per-size variances (computed here by hand), and a check spread of 8x it is named as 8x.
    _, laws = grid
    design, top = laws["check"]["pick"]["design"], max(BUDGETS)
    pairs = {"micro-1": (4.00, 4.02), "micro-2": (3.99, 3.99), "micro-3": (4.01, 4.04)}
    runs = pd.DataFrame([{"role": "grid", "design": design, "budget": top, "size": s, "loss": v}
                         for s, pair in pairs.items() for v in pair])  # fmt: skip
    pooled = np.sqrt(np.mean([np.var(pair, ddof=1) for pair in pairs.values()]))
    m = {"diff": 0.05, "mean": 10.0, "sd": 8 * pooled}
    signs = scaling_study.miss_signs(m, laws, runs)
    assert signs[0] == "the check learned less than its law extrapolates to C*"
    assert len(signs) == 2 and signs[1].startswith(f"its seeds spread 8× as wide (SD {8 * pooled:.4f})")
    assert f"at the largest budget ({pooled:.4f})" in signs[1]
    assert len(scaling_study.miss_signs(m | {"sd": 2 * pooled}, laws, runs)) == 1  # within 3x: not a sign
