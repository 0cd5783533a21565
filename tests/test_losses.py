"""Latent heads, KL terms, belief vector, InfoNCE and the EMA update, against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from agents.parts.contrastive import ema_update, euclidean, info_nce
from agents.parts.latent import (
    Mixture,
    MixtureHead,
    belief_dim,
    belief_vector,
    categorical_kl,
    gaussian_kl,
    mixture_kl_terms,
    standard_prior,
)

torch.set_num_threads(1)


def t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


# -- InfoNCE ---------------------------------------------------------------------------------------------
def test_info_nce_euclidean_matches_hand_computation() -> None:
    q = [[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]]
    k = [[0.0, 1.0], [1.0, 1.0], [0.5, 2.0]]

    def sim(a, b):
        return -sum((x - y) ** 2 for x, y in zip(a, b, strict=True))

    terms = []
    for i in range(3):
        logits = [sim(q[i], k[j]) for j in range(3)]
        log_z = math.log(sum(math.exp(v) for v in logits))
        terms.append(-(logits[i] - log_z))
    expected = sum(terms) / 3
    got = info_nce(t(q), t(k), "euclidean")
    assert got.item() == pytest.approx(expected, abs=1e-9)
    # row 0 by hand, written out: sims -1, -2, -(0.25 + 4)
    assert terms[0] == pytest.approx(1 + math.log(math.exp(-1) + math.exp(-2) + math.exp(-4.25)), abs=1e-12)
    # the similarity callable gives the same
    assert info_nce(t(q), t(k), euclidean).item() == pytest.approx(expected, abs=1e-9)


def test_info_nce_prefers_matched_pairs() -> None:
    q = t([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    matched = info_nce(q, q.clone())
    shuffled = info_nce(q, q[[1, 2, 0]])
    assert matched.item() < 0.01 < shuffled.item()


def test_euclidean_similarity_is_negative_squared_distance() -> None:
    q, k = t([[1.0, 2.0]]), t([[4.0, 6.0], [1.0, 2.0]])
    assert euclidean(q, k).tolist() == [[-25.0, 0.0]]


def test_info_nce_gradient_matches_explicit_formula_even_for_identical_pairs() -> None:
    torch.manual_seed(0)
    q = torch.randn(5, 3, dtype=torch.float64)
    k = torch.randn(5, 3, dtype=torch.float64)
    k[2] = q[2]  # a zero distance: the gradient of ||.|| is singular there, that of ||.||^2 is not
    q1, k1 = q.clone().requires_grad_(True), k.clone().requires_grad_(True)
    info_nce(q1, k1).backward()
    q2, k2 = q.clone().requires_grad_(True), k.clone().requires_grad_(True)
    logits = -((q2[:, None, :] - k2[None, :, :]) ** 2).sum(-1)
    (-(logits.diagonal() - logits.logsumexp(1)).mean()).backward()
    assert torch.allclose(q1.grad, q2.grad, atol=1e-9) and torch.allclose(k1.grad, k2.grad, atol=1e-9)


# -- KL terms --------------------------------------------------------------------------------------------
def test_gaussian_kl_hand_value() -> None:
    # KL(N(1, 0.5^2) || N(0, 2^2)) = log(2/0.5) + (0.25 + 1) / (2 * 4) - 1/2
    one_d = math.log(4.0) + 1.25 / 8 - 0.5
    # KL(N(0, 1) || N(3, 1)) = 9 / 2
    got = gaussian_kl(t([1.0, 0.0]), t([math.log(0.5), 0.0]), t([0.0, 3.0]), t([math.log(2.0), 0.0]))
    assert got.item() == pytest.approx(one_d + 4.5, abs=1e-12)  # summed over the last axis


def test_gaussian_kl_of_identical_is_zero_and_batched() -> None:
    mu, logstd = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    kl = gaussian_kl(mu, logstd, mu, logstd)
    assert kl.shape == (4,)
    assert torch.allclose(kl, torch.zeros(4, dtype=torch.float64), atol=1e-12)
    assert (gaussian_kl(mu, logstd, mu + 1, logstd) > 0).all()


def test_categorical_kl_hand_value() -> None:
    q, p = [0.7, 0.2, 0.1], [0.2, 0.3, 0.5]
    expected = sum(a * math.log(a / b) for a, b in zip(q, p, strict=True))
    got = categorical_kl(t(q).log(), t(p).log() + 5.0)  # logits: any constant shift is the same distribution
    assert got.item() == pytest.approx(expected, abs=1e-12)
    assert categorical_kl(t(q).log(), t(q).log() - 1.0).item() == pytest.approx(0.0, abs=1e-12)


def test_mixture_kl_terms_hand_value() -> None:
    # K = 2 components, D = 1: q(y) = (0.25, 0.75); q(z|0) = N(0, 1), q(z|1) = N(2, 1)
    # p(y) = (0.5, 0.5); p(z|0) = N(1, 1), p(z|1) = N(2, e^2)
    q = Mixture(t([0.25, 0.75]).log(), t([[0.0], [2.0]]), t([[0.0], [0.0]]))
    p = Mixture(t([0.0, 0.0]), t([[1.0], [2.0]]), t([[0.0], [1.0]]))
    kl0 = 0.5  # (0 - 1)^2 / 2
    kl1 = 1.0 + 1.0 / (2 * math.e**2) - 0.5  # log(e/1) + 1 / (2 e^2) - 1/2
    kl_y = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    kl_z, kl_cat = mixture_kl_terms(q, p)
    assert kl_z.item() == pytest.approx(0.25 * kl0 + 0.75 * kl1, abs=1e-12)
    assert kl_cat.item() == pytest.approx(kl_y, abs=1e-12)
    z0, y0 = mixture_kl_terms(q, q)
    assert z0.item() == pytest.approx(0.0, abs=1e-12) and y0.item() == pytest.approx(0.0, abs=1e-12)


def test_standard_prior_is_uniform_and_unit_gaussian() -> None:
    m = MixtureHead(6, 3, 2)(torch.randn(5, 6))
    p = standard_prior(m)
    assert torch.allclose(p.probs, torch.full((5, 3), 1 / 3))
    assert p.mu.shape == m.mu.shape and (p.mu == 0).all() and (p.logstd == 0).all()


# -- mixture selection and the belief --------------------------------------------------------------------
def _mixture() -> Mixture:
    # batch of 2 x time 2, K = 3, D = 2; argmax components: [[2, 0], [1, 1]]
    logits = torch.tensor([[[0.0, 1.0, 3.0], [5.0, 1.0, 2.0]], [[0.0, 9.0, 3.0], [-1.0, 0.0, -2.0]]])
    mu = torch.arange(2 * 2 * 3 * 2, dtype=torch.float32).reshape(2, 2, 3, 2)
    logstd = -mu / 10
    return Mixture(logits, mu, logstd)


def test_selected_picks_argmax_component() -> None:
    m = _mixture()
    mu, std = m.selected()
    assert mu.shape == (2, 2, 2) and std.shape == (2, 2, 2)
    for b, k_row in enumerate([[2, 0], [1, 1]]):
        for s, k in enumerate(k_row):
            assert torch.equal(mu[b, s], m.mu[b, s, k])
            assert torch.allclose(std[b, s], m.logstd[b, s, k].exp())


def test_belief_vector_layout() -> None:
    m = _mixture()
    mu, std = m.selected()
    b = belief_vector(m, include_probs=False)
    assert b.shape == (2, 2, belief_dim(2, 3, False)) == (2, 2, 4)
    assert torch.equal(b[..., :2], mu) and torch.equal(b[..., 2:4], std)
    bp = belief_vector(m, include_probs=True)
    assert bp.shape == (2, 2, belief_dim(2, 3, True)) == (2, 2, 7)
    assert torch.equal(bp[..., :4], b)
    assert torch.allclose(bp[..., 4:], m.logits.softmax(-1))
    # std of the selected component, e.g. batch 0 time 0 picks k = 2: mu[0,0,2] = (4, 5)
    assert bp[0, 0, :4].tolist() == pytest.approx([4.0, 5.0, math.exp(-0.4), math.exp(-0.5)])


def test_mixture_where_takes_other_where_masked() -> None:
    m = _mixture()
    p = standard_prior(m)
    mask = torch.tensor([[True, False], [False, True]])
    w = m.where(mask, p)
    assert torch.equal(w.mu[0, 0], p.mu[0, 0]) and torch.equal(w.mu[0, 1], m.mu[0, 1])
    assert torch.equal(w.logits[1, 1], p.logits[1, 1]) and torch.equal(w.logstd[1, 0], m.logstd[1, 0])


def test_mixture_head_shapes_and_logstd_clamp() -> None:
    head = MixtureHead(4, 3, 2)
    with torch.no_grad():
        head.gauss.bias.fill_(100.0)
    m = head(torch.randn(7, 5, 4))
    assert m.logits.shape == (7, 5, 3) and m.mu.shape == (7, 5, 3, 2) and m.logstd.shape == (7, 5, 3, 2)
    assert (m.logstd <= 2.0).all()


# -- EMA --------------------------------------------------------------------------------------------------
def test_ema_update_is_convex_combination() -> None:
    torch.manual_seed(0)
    target, source = nn.Linear(3, 2), nn.Linear(3, 2)
    before = [p.detach().clone() for p in target.parameters()]
    src = [p.detach().clone() for p in source.parameters()]
    ema_update(target, source, 0.1)
    for new, old, s in zip(target.parameters(), before, src, strict=True):
        assert torch.allclose(new, 0.9 * old + 0.1 * s, atol=1e-7)
    for p, s in zip(source.parameters(), src, strict=True):
        assert torch.equal(p, s)  # the source is untouched
    ema_update(target, source, 1.0)
    for new, s in zip(target.parameters(), src, strict=True):
        assert torch.allclose(new, s)


def test_widened_prior_adds_a_random_walk_variance_and_prices_a_jump_lower() -> None:
    prev = Mixture(torch.zeros(1, 1), torch.zeros(1, 1, 2), torch.full((1, 1, 2), math.log(0.05)))
    assert prev.widened(0.0) is prev
    wide = prev.widened(1.0)
    assert torch.allclose(wide.logstd.exp(), torch.full((1, 1, 2), math.sqrt(0.05**2 + 1)))
    assert torch.equal(wide.mu, prev.mu) and torch.equal(wide.logits, prev.logits)
    jump = Mixture(torch.zeros(1, 1), torch.ones(1, 1, 2), torch.full((1, 1, 2), math.log(0.05)))
    kl_tight = mixture_kl_terms(jump, prev)[0].item()
    kl_wide = mixture_kl_terms(jump, wide)[0].item()
    assert kl_tight == pytest.approx(2 * 0.5 / 0.05**2, rel=1e-4)  # 200 nats per unit move and dim / 2
    assert kl_wide < 8.0 < kl_tight  # what remains is mostly the std ratio: 2 log(1 / 0.05)
