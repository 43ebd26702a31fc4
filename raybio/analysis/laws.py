"""Parametric loss laws, each a sum of power-law terms, evaluated in log space by log-sum-exp.

Every law here is L = Σ_k C_k · Π x_f^(−s_j): a floor E plus power-law terms. In log space a term is
*linear* in its parameters (log C_k and the exponents s_j), and log L̂ is the log-sum-exp of the terms
(Hoffmann et al. 2022, appendix D.2). One design tensor therefore gives every law its prediction and its
analytic gradient.

Features enter centred, log(x / x0) with x0 the runs' geometric mean, so a fitted log-coefficient is the
term's value in nats at the reference point: well scaled for the optimiser, and the quantity the runs
determine. `public` converts to the papers' units, A = exp(c)·x0^s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Term:
    """coef · Π feature^(−exponent) over `powers`; no powers is the floor."""

    coef: str
    powers: tuple[tuple[str, str], ...] = ()  # (exponent name, feature name)


@dataclass(frozen=True)
class Law:
    """A named sum of terms. Parameter vector θ = [log coefficients at the reference, exponents]."""

    name: str
    formula: str
    features: tuple[str, ...]
    terms: tuple[Term, ...]

    @property
    def coefs(self) -> tuple[str, ...]:
        return tuple(t.coef for t in self.terms)

    @property
    def exponents(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s for t in self.terms for s, _ in t.powers))

    @property
    def names(self) -> tuple[str, ...]:
        return self.coefs + self.exponents

    def design(self, logx_NF: np.ndarray) -> np.ndarray:
        """M_KNP with term_k = M_k @ θ for centred log features logx_NF (columns in `features` order)."""
        n, p = len(logx_NF), len(self.names)
        m_KNP = np.zeros((len(self.terms), n, p))
        for k, term in enumerate(self.terms):
            m_KNP[k, :, k] = 1.0
            for s, f in term.powers:
                m_KNP[k, :, self.names.index(s)] -= logx_NF[:, self.features.index(f)]
        return m_KNP

    def public(self, theta_BP: np.ndarray, x0: dict[str, float]) -> dict[str, np.ndarray]:
        """Parameters in the papers' units (coefficient at x = 1), one value per row of θ."""
        theta_BP = np.atleast_2d(theta_BP)
        out = {}
        for k, term in enumerate(self.terms):
            log_c = theta_BP[:, k] + sum(theta_BP[:, self.names.index(s)] * np.log(x0[f]) for s, f in term.powers)
            out[term.coef] = np.exp(log_c)
        for s in self.exponents:
            out[s] = theta_BP[:, self.names.index(s)]
        return out


def log_predict(theta_P: np.ndarray, m_KNP: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log L̂_N, term weights w_KN = softmax over terms), the weights being d log L̂ / d term."""
    t_KN = m_KNP @ theta_P
    # Written out rather than scipy.special.logsumexp, whose array-API dispatch cost ~10× the arithmetic
    # here and was 60 % of a fit's time (this runs ~10⁵ times per bootstrap).
    top_N = t_KN.max(axis=0)
    e_KN = np.exp(t_KN - top_N)
    total_N = e_KN.sum(axis=0)
    return top_N + np.log(total_N), e_KN / total_N


def centred_logs(law: Law, features: dict[str, np.ndarray], x0: dict[str, float]) -> np.ndarray:
    """logx_NF = log(x / x0) in the law's feature order; names the missing feature."""
    missing = [f for f in law.features if f not in features]
    if missing:
        raise ValueError(f"{law.name} needs features {law.features}; missing {missing}")
    cols = [np.atleast_1d(np.log(np.asarray(features[f], float) / x0[f])) for f in law.features]
    return np.stack(np.broadcast_arrays(*cols), axis=1)


CHINCHILLA = Law(
    name="chinchilla",
    formula="L(N, D) = E + A/N^α + B/D^β",
    features=("N", "D"),
    terms=(Term("E"), Term("A", (("alpha", "N"),)), Term("B", (("beta", "D"),))),
)

# Krajewski et al. 2024, at the fixed expansion rate and routing of one design family. Their (c, a, b)
# are (E, A, B) here; N is the active parameter count (at fixed expansion the total is a constant
# multiple of it, which A and g absorb); G = dense FFN hidden / expert hidden.
GRANULAR_MOE = Law(
    name="granular_moe",
    formula="L(N, D, G) = E + (g/G^γ + A)/N^α + B/D^β",
    features=("N", "D", "G"),
    terms=(
        Term("E"),
        Term("A", (("alpha", "N"),)),
        Term("g", (("gamma", "G"), ("alpha", "N"))),
        Term("B", (("beta", "D"),)),
    ),
)


def chinchilla_form(law: Law, params: dict[str, np.ndarray], fixed: dict[str, float]) -> tuple[np.ndarray, ...]:
    """(E, A, α, B, β) of a law with every feature but N and D fixed: N-terms and D-terms summed.

    Krajewski's law at granularity G is Chinchilla's with A_eff = A + g·G^(−γ)."""
    e, a, b, alpha, beta = 0.0, 0.0, 0.0, None, None
    for term in law.terms:
        value = params[term.coef]
        on = {f: s for s, f in term.powers}
        for f, s in on.items():
            if f not in ("N", "D"):
                if f not in fixed:
                    raise ValueError(f"{law.name}: pass {f}=… to fix the design whose optimum is wanted")
                value = value * float(fixed[f]) ** -params[s]
        if "N" in on and "D" in on:
            raise ValueError(f"{law.name}: a term in both N and D has no closed-form optimum")
        if "N" in on:
            a, alpha = a + value, params[on["N"]]
        elif "D" in on:
            b, beta = b + value, params[on["D"]]
        else:
            e = e + value
    return e, a, alpha, b, beta


def compute_optimum(e, a, alpha, b, beta, compute: float, flops_per_param_token: float = 6.0):
    """(N_opt, D_opt, L*) minimising E + A/N^α + B/D^β subject to C = k·N·D (Hoffmann et al. eq. 4).

    At the optimum α·A/N^α = β·B/D^β, so L* = E + (1 + α/β)·A/N_opt^α. Broadcasts over parameter arrays;
    a zero exponent or coefficient gives inf or NaN, not an error (such a fit is not identified anyway)."""
    e, a, alpha, b, beta = (np.asarray(v, float) for v in (e, a, alpha, b, beta))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        g = (alpha * a / (beta * b)) ** (1 / (alpha + beta))
        n_opt = g * (compute / flops_per_param_token) ** (beta / (alpha + beta))
        d_opt = compute / (flops_per_param_token * n_opt)
        loss = e + (1 + alpha / beta) * a * n_opt**-alpha
    return n_opt, d_opt, loss


def compute_for_loss(e, a, alpha, b, beta, target, c_ref: float, flops_per_param_token: float = 6.0):
    """The compute at which the compute-optimal loss E + K·C^(−αβ/(α+β)) reaches `target` (inf at or below E).

    Solved relative to a nearby compute c_ref, so the power stays in floating-point range."""
    _, _, l_ref = compute_optimum(e, a, alpha, b, beta, c_ref, flops_per_param_token)
    kappa = alpha * beta / (alpha + beta)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        c = c_ref * ((l_ref - e) / (target - e)) ** (1 / kappa)
    return np.where(target > e, c, np.inf)
