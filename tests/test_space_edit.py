"""The Harmful Space and the step-1 edits, on small tensors, against their defining properties."""

import pytest
import torch
import torch.nn.functional as F

from safecb.engine.edit import (
    DecoderEditConfig,
    alphaedit_delta,
    benign_share,
    confine_change,
    decoder_edit,
    null_space_projector,
    erased_head,
    penalised_bias,
    safe_targets,
)
from safecb.engine.space import (
    HarmfulCodeConfig,
    HarmfulSpaceConfig,
    build_harmful_space,
    difference_vectors,
    harmful_codes,
)


def _deltas(seed=0, n=200, d=16, strong=3):
    g = torch.Generator().manual_seed(seed)
    directions = torch.linalg.qr(torch.randn(d, d, generator=g))[0][:, :strong]
    scales = torch.tensor([5.0, 3.0, 2.0])[:strong]
    coeffs = torch.randn(n, strong, generator=g) * scales
    return coeffs @ directions.T + 0.05 * torch.randn(n, d, generator=g)


def test_basis_is_orthonormal_and_captures_requested_energy():
    deltas = _deltas()
    for energy in (0.5, 0.8, 0.9, 0.99):
        space = build_harmful_space(deltas, HarmfulSpaceConfig(energy=energy, max_rank=16))
        b = space.basis
        assert torch.allclose(b.T @ b, torch.eye(space.rank), atol=1e-5)
        captured = (deltas @ b).pow(2).sum() / deltas.pow(2).sum()
        assert captured >= energy - 1e-5
        assert space.energy == pytest.approx(float(captured), abs=1e-4)
        if space.rank > 1:  # minimal: one direction fewer would not reach the energy
            fewer = (deltas @ b[:, :-1]).pow(2).sum() / deltas.pow(2).sum()
            assert fewer < energy


def test_max_rank_caps_the_basis():
    space = build_harmful_space(_deltas(), HarmfulSpaceConfig(energy=1.0, max_rank=2))
    assert space.rank == 2


def test_projected_gradient_has_no_component_in_the_harmful_space():
    space = build_harmful_space(_deltas(), HarmfulSpaceConfig(energy=0.95))
    grad = torch.randn(40, 16, generator=torch.Generator().manual_seed(1))
    projected = space.project_out(grad)
    assert (projected @ space.basis).abs().max() < 1e-5
    assert torch.allclose(space.project(grad) + projected, grad, atol=1e-6)
    p_h = space.projector()
    assert torch.allclose(p_h @ p_h, p_h, atol=1e-5)


def test_difference_vectors_only_where_grids_differ():
    book = torch.randn(10, 4)
    harm = torch.tensor([[1, 2, 3, 4], [5, 5, 5, 5]])
    safe = torch.tensor([[1, 9, 3, 8], [5, 5, 5, 5]])
    deltas = difference_vectors(book, harm, safe)
    rows = F.normalize(book, dim=-1)
    assert deltas.shape == (2, 4)
    assert torch.allclose(deltas[0], rows[2] - rows[9])
    assert torch.allclose(deltas[1], rows[4] - rows[8])


def test_bad_space_inputs_are_refused():
    with pytest.raises(ValueError, match="never differ"):
        build_harmful_space(torch.zeros(0, 8))
    with pytest.raises(ValueError, match="energy"):
        build_harmful_space(_deltas(), HarmfulSpaceConfig(energy=0.0))
    with pytest.raises(ValueError, match="max_rank"):
        build_harmful_space(_deltas(), HarmfulSpaceConfig(max_rank=0))
    with pytest.raises(ValueError, match="zero"):
        build_harmful_space(torch.zeros(5, 8))
    with pytest.raises(ValueError, match="pairs, positions"):
        difference_vectors(torch.randn(4, 2), torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long))


def test_harmful_codes_are_the_over_represented_ones():
    # code 7 appears where harmful grids differ; their safe counterparts have 3 there; benign use 0-5.
    harm = torch.tensor([[0, 7, 7, 1], [2, 7, 1, 1], [7, 7, 0, 2]])
    safe = torch.tensor([[0, 3, 3, 1], [2, 3, 1, 1], [3, 3, 0, 2]])
    benign = torch.tensor([[0, 1, 2, 3], [4, 5, 0, 1]])
    codes, ratio = harmful_codes(harm, safe, benign, codebook_size=10, config=HarmfulCodeConfig(ratio=2.0, min_count=2))
    assert codes.tolist() == [7]
    assert ratio[7] > ratio[0]
    codes, _ = harmful_codes(harm, safe, benign, 10, HarmfulCodeConfig(ratio=2.0, min_count=10))
    assert codes.numel() == 0


def _edit_setup(seed=0):
    g = torch.Generator().manual_seed(seed)
    book = torch.randn(12, 6, generator=g) * 2.0
    harm = torch.tensor([[1, 2, 3], [1, 4, 3]])
    safe = torch.tensor([[5, 2, 6], [5, 4, 6]])
    codes = torch.tensor([1, 3])
    deltas = difference_vectors(book, harm, safe)
    space = build_harmful_space(deltas, HarmfulSpaceConfig(energy=1.0))
    return book, harm, safe, codes, space


def test_decoder_edit_leaves_other_rows_bit_identical_and_moves_only_inside_the_space():
    book, harm, safe, codes, space = _edit_setup()
    targets = safe_targets(book, harm, safe, codes)
    edited = decoder_edit(book, codes, targets, space.projector(), DecoderEditConfig(alpha=1.0))
    untouched = torch.ones(len(book), dtype=torch.bool)
    untouched[codes] = False
    assert torch.equal(edited[untouched], book[untouched])
    before = F.normalize(book[codes], dim=-1)
    after_unit = edited[codes] / book[codes].norm(dim=-1, keepdim=True)
    change = after_unit - before
    assert space.project_out(change).abs().max() < 1e-5
    # alpha 1: inside the space the edited direction now coincides with its safe target
    assert torch.allclose(space.project(after_unit), space.project(targets), atol=1e-5)


def test_decoder_edit_protection_and_alpha():
    book, harm, safe, codes, space = _edit_setup(1)
    targets = safe_targets(book, harm, safe, codes)
    fully_benign = torch.ones(len(book))
    protected = decoder_edit(book, codes, targets, space.projector(), protection=fully_benign)
    assert torch.equal(protected, book)
    half = decoder_edit(book, codes, targets, space.projector(), DecoderEditConfig(alpha=0.5))
    full = decoder_edit(book, codes, targets, space.projector(), DecoderEditConfig(alpha=1.0))
    assert torch.allclose(half[codes] - book[codes], 0.5 * (full[codes] - book[codes]), atol=1e-5)
    with pytest.raises(ValueError, match="alpha"):
        decoder_edit(book, codes, targets, space.projector(), DecoderEditConfig(alpha=0.0))
    with pytest.raises(ValueError, match="no safe target"):
        safe_targets(book, harm, safe, torch.tensor([0]))


def test_benign_share():
    share = benign_share(torch.tensor([[1, 1, 2]]), torch.tensor([[1, 3, 3]]), 5)
    assert share.tolist() == pytest.approx([0.0, 2 / 3, 1.0, 0.0, 0.0])


def test_null_space_edit_preserves_benign_keys_and_moves_edited_keys():
    g = torch.Generator().manual_seed(0)
    h, out = 16, 12
    basis = torch.linalg.qr(torch.randn(h, h, generator=g))[0]
    k0 = basis[:, :10] @ torch.randn(10, 300, generator=g)  # preserved keys span 10 of 16 dims
    k1 = basis[:, 10:] @ torch.randn(6, 5, generator=g)  # edited keys live in the other 6
    k1 = k1 + 0.3 * (basis[:, :10] @ torch.randn(10, 5, generator=g))  # ... plus some overlap
    r = torch.randn(out, 5, generator=g)
    p0 = null_space_projector(k0, threshold=1e-6)
    assert torch.allclose(p0 @ p0, p0, atol=1e-5)
    delta = alphaedit_delta(k1, r, p0, ridge=1e-6)
    w = torch.randn(out, h, generator=g)
    # outputs for preserved keys change by < 1e-5
    assert ((w + delta) @ k0 - w @ k0).abs().max() < 1e-5
    # edited keys move as asked (their null-space part carries the whole residual)
    assert torch.allclose(delta @ k1, r, atol=1e-3)


def test_null_space_edit_bad_inputs():
    with pytest.raises(ValueError, match="non-empty"):
        null_space_projector(torch.zeros(4, 0))
    with pytest.raises(ValueError, match="threshold"):
        null_space_projector(torch.randn(4, 3), threshold=0.0)
    with pytest.raises(ValueError, match="share n"):
        alphaedit_delta(torch.randn(4, 3), torch.randn(2, 5), torch.eye(4))
    with pytest.raises(ValueError, match="ridge"):
        alphaedit_delta(torch.randn(4, 3), torch.randn(2, 3), torch.eye(4), ridge=0.0)


def test_confine_change_freezes_rows_and_keeps_the_change_out_of_the_harmful_space():
    g = torch.Generator().manual_seed(0)
    start = torch.randn(10, 6, generator=g)
    trained = start + torch.randn(10, 6, generator=g)
    space = build_harmful_space(torch.randn(4, 6, generator=g), HarmfulSpaceConfig(energy=1.0, max_rank=2))
    frozen = torch.tensor([1, 7])
    out = confine_change(start, trained, frozen, torch.eye(6) - space.projector())
    assert torch.equal(out[frozen], start[frozen])  # frozen rows keep their start values exactly
    assert (space.project(out - start)).abs().max() < 1e-5  # no change inside the Harmful Space
    free = torch.tensor([i for i in range(10) if i not in (1, 7)])
    # the rest of the change survives: the harmless part of what training did
    assert torch.allclose((out - start)[free], space.project_out(trained - start)[free], atol=1e-5)
    assert (out - start)[free].abs().max() > 0.1

    bias_start, bias_trained = torch.zeros(10), torch.ones(10)
    bias = confine_change(bias_start, bias_trained, frozen)
    assert bias[frozen].tolist() == [0.0, 0.0] and float(bias.sum()) == 8.0
    with pytest.raises(ValueError, match="same shape"):
        confine_change(start, trained[:3], frozen)
    with pytest.raises(ValueError, match="projector"):
        confine_change(bias_start, bias_trained, frozen, torch.eye(6))


def test_a_penalised_bias_makes_its_codes_exp_penalty_times_less_likely_under_any_context():
    g = torch.Generator().manual_seed(0)
    bias, logits = torch.randn(12, generator=g), torch.randn(5, 12, generator=g)  # 5 contexts, 12 codes
    codes = torch.tensor([2, 7])
    out = penalised_bias(bias, codes, 3.0)
    assert torch.equal(bias, penalised_bias(bias, codes, 0.0)) and not torch.equal(out, bias)  # input untouched
    before, after = (logits + bias).log_softmax(-1), (logits + out).log_softmax(-1)
    other = torch.ones(12, dtype=torch.bool)
    other[codes] = False
    odds = (after[:, codes] - after[:, other][:, :1]) - (before[:, codes] - before[:, other][:, :1])
    assert torch.allclose(odds, torch.full_like(odds, -3.0), atol=1e-5)  # odds against any other code fall by e³
    ratios = after[:, other] - after[:, other][:, :1]  # the other codes keep their odds among themselves
    assert torch.allclose(ratios, before[:, other] - before[:, other][:, :1], atol=1e-5)



def test_an_erased_head_reads_every_key_with_its_component_in_the_span_replaced_by_the_anchors():
    g = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(12, 6, generator=g), torch.randn(12, generator=g)  # 12 codes, keys of 6
    basis = torch.linalg.qr(torch.randn(6, 2, generator=g))[0]
    anchor, keys = torch.randn(6, generator=g), torch.randn(9, 6, generator=g)
    w2, b2 = erased_head(weight, bias, basis, anchor)
    read_as = keys - (keys - anchor) @ basis @ basis.T
    assert torch.allclose(keys @ w2.T + b2, read_as @ weight.T + bias, atol=1e-5)
    moved = keys + torch.randn(9, 2, generator=g) @ basis.T  # the same keys moved inside the span
    assert torch.allclose(moved @ w2.T + b2, keys @ w2.T + b2, atol=1e-5)
    assert torch.allclose(anchor @ w2.T + b2, anchor @ weight.T + bias, atol=1e-5)  # the anchor reads as it did
    outside = torch.randn(6, generator=g)
    outside = outside - basis @ (basis.T @ outside)
    assert torch.allclose((anchor + outside) @ w2.T + b2, (anchor + outside) @ weight.T + bias, atol=1e-5)
    with pytest.raises(ValueError, match="basis"):
        erased_head(weight, bias, basis[:5], anchor)
