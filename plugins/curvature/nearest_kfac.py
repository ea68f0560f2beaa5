"""``nearest-kfac``: the sum of Kronecker products nearest to the token-level Fisher.

The LLM Surgeon (van der Ouderaa et al., 2024, Sec. 3) replaces K-FAC's product of
separately averaged factors by the Kronecker product nearest in Frobenius norm to
``F = 1/N sum_n (g_n g_n^T) ⊗ (a_n a_n^T)``.

Derivation. Van Loan & Pitsianis (1993): with the rearrangement ``R`` that maps the
``(i, j)`` block of ``F`` to row ``i * d_out + j``, ``R(G ⊗ A) = vec(G) vec(A)^T``, so
``||F - sum_r G_r ⊗ A_r||_F = ||M - sum_r vec(G_r) vec(A_r)^T||_F`` with
``M = R(F) = 1/N sum_n vec(g_n g_n^T) vec(a_n a_n^T)^T``. The nearest rank-``R_K`` sum
is the truncated SVD of ``M``. ``M`` is never formed: its products with factors are
data passes,

    M vec(A)     = vec(1/N sum_n (a_n^T A a_n) g_n g_n^T)   (a "G step"),
    M^T vec(G)   = vec(1/N sum_n (g_n^T G g_n) a_n a_n^T)   (an "A step").

For ``R_K = 1`` alternating them is the power iteration of the brief:
``G <- normalise(M vec(A))``, ``A <- M^T vec(G)``, ``sigma = ||A||``, and ``sqrt(sigma)``
goes to each factor; every half step is the exact least-squares minimiser over one
factor, so the error never exceeds that of K-FAC, which is the starting point.

For ``R_K > 1`` the terms are deflated inside the same passes (orthogonal iteration):
each step computes ``M vec(A_r)`` for all ``r`` in one pass and then orthonormalises
the results by Gram-Schmidt in the Frobenius inner product,
``G_r <- G_r - sum_{s<r} <G_s, G_r> G_s``, which removes from term ``r`` the part
already explained by terms ``s < r`` (classic deflation subtracts
``sigma_s u_s v_s^T``; projecting the new iterate against ``u_s`` is the same for
converged ``u_s`` and stays correct before convergence). The last A step gives
``B = M^T U`` for the orthonormal ``U = [vec(G_1) ... vec(G_R)]``; ``U B^T`` is the
best approximation with left factors in ``span(U)`` and its SVD comes from the
``R x R`` eigendecomposition ``B^T B = P diag(sigma^2) P^T`` (Rayleigh-Ritz):
``G_r = sqrt(sigma_r) sum_s P_sr G_s`` and ``A_r = sum_s P_sr B_s / sqrt(sigma_r)``.
Gram-Schmidt keeps the first ``k`` directions independent of later ones, so the spans
are nested in ``R_K`` and the error decreases with ``R_K`` for any number of iterations.

Passes: one K-FAC pass to start (skipped when warm-starting from the previous shot),
then two per iteration.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

import attrs
import torch
from torch import Tensor, nn

from llm_surgeon.curvature import (
    Curvature,
    CurvatureEstimator,
    CurvatureResult,
    GradientConfig,
    KroneckerCurvature,
    ModuleTokens,
    PassOptions,
    PrunableModule,
    TokenObserver,
    check_finite,
    layer_dims,
    model_device,
    moment_means,
    pass_options,
    run_pass,
    statistics_device,
)
from llm_surgeon.dist import current
from llm_surgeon.plugins.curvature.kfac import KFAC_MOMENTS

logger = logging.getLogger(__name__)


@attrs.frozen
class NearestKFACConfig(GradientConfig):
    """Options of ``nearest-kfac`` (and those of :class:`GradientConfig`).

    Attributes:
        rank: number ``R_K`` of Kronecker terms.
        iterations: power iterations per shot (two passes each).
        warm_start: start from the previous shot's factors of the same module instead
            of a K-FAC pass.
    """

    rank: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    iterations: int = attrs.field(default=2, validator=attrs.validators.ge(1))
    warm_start: bool = True


class _PowerStep(TokenObserver):
    """Accumulates ``sum_n (x_n^T Q_r x_n) y_n y_n^T`` for every term ``r`` of every module.

    A G step has ``x = a``, ``y = g`` and ``Q_r = A_r``; an A step the reverse.
    """

    def __init__(self, q: list[Tensor], compute: torch.device, store: torch.device,
                 g_step: bool) -> None:
        self.q = [t.to(compute) for t in q]  # (R, d_x, d_x) per module
        self.store = store
        self.g_step = g_step
        self.sums: list[Tensor | None] = [None] * len(q)

    def backward(self, tokens: ModuleTokens) -> None:
        x, y = (tokens.a, tokens.g) if self.g_step else (tokens.g, tokens.a)
        q = self.q[tokens.index]
        i = tokens.index
        if self.sums[i] is None:
            self.sums[i] = torch.zeros(q.shape[0], y.shape[1], y.shape[1], dtype=y.dtype, device=self.store)
        total = self.sums[i]
        for r in range(q.shape[0]):
            w = ((x @ q[r]) * x).sum(dim=1)  # (T,): x_n^T Q_r x_n
            if total.device == y.device:
                total[r].addmm_((y * w[:, None]).T, y)
            else:
                total[r].add_(((y * w[:, None]).T @ y).to(self.store))

    def means(self, count: int, dims: list[int]) -> list[Tensor]:
        """The sums divided (in place) by ``count``: ``(R, d_y, d_y)`` per module (zeros if never seen).

        In a distributed job the ranks' sums are all-reduced first (each ``(d_y, d_y)``
        term is symmetric); ``count`` is the number of tokens over all ranks.
        """
        comm = current()
        out = []
        for q, total, d in zip(self.q, self.sums, dims, strict=True):
            if total is None:
                total = torch.zeros(q.shape[0], d, d, dtype=q.dtype, device=self.store)
            comm.all_reduce_(total, symmetric=True)
            out.append(total.div_(max(count, 1)))
        self.sums = []
        return out


def orthonormalise(x: Tensor, rel_tol: float = 1e-10) -> Tensor:
    """Gram-Schmidt (twice, for stability) of ``x: (R, d, d)`` in the Frobenius inner product.

    Directions whose norm falls below ``rel_tol`` times the largest input norm are set
    to zero (they carry nothing of ``M``).
    """
    out = x.clone()
    scale = float(x.flatten(1).norm(dim=1).max()) if x.numel() else 0.0
    for r in range(out.shape[0]):
        for _ in range(2):
            for s in range(r):
                out[r] -= (out[s] * out[r]).sum() * out[s]
        norm = float(out[r].norm())
        out[r] = out[r] / norm if norm > rel_tol * scale and norm > 0 else 0.0
    return out


def rayleigh_ritz(u: Tensor, b: Tensor, rel_tol: float = 1e-10) -> tuple[list[tuple[Tensor, Tensor]], list[float]]:
    """Best rank-``R`` terms of ``U B^T`` for orthonormal ``u: (R, d_out, d_out)`` and ``b = M^T U``.

    Returns:
        ``[(G_r, A_r), ...]`` sorted by decreasing singular value (terms below
        ``rel_tol`` of the first are dropped) and the singular values.
    """
    rank = b.shape[0]
    flat_b = b.flatten(1).double()
    gram = flat_b @ flat_b.T  # (R, R)
    eigvals, p = torch.linalg.eigh(gram)
    order = torch.argsort(eigvals, descending=True)
    sigma = eigvals[order].clamp_min(0.0).sqrt()
    p = p[:, order].to(u.dtype)
    terms: list[tuple[Tensor, Tensor]] = []
    sigmas: list[float] = []
    for r in range(rank):
        s = float(sigma[r])
        if s <= 0 or s <= rel_tol * float(sigma[0]):
            break
        g = torch.einsum("s,sij->ij", p[:, r], u) * s**0.5
        a = torch.einsum("s,sij->ij", p[:, r], b) / s**0.5
        if float(g.diagonal().sum()) < 0:
            g, a = -g, -a
        terms.append(((g + g.T) / 2, (a + a.T) / 2))
        sigmas.append(s)
    return terms, sigmas


class NearestKFACCurvature(CurvatureEstimator):
    """Nearest sum of ``R_K`` Kronecker products to the token-level Fisher, by power iteration."""

    def __init__(self, config: NearestKFACConfig | None = None) -> None:
        self.config = config or NearestKFACConfig()

    @property
    def uses_previous(self) -> bool:  # type: ignore[override]
        """A warm start from the previous shot's factors, unless ``warm_start`` is off."""
        return self.config.warm_start

    def _initial(self, model: nn.Module, modules: Sequence[PrunableModule],
                 batches: Sequence[Tensor], previous: Mapping[str, Curvature] | None,
                 options: PassOptions, device: torch.device, progress: bool):
        """Starting ``A`` factors ``(R, d_in, d_in)`` per module; K-FAC or warm start."""
        cfg = self.config
        starts: list[list[Tensor]] = [[] for _ in modules]
        cold = []
        for i, pm in enumerate(modules):
            d_out, d_in = layer_dims(pm)
            prev = previous.get(pm.name) if (previous and cfg.warm_start) else None
            if isinstance(prev, KroneckerCurvature) and (prev.d_out, prev.d_in) == (d_out, d_in):
                for _, a in prev.factors[: cfg.rank]:
                    a = torch.eye(d_in) if a is None else a
                    starts[i].append(a.to(device=device, dtype=options.dtype))
            else:
                cold.append(i)
        seconds_passes = seconds_algebra = 0.0
        passes = 0
        if cold:
            means, stats, seconds = moment_means(model, [modules[i] for i in cold], batches,
                                                 KFAC_MOMENTS, cfg, progress=progress, desc="K-FAC")
            for i, m in zip(cold, means, strict=True):
                starts[i].append(m["A"])
            seconds_passes, seconds_algebra, passes = stats.seconds, seconds, 1
        start = time.perf_counter()
        out = []
        for i, pm in enumerate(modules):
            d_in = layer_dims(pm)[1]
            gen = torch.Generator().manual_seed(cfg.seed * 7919 + i)
            while len(starts[i]) < cfg.rank:
                x = torch.randn(d_in, d_in, generator=gen, dtype=torch.float64)
                starts[i].append(((x + x.T) / 2).to(device=device, dtype=options.dtype))
            out.append(orthonormalise(torch.stack(starts[i])))
        return out, seconds_passes, seconds_algebra + time.perf_counter() - start, passes

    def estimate(
        self,
        model: nn.Module,
        modules: Sequence[PrunableModule],
        batches: Sequence[Tensor],
        *,
        previous: Mapping[str, Curvature] | None = None,
        progress: bool = True,
    ) -> CurvatureResult:
        """``rank`` Kronecker terms per module; ``info["sigma"]`` holds their singular values."""
        cfg = self.config
        options = pass_options(cfg)
        store = statistics_device(cfg, model)
        compute = model_device(model)
        v, seconds_passes, seconds_algebra, passes = self._initial(
            model, modules, batches, previous, options, store, progress
        )
        warm = passes == 0
        u: list[Tensor] = []
        b: list[Tensor] = []
        last_norms: list[float] = []
        change = 0.0
        for it in range(cfg.iterations):
            for g_step in (True, False):
                observer = _PowerStep(v if g_step else u, compute, store, g_step)
                stats = run_pass(model, modules, batches, observer, gradients=True, options=options,
                                 progress=progress,
                                 desc=f"nearest K-FAC {it + 1}/{cfg.iterations} {'G' if g_step else 'A'}")
                seconds_passes += stats.seconds
                passes += 1
                start = time.perf_counter()
                tokens = current().sum(stats.tokens, kind="statistics")
                sums = observer.means(tokens, [layer_dims(pm)[0 if g_step else 1] for pm in modules])
                observer = None
                for pm, t in zip(modules, sums, strict=True):
                    check_finite(pm.name, "nearest K-FAC statistics", t)
                if g_step:  # only U is needed from here on: free V and the last B early
                    u = [orthonormalise(t) for t in sums]
                    v, b = [], []
                else:
                    norms = [float(t[0].norm()) for t in sums]  # sigma_1 estimates
                    if last_norms:
                        change = max(abs(n - o) / max(n, 1e-300) for n, o in zip(norms, last_norms, strict=True))
                    last_norms = norms
                    b = sums
                    if it < cfg.iterations - 1:
                        v = [orthonormalise(t) for t in sums]
                seconds_algebra += time.perf_counter() - start
        start = time.perf_counter()
        curvatures, sigma = _terms(modules, u, b)
        seconds_algebra += time.perf_counter() - start
        logger.debug("nearest K-FAC: last relative change of sigma_1 %.3g", change)
        return CurvatureResult(
            curvatures=curvatures,
            seconds_passes=seconds_passes,
            seconds_algebra=seconds_algebra,
            passes=passes,
            info={"sigma": sigma, "warm_start": warm, "sigma_relative_change": change,
                  "rank": cfg.rank, "iterations": cfg.iterations},
        )


def _terms(modules: Sequence[PrunableModule], u: list[Tensor], b: list[Tensor]
           ) -> tuple[dict[str, Curvature], dict[str, list[float]]]:
    """Each module's Kronecker terms from its last power-iteration sums (Rayleigh-Ritz).

    Returns:
        Module name -> curvature, and module name -> singular values of its terms.
    """
    curvatures: dict[str, Curvature] = {}
    sigma: dict[str, list[float]] = {}
    for pm, ui, bi in zip(modules, u, b, strict=True):
        d_out, d_in = layer_dims(pm)
        terms, sig = rayleigh_ritz(ui, bi)
        if not terms:  # no signal at all (e.g. a dead layer): a zero curvature
            terms = [(torch.zeros_like(ui[0]), torch.zeros_like(bi[0]))]
        check_finite(pm.name, "nearest K-FAC factors", *(t for pair in terms for t in pair))
        curvatures[pm.name] = KroneckerCurvature(factors=tuple(terms), d_out=d_out, d_in=d_in,
                                                 info={"sigma": sig})
        sigma[pm.name] = sig
    return curvatures, sigma
