import pytest
import torch

from brl_graph.train import clip_grad_norm, make_optimizer


def test_fused_adamw_matches_the_reference_update():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 1))
    ref = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 1))
    ref.load_state_dict(model.state_dict())
    opt = make_optimizer(model, lr=1e-2, weight_decay=1e-3)
    assert opt.defaults["fused"]
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-2, weight_decay=1e-3, foreach=False)
    x = torch.randn(16, 5)
    for _ in range(3):
        for m, o in ((model, opt), (ref, ref_opt)):
            o.zero_grad()
            m(x).pow(2).mean().backward()
            o.step()
    for a, b in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_frozen_parameters_are_left_out():
    model = torch.nn.Linear(3, 3)
    model.bias.requires_grad_(False)
    opt = make_optimizer(model, lr=1e-3, weight_decay=0.0)
    assert [p for g in opt.param_groups for p in g["params"]] == [model.weight]


def _model_with_grads(scale: float) -> torch.nn.Module:
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(6, 9), torch.nn.ReLU(), torch.nn.Linear(9, 2))
    (scale * model(torch.randn(20, 6)).pow(2).sum()).backward()
    return model


@pytest.mark.parametrize("scale, max_norm", [(10.0, 0.5), (1e-3, 5.0)])
def test_clip_grad_norm_matches_torch(scale, max_norm):
    ours, ref = _model_with_grads(scale), _model_with_grads(scale)
    norm = clip_grad_norm(ours.parameters(), max_norm)
    ref_norm = torch.nn.utils.clip_grad_norm_(ref.parameters(), max_norm)
    torch.testing.assert_close(norm, ref_norm)
    clipped = float(ref_norm) > max_norm
    assert clipped == (scale > 1.0)  # one case of each
    for a, b in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(a.grad, b.grad)
    total = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in ours.parameters()]))
    if clipped:
        assert total == pytest.approx(max_norm, rel=1e-4)
    else:
        assert total == pytest.approx(float(norm), rel=1e-6)


def test_clip_grad_norm_leaves_grads_that_need_no_clipping_bit_identical():
    model = _model_with_grads(1e-3)
    before = [p.grad.clone() for p in model.parameters()]
    clip_grad_norm(model.parameters(), 1e6)
    assert all(torch.equal(a, p.grad) for a, p in zip(before, model.parameters()))


def test_clip_grad_norm_reports_a_non_finite_norm_and_leaves_grads_alone():
    model = _model_with_grads(1.0)
    model[0].weight.grad[0, 0] = float("nan")
    before = [p.grad.clone() for p in model.parameters()]
    assert not torch.isfinite(clip_grad_norm(model.parameters(), 1e-3))
    for a, p in zip(before, model.parameters()):
        assert torch.equal(a.nan_to_num(), p.grad.nan_to_num())


def test_clip_grad_norm_skips_parameters_without_grads_and_checks_max_norm():
    model = _model_with_grads(1.0)
    model[2].bias.grad = None
    norm = clip_grad_norm(model.parameters(), 1e6)
    expect = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.parameters()
                                                 if p.grad is not None]))
    torch.testing.assert_close(norm, expect)
    assert float(clip_grad_norm(torch.nn.Linear(2, 2).parameters(), 1.0)) == 0.0
    with pytest.raises(ValueError, match="max_norm must be positive"):
        clip_grad_norm(model.parameters(), 0.0)
