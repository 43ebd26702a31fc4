"""The `scaling` study's figures, each with its uncertainty: IsoFLOP profiles and their minima, N_opt(C), the
laws' fit to the runs, dense vs MoE compute-optimal loss with the leverage, and the predictive check.

They draw the study's answer as it stands, its runs included (`laws["runs"]`): every curve, band and fitted
value was evaluated from the fits by scaling_study (`laws["curves"]`); nothing is fitted or evaluated here.
A law whose parameters are not identified is drawn as in-sample fit at most, never as a curve beyond the runs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from raybio.analysis.document import Figure
from raybio.analysis.report_plots import Z95, log_axis, plt, png
from raybio.units import si


def draw(laws: dict) -> dict[str, Figure]:
    """The study's figures by file name, from its answer (`laws["runs"]`: the runs the laws were fitted to)."""
    runs = pd.DataFrame(laws["runs"])
    figs = [
        Figure("isoflop.png", isoflop_plot(runs, laws), "IsoFLOP profiles: loss vs N per budget, parabola minima"),
        Figure("n_opt.png", n_opt_plot(laws), "compute-optimal N vs compute"),
        Figure("law_fit.png", law_fit_plot(laws), "the laws' fit to the runs"),
        Figure("dense_vs_moe.png", dense_vs_moe_plot(runs, laws), "dense vs MoE compute-optimal loss"),
    ]
    if laws["check"]["pick"] is not None:
        figs.append(Figure("check.png", check_plot(runs, laws), "the predictive check"))
    return {f.name: f for f in figs}


def budget_colors(laws: dict) -> dict[float, tuple]:
    budgets = laws["budgets"]
    return dict(zip(budgets, plt.cm.viridis(np.linspace(0.05, 0.85, len(budgets))), strict=True))


def draw_band(ax, compute: list[float], band: dict, label: str, **style) -> None:
    """A curve over compute and its 95 % band (the band in the curve's colour, `alpha` light)."""
    alpha = style.pop("alpha")
    ax.plot(compute, band["value"], label=label, **style)
    ax.fill_between(compute, band["low"], band["high"], color=style["color"], alpha=alpha)


def isoflop_plot(runs: pd.DataFrame, laws: dict) -> bytes:
    """One panel per design: loss vs N per budget (95 % eval bars), each budget's parabola, its minimum (star)."""
    designs, colors = laws["designs"], budget_colors(laws)
    grid = runs[runs["role"] == "grid"]
    fig, axs = plt.subplots(1, len(designs), figsize=(3.9 * len(designs) + 1, 3.9), sharey=True, squeeze=False)
    for ax, design in zip(axs[0], designs, strict=True):
        iso = laws["isoflop"][design]
        for m, curve in zip(iso["minima"], laws["curves"]["parabolas"][design], strict=True):
            color = colors[m["compute"]]
            g = grid[(grid["design"] == design) & np.isclose(grid["budget"], m["compute"])].sort_values("N")
            ax.errorbar(g["N"], g["loss"], yerr=Z95 * g["se"], fmt="o", color=color, ms=4, capsize=2,
                        label=si(m["compute"], "FLOP"))  # fmt: skip
            if curve["N"] is not None:
                ax.plot(curve["N"], curve["loss"], color=color, lw=1)
            if curve["minimum"] is not None:
                ax.plot(*curve["minimum"], "*", ms=13, color=color, mec="k")
        a = iso["a"]
        exponent = f"a = {a['value']:.2f} [{a['low']:.2f}, {a['high']:.2f}]" if a["identified"] else "a not identified"
        ax.set(title=f"{design}: {exponent}", xlabel="N, active parameters")
        log_axis(ax, "x")
        ax.grid(alpha=0.3, which="both")
    axs[0, 0].set_ylabel("validation loss, mask-only (nats)")
    axs[0, -1].legend(title="budget C", fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.suptitle("IsoFLOP profiles: each point a run trained to its budget; stars: parabola minima (approach 2)")
    fig.tight_layout()
    return png(fig)


def n_opt_plot(laws: dict) -> bytes:
    """N_opt vs C: the IsoFLOP minima per design, approach 2's power law and approach 3's optimum (dense) with
    95 % bands, the extrapolated region shaded, the check's pick marked."""
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    curves = laws["curves"]
    cs = curves["compute"]
    for i, (design, iso) in enumerate(laws["isoflop"].items()):
        found = [m for m in iso["minima"] if m["n_opt"] is not None]
        ax.plot([m["compute"] for m in found], [m["n_opt"] for m in found], "os^D"[i % 4], color=f"C{i}", ms=7,
                label=f"{design}: IsoFLOP minima")  # fmt: skip
    if curves.get("n_opt_isoflop", {}).get("identified"):
        draw_band(ax, cs, curves["n_opt_isoflop"], "dense: approach 2 power law", color="C0", lw=1.2, alpha=0.15)
    if (opt := curves.get("n_opt")) is not None:
        if opt["identified"]:
            draw_band(ax, cs, opt, "dense: approach 3 optimum", ls="--", color="k", lw=1.2, alpha=0.08)
        else:
            ax.text(0.02, 0.02, f"approach 3 N_opt not identified: {opt['why']}", transform=ax.transAxes, fontsize=7,
                    wrap=True)  # fmt: skip
    mark_extrapolation(ax, laws)
    pick = laws["check"]["pick"]
    if pick is not None:
        label = f"check: {pick['size']} {pick['design']}"
        ax.plot(laws["check"]["compute"], pick["N"], "X", ms=11, color="C3", label=label)
    log_axis(ax, "x", "FLOP")
    log_axis(ax, "y")
    ax.set(xlabel="compute C (training FLOPs)", ylabel="N_opt, active parameters",
           title="compute-optimal model size (bands: 95 % over refits)")  # fmt: skip
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3, which="both")
    return png(fig)


def mark_extrapolation(ax, laws: dict) -> None:
    c_max, c_star = max(laws["budgets"]), laws["check"]["compute"]
    ax.axvspan(c_max, laws["curves"]["compute"][-1], color="0.85", alpha=0.5, lw=0)
    ax.axvline(c_star, color="C3", ls=":", lw=1)
    ax.text(c_star, 0.98, " C*", color="C3", transform=ax.get_xaxis_transform(), va="top", fontsize=8)


def law_fit_plot(laws: dict) -> bytes:
    """Measured vs fitted loss for each law's runs, coloured by budget (in-sample: how well the form fits)."""
    keys = list(laws["curves"]["fitted"])
    fig, axs = plt.subplots(1, max(1, len(keys)), figsize=(5 * max(1, len(keys)), 4.2), squeeze=False)
    colors = budget_colors(laws)
    for ax, key in zip(axs[0], keys, strict=False):
        runs = laws["curves"]["fitted"][key]
        budget, fitted, loss, se = (np.asarray(runs[k]) for k in ("budget", "fitted", "loss", "se"))
        for c in laws["budgets"]:
            sel = np.isclose(budget, c)
            ax.errorbar(fitted[sel], loss[sel], yerr=Z95 * se[sel], fmt="o", ms=4, capsize=2, color=colors[c],
                        label=si(c, "FLOP"))  # fmt: skip
        lo, hi = min(fitted.min(), loss.min()), max(fitted.max(), loss.max())
        ax.plot([lo, hi], [lo, hi], color="0.4", lw=1)
        unidentified = runs["unidentified"]
        note = f"not identified: {', '.join(unidentified)}" if unidentified else "all parameters identified"
        ax.set(xlabel="fitted loss (nats)", ylabel="measured loss (nats)",
               title=f"{laws[key]['formula']}\nRMS residual {runs['rms']:.4f} nats; {note}")  # fmt: skip
        ax.title.set_fontsize(8)
        ax.grid(alpha=0.3)
        ax.legend(title="budget", fontsize=7)
    return png(fig)


def dense_vs_moe_plot(runs: pd.DataFrame, laws: dict) -> bytes:
    """Compute-optimal loss vs C for dense and each MoE design (its own law, 95 % band), the best size per
    budget as measured (its seeds' mean), and the leverage at the largest budget and at C*."""
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    curves = laws["curves"]
    grid = runs[runs["role"] == "grid"]
    notes = []
    for i, design in enumerate(laws["designs"]):
        # Seeds averaged first: the best of every seed would pick the luckiest run, not the best size.
        best = grid[grid["design"] == design].groupby(["budget", "size"])["loss"].mean().groupby("budget").min()
        ax.plot(best.index, best.to_numpy(), "os^D"[i % 4], color=f"C{i}", ms=6,
                label=f"{design}: best size per budget (mean over seeds)")  # fmt: skip
        optimum = curves["optimal_loss"].get(design)
        if optimum is not None and optimum["identified"]:
            draw_band(ax, curves["compute"], optimum, f"{design}: law's optimum", color=f"C{i}", lw=1.2, alpha=0.12)
        elif optimum is not None:
            notes.append(f"{design}: optimum not identified")
    for lev in laws["leverage"]:
        e = lev["estimate"]
        value = f"{e['value']:.2f}× [{e['low']:.2f}, {e['high']:.2f}]" if e["identified"] else "not identified"
        notes.append(f"leverage {lev.get('design', lev['G'])} at {si(lev['compute'], 'FLOP')}: {value}")
    ax.text(0.99, 0.99, "\n".join(notes), transform=ax.transAxes, ha="right", va="top", fontsize=7,
            bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})  # fmt: skip
    mark_extrapolation(ax, laws)
    log_axis(ax, "x", "FLOP")
    ax.set(xlabel="compute C (training FLOPs)", ylabel="validation loss (nats)",
           title="dense vs MoE at equal active compute (bands: 95 % over refits)")  # fmt: skip
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(alpha=0.3, which="both")
    return png(fig)


def check_plot(runs: pd.DataFrame, laws: dict) -> bytes:
    """The picked model's grid runs and its law's loss vs compute (95 % band), the prediction at C* with its 95 %
    interval and ±1 % of it, and the measured seeds with their mean and t-interval."""
    check, fig = laws["check"], plt.figure(figsize=(7.5, 4.6))
    ax, pick, c_star = fig.add_subplot(), check["pick"], check["compute"]
    same = runs[(runs["role"] == "grid") & (runs["size"] == pick["size"]) & (runs["design"] == pick["design"])]
    ax.errorbar(same["budget"], same["loss"], yerr=Z95 * same["se"], fmt="o", color="C0", capsize=3,
                label=f"{pick['size']} {pick['design']}: grid runs")  # fmt: skip
    pred = pick["predicted"]
    if laws["curves"]["check"] is not None:
        label = "its law: L(N, D = C / FLOPs per token)"
        draw_band(ax, laws["curves"]["compute"], laws["curves"]["check"], label, color="C0", lw=1, alpha=0.12)
        v = pred["value"]
        ax.errorbar([c_star], [v], yerr=[[v - pred["low"]], [pred["high"] - v]], fmt="D", mfc="white", color="C3",
                    capsize=5, ms=8, label="prediction, 95 % interval")  # fmt: skip
        ax.fill_between([c_star / 1.15, c_star * 1.15], v * 0.99, v * 1.01, color="C3", alpha=0.15, label="±1 %")
    m = check.get("measured")
    if m is not None:
        jitter = c_star * np.exp(np.linspace(-0.04, 0.04, len(m["losses"])))
        ax.plot(jitter, m["losses"], "o", color="k", ms=4, alpha=0.6, label=f"measured, {len(m['losses'])} seed(s)")
        if m["ci"][0] is not None:
            ax.errorbar([c_star * 1.08], [m["mean"]], yerr=[[m["mean"] - m["ci"][0]], [m["ci"][1] - m["mean"]]],
                        fmt="s", color="k", capsize=4, label="measured mean, 95 % t-interval")  # fmt: skip
    mark_extrapolation(ax, laws)
    log_axis(ax, "x", "FLOP")
    ax.set(xlabel="compute C (training FLOPs)", ylabel="validation loss (nats)",
           title=f"predicted before training vs measured at C* = {si(c_star, 'FLOP')}")  # fmt: skip
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(alpha=0.3, which="both")
    return png(fig)
