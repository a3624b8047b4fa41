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
