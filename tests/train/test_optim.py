import torch

from brl_graph.train import make_optimizer


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


def test_weight_average_follows_the_closed_form_and_copies_integer_buffers():
    from brl_graph.train.optim import WeightAverage

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    average = WeightAverage(model, decay=0.9)
    expected = model[0].weight.detach().clone()
    with torch.no_grad():
        for t in range(25):
            model[0].weight.add_(1.0)
            model(torch.randn(8, 3))  # moves the running stats and the batch count
            beta = min(0.9, (1 + t) / (10 + t))  # the ramp, then the decay
            expected = beta * expected + (1 - beta) * model[0].weight
            average.update(model)
    torch.testing.assert_close(average.module[0].weight, expected)
    assert int(average.module[1].num_batches_tracked) == int(model[1].num_batches_tracked) == 25
    assert not torch.equal(average.module[1].running_mean, model[1].running_mean)  # averaged
    assert not any(p.requires_grad for p in average.module.parameters())
    assert repr(average) == "WeightAverage(decay=0.9, updates=25)"


def test_weight_average_refuses_a_decay_outside_the_open_unit_interval():
    import pytest

    from brl_graph.train.optim import WeightAverage

    for decay in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="decay must be in"):
            WeightAverage(torch.nn.Linear(2, 2), decay)


def test_weight_average_refuses_another_model():
    import pytest

    from brl_graph.train.optim import WeightAverage

    average = WeightAverage(torch.nn.Linear(2, 2), 0.9)
    with pytest.raises(ValueError, match="not the model it was made from"):
        average.update(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)))
