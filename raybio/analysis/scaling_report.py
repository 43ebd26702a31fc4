"""The `scaling` study's report sections and console text, drawn from its answer alone (the laws in
`record.fits["laws"]`, raybio.analysis.scaling_study, with the runs they were fitted to) and its figures
(scaling_plots). Numbers in human units; a parameter whose interval touches a bound or is too wide reads
"not identified" with the reason, and nothing that depends on it is printed as an answer."""

from __future__ import annotations

import math

import pandas as pd

from raybio.analysis.document import Bullets, Document, Figure, Section, Table, Text, to_markdown
from raybio.analysis.scaling_study import LAWS, TOLERANCE
from raybio.units import si

SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
LAW_NAMES = {"chinchilla": "L(N, D) by approach 3", "granular_moe": "Krajewski's L(N, D, G)"}


def sci(value: float) -> str:
    """A coefficient that can be large or small: 4.06 × 10³ (never 4.06e+03)."""
    if value == 0 or 1e-2 <= abs(value) < 1e4:
        return f"{value:.3g}"
    exp = math.floor(math.log10(abs(value)))
    return f"{value / 10**exp:.3g} × 10{str(exp).translate(SUPERSCRIPT)}"


def fmt_estimate(est: dict, fmt=lambda v: f"{v:.4g}") -> str:
    """ "value [low, high]", or "not identified (why)"."""
    if not est["identified"]:
        return f"not identified ({est['why']})"
    return f"{fmt(est['value'])} [{fmt(est['low'])}, {fmt(est['high'])}]"


def parameter_formats(name: str):
    if name == "E":
        return lambda v: f"{v:.4f}"
    if name in ("alpha", "beta", "gamma"):
        return lambda v: f"{v:.3f}"
    return sci


def law_table(fit: dict) -> pd.DataFrame:
    """One row per parameter: estimate [95 % interval] or not identified (why), and, for a coefficient, its term
    at the runs' centre in nats (what the runs determine; the papers' unit extrapolates it to N = 1)."""
    law = LAWS[fit["law"]]  # its parameter order (fits.json comes back with its keys sorted)
    names, n_coef = law.names, len(law.coefs)
    rows = []
    for i, name in enumerate(names):
        est = fit["estimates"][name]
        centre = f"{math.exp(fit['theta'][i]):.4f}" if 0 < i < n_coef else ("-" if i else "the floor")
        rows.append({"parameter": name, "estimate [95 % interval]": fmt_estimate(est, parameter_formats(name)),
                     "identified": "yes" if est["identified"] else "no",
                     "term at the runs' centre (nats)": centre})  # fmt: skip
    return pd.DataFrame(rows)


def law_caption(fit: dict, design: str = "") -> str:
    name = f"{design}'s own {LAW_NAMES[fit['law']]}" if design else LAW_NAMES[fit["law"]]
    return (f"{name}: {fit['formula']}; {fit['n_runs']} runs, {fit['boot_converged']:.0%} of the bootstrap refits "
            "converged (runs resampled within each budget, every refit from the grid)")  # fmt: skip


def law_tables(laws: dict) -> list[Table]:
    """Each fitted law's table: dense L(N, D), Krajewski's L(N, D, G) on the MoE arms, each MoE design's L(N, D)."""
    tables = [Table(law_table(laws[key]), caption=law_caption(laws[key])) for key in ("dense", "moe") if key in laws]
    return tables + [Table(law_table(fit), caption=law_caption(fit, design)) for design, fit in
                     laws.get("arms", {}).items()]  # fmt: skip


def isoflop_table(laws: dict) -> pd.DataFrame:
    rows = []
    for design, iso in laws["isoflop"].items():
        for m in iso["minima"]:
            found = m["n_opt"] is not None
            rows.append({"design": design, "budget C": si(m["compute"], "FLOP"), "runs": m["n_runs"],
                         "N_opt (active params)": si(m["n_opt"]) if found else "-",
                         "D_opt (tokens)": si(m["tokens_opt"]) if found else "-",
                         "note": "" if found else m["why"]})  # fmt: skip
    return pd.DataFrame(rows)


def exponent_table(laws: dict) -> pd.DataFrame:
    fmt = lambda v: f"{v:.3f}"  # noqa: E731
    return pd.DataFrame(
        [{"design": d, "a in N_opt ∝ C^a": fmt_estimate(iso["a"], fmt), "b in D_opt ∝ C^b": fmt_estimate(iso["b"], fmt)}
         for d, iso in laws["isoflop"].items()]
    )  # fmt: skip


def leverage_table(laws: dict) -> pd.DataFrame:
    c_max = max(laws["budgets"])
    fmt = lambda v: f"{v:.2f}×"  # noqa: E731
    return pd.DataFrame(
        [{"MoE design": lev.get("design", f"moe_g{lev['G']}"), "compute C": si(lev["compute"], "FLOP"),
          "where": "largest fitted budget" if lev["compute"] == c_max else f"{lev['compute'] / c_max:.1f}× past it",
          "leverage [95 % interval]": fmt_estimate(lev["estimate"], fmt)}
         for lev in laws["leverage"]]
    )  # fmt: skip


def runs_frame(runs: pd.DataFrame) -> pd.DataFrame:
    runs = runs.sort_values(["role", "design", "budget", "N"], kind="stable")
    return pd.DataFrame(
        {"role": runs["role"], "design": runs["design"], "budget C": [si(c, "FLOP") for c in runs["budget"]],
         "size": runs["size"], "N (active)": [si(n) for n in runs["N"]], "D (tokens)": [si(d) for d in runs["D"]],
         "tokens / param": [f"{d / n:.1f}" for d, n in runs[["D", "N"]].to_numpy()],
         "seed": runs["seed"], "val loss": [f"{v:.4f}" for v in runs["loss"]],
         "± eval SE": [f"{v:.4f}" for v in runs["se"]],
         "nats below unigram": [f"{u - v:.4f}" for u, v in runs[["unigram", "loss"]].to_numpy()]}
    )  # fmt: skip


def candidates_table(check: dict) -> pd.DataFrame:
    fmt = lambda v: f"{v:.4f}"  # noqa: E731
    return pd.DataFrame(
        [{"size": c["size"], "design": c["design"], "N (active)": si(c["N"]), "D (tokens)": si(c["D"]),
          "steps": c["steps"], "predicted loss [95 % interval]": fmt_estimate(c["predicted"], fmt)}
         for c in check["candidates"]]
    )  # fmt: skip


def check_table(check: dict) -> pd.DataFrame:
    """Predicted vs measured, one row per quantity (the pick, the prediction, each seed, the mean, the verdict)."""
    pick, m = check["pick"], check.get("measured")
    rows = [("compute C*", f"{si(check['compute'], 'FLOP')} ({check['ratio']:.1f}× the largest fitted budget)"),
            ("design", f"{pick['size']} {pick['design']}: N = {si(pick['N'])} active, D = {si(pick['D'])} tokens, "
                       f"{pick['steps']} steps ({check['why']})"),
            ("predicted loss [95 % interval]", fmt_estimate(pick["predicted"], lambda v: f"{v:.4f}"))]  # fmt: skip
    if m is None:
        rows.append(("measured", "not trained (the check ran with --predict off, or has not run yet)"))
        return pd.DataFrame(rows, columns=["", "value"])
    rows += [(f"measured, seed {s}", f"{v:.4f}") for s, v in zip(m["seeds"], m["losses"], strict=True)]
    ci = "" if m["ci"][0] is None else f" [{m['ci'][0]:.4f}, {m['ci'][1]:.4f}] (t, over seeds)"
    sd = "-" if m["sd"] is None else f"{m['sd']:.4f}"
    rows += [(f"measured mean of {len(m['losses'])} seed(s)", f"{m['mean']:.4f}{ci}"),
             ("seed-to-seed SD; eval SE of one run", f"{sd}; {m['eval_se']:.4f}")]  # fmt: skip
    if "diff" in m:
        rows += [("measured − predicted", f"{m['diff']:+.4f} nats ({m['rel']:+.2%})"),
                 ("seeds inside the 95 % interval", f"{m['seeds_inside']} of {len(m['losses'])}")]  # fmt: skip
    rows.append(("verdict", m["verdict"]))
    if m.get("signs"):
        rows.append(("what the runs say of the miss", "; ".join(m["signs"])))
    return pd.DataFrame(rows, columns=["", "value"])


INTRO = (
    "Every run below trained to its own compute budget C with its own complete schedule (warmup, then cosine "
    "decay ending at its last step), so each is a point of a law, not a point on another run's curve. N = "
    "active parameters, D = tokens trained = C / (analytic train FLOPs per token), loss = the headline "
    "mask-only validation loss. Intervals: 95 % percentiles of refits on runs resampled within each budget. "
    "A parameter whose interval reaches a bound, spans more than 10× (a scale) or is wider than 0.5 (an "
    "exponent) is **not identified**, and no quantity that depends on it is given a number."
)


def sections(laws: dict, figs: dict[str, Figure]) -> list[Section]:
    """The "Scaling laws" section: design, IsoFLOP profiles, L(N, D), MoE, and the predictive check."""
    subs = [design_section(laws), isoflop_section(laws, figs), approach3_section(laws, figs), moe_section(laws, figs)]
    subs.append(check_section(laws, figs))
    return [Section("Scaling laws", [Text(INTRO)], [s for s in subs if s is not None])]


def isoflop_section(laws: dict, figs: dict) -> Section:
    blocks = [figs["isoflop.png"], Text(
        "Approach 2: a parabola in log N per budget; its minimum is N_opt(C) when it lies inside the sampled sizes. "
        "N_opt ∝ C^a and D_opt ∝ C^b are fitted to the minima against each budget's nominal compute."
    ), Table(exponent_table(laws), caption="IsoFLOP exponents"), Table(isoflop_table(laws), caption="minima per budget",
                                                                        collapsed=True)]  # fmt: skip
    return Section("IsoFLOP profiles (approach 2)", blocks)


def approach3_section(laws: dict, figs: dict) -> Section | None:
    if "dense" not in laws:
        return None
    blocks = [Table(law_table(laws["dense"]), caption=law_caption(laws["dense"])), figs["n_opt.png"],
              figs["law_fit.png"]]  # fmt: skip
    return Section("Dense L(N, D) (approach 3) and N_opt(C)", blocks)


def moe_section(laws: dict, figs: dict) -> Section | None:
    if "moe" not in laws:
        return None
    blocks = [Table(law_table(laws["moe"]), caption=law_caption(laws["moe"]))]
    if arms := laws.get("arms"):
        blocks.append(Text(
            "At one granularity Krajewski's law is Chinchilla's with A_G = A + g/G^γ. Each MoE design's own L(N, D), "
            "fitted on its arm alone, needs neither γ nor three granularities: its predictions, compute-optimal loss "
            "and leverage below come from it."
        ))  # fmt: skip
        blocks += [Table(law_table(fit), caption=law_caption(fit, design)) for design, fit in arms.items()]
    if laws["leverage"]:
        blocks += [figs["dense_vs_moe.png"], Table(leverage_table(laws), caption="efficiency leverage"), Text(
            "Efficiency leverage: the dense compute whose compute-optimal loss equals the MoE design's compute-optimal "
            "loss at C, over C (above 1: the MoE design is worth more dense compute than it costs)."
        )]  # fmt: skip
    return Section("MoE: Krajewski's granular law and the efficiency leverage", blocks)


def check_section(laws: dict, figs: dict) -> Section:
    check = laws["check"]
    blocks: list = [Text(f"**Extrapolation warning:** {check['warning']}.", callout=True)] if "warning" in check else []
    if check["pick"] is None:
        blocks.append(Text(f"No design picked at {si(check['compute'], 'FLOP')}: {check['why']}. Nothing was trained."))
    else:
        blocks += [Table(check_table(check), caption="predicted vs measured"), figs["check.png"]]
        blocks.append(Text(
            f"Goal: the measured mean inside the prediction's 95 % interval and within {TOLERANCE:.0%} of it. The "
            "interval is the law's uncertainty (refits over runs); the seeds' spread is the run's own noise, and the "
            "combined SDs in the verdict divide the miss by both."
        ))  # fmt: skip
    blocks.append(Bullets(optimum_lines(check)))
    blocks.append(Table(candidates_table(check), caption="every candidate at C*", collapsed=True))
    return Section(f"Predictive check at {si(check['compute'], 'FLOP')}", blocks)


def optimum_lines(check: dict) -> list[str]:
    lines = []
    for key, what in (("dense_optimum", "approach 3"), ("dense_isoflop", "approach 2")):
        if key in check:
            opt = check[key]
            lines.append(f"**Dense N_opt at C* ({what}):** {fmt_estimate(opt['n_params'], si)} active parameters, "
                         f"D_opt {fmt_estimate(opt['tokens'], si)} tokens")  # fmt: skip
    return lines


def design_section(laws: dict) -> Section:
    runs = pd.DataFrame(laws["runs"])
    grid = runs[runs["role"] == "grid"]
    items = [
        f"**Budgets:** {', '.join(si(c, 'FLOP') for c in laws['budgets'])} (training FLOPs, analytic)",
        f"**Sizes:** {', '.join(laws['sizes'])}: N = {si(grid['N'].min())} to {si(grid['N'].max())} active parameters",
        f"**Designs:** {', '.join(laws['designs'])} (moe_g<G>: G× as many experts, 1/G the hidden size, top-k × G: "
        "the dense model's active FFN compute)",
        f"**FLOPs per active parameter per token:** {laws['flops_per_param_token']:.2f} on average (6 for the "
        "matmuls of the weights, plus attention over the window and the LM head); the closed-form optima use it",
    ]
    table = Table(runs_frame(runs), caption=f"every run ({len(runs)})", collapsed=True)
    return Section("Design", [Bullets(items), table])


def console_text(laws: dict) -> str:
    """The laws and the check as Markdown for the console (the report has the same tables and the figures)."""
    blocks: list = law_tables(laws)
    blocks.append(Table(exponent_table(laws), caption="IsoFLOP exponents (approach 2)"))
    if laws["leverage"]:
        blocks.append(Table(leverage_table(laws), caption="efficiency leverage"))
    check = laws["check"]
    if "warning" in check:
        blocks.append(Text(f"**Extrapolation warning:** {check['warning']}."))
    if check["pick"] is None:
        blocks.append(Text(f"No design picked at {si(check['compute'], 'FLOP')}: {check['why']}."))
    else:
        blocks.append(Table(check_table(check), caption="the predictive check"))
    return to_markdown(Document("scaling laws", [Section("Scaling laws", blocks)]))
