"""Parameter groups and optimizers that see the model's tensors (optimizers.groups): which
optimizer steps which tensor, in torch's orientation, against torch's param groups; the
flat fast path stays for elementwise optimizers; bad groups are one config line."""

import numpy as np
import pytest
from typer.testing import CliRunner

from lossbench import data
from lossbench.cli import app
from lossbench.engine import nn, optimizers
from lossbench.engine.optimizers.groups import Partitioned
from lossbench.engine.train import train, train_stack
from lossbench.errors import ConfigError


def mlp(n_in=3, n_out=2, hidden=(8, 6), seed=0):
    return nn.build("mlp", n_in, n_out, seed, None, hidden=list(hidden))


def parts(opt_name, hp, net=None):
    net = net or mlp()
    return [(n, [net.layout[i].name for i in idx]) for n, _, idx in optimizers.plan(opt_name, hp, net.layout)]


W = ["0.Linear.weight", "2.Linear.weight", "4.Linear.weight"]
B = ["0.Linear.bias", "2.Linear.bias", "4.Linear.bias"]


def test_muon_takes_the_matrices_and_its_fallback_the_rest():
    assert parts("muon", {}) == [("muon", W), ("adamw", B)]
    assert parts("muon", {"fallback": "lion"}) == [("muon", W), ("lion", B)]
    cnn = nn.build("cnn", 64, 3, 0, (1, 8, 8), channels=[4], kernel_size=3, hidden=[5])
    muon, fallback = parts("muon", {}, cnn)
    assert muon == ("muon", ["1.Conv2d.weight", "5.Linear.weight", "7.Linear.weight"])
    assert fallback[1] == ["1.Conv2d.bias", "5.Linear.bias", "7.Linear.bias"]


def test_param_groups_select_by_name_set_and_glob_first_group_wins():
    hp = {"lr": 0.02, "param_groups": [{"params": ["output"], "name": "adamw", "lr": 3e-3}]}
    assert parts("muon", hp) == [("muon", W[:2]), ("adamw", B[:2]), ("adamw", ["4.Linear.weight", "4.Linear.bias"])]
    plan = optimizers.plan("adamw", {"weight_decay": 0.05, "lr": 0.01, "param_groups": [
        {"params": "*.bias", "weight_decay": 0.0}]}, mlp().layout)
    (_, own, w_idx), (_, group, b_idx) = plan
    assert own["weight_decay"] == 0.05 and group == {"weight_decay": 0.0, "lr": 0.01}  # the section's lr, inherited
    assert [w_idx, b_idx] == [[0, 2, 4], [1, 3, 5]]
    # another optimizer's group starts from its own defaults, not the section's settings
    (_, _, _), (name, sgd, _) = optimizers.plan("adam", {"lr": 0.5, "param_groups": [
        {"params": "hidden", "name": "sgd", "momentum": 0.9}]}, mlp().layout)
    assert name == "sgd" and sgd == {"momentum": 0.9}


@pytest.mark.parametrize("groups,message", [
    ([{"params": "*.gamma"}], "optimizer.param_groups[0].params: selects no tensor of this model: use one of "
                              "['weights', 'biases', 'matrices', 'vectors', 'input', 'output', 'hidden'] or a glob "
                              "on its tensors ['0.Linear.weight', "),
    ([{"params": "biases"}, {"params": "vectors", "lr": 0.1}],
     "optimizer.param_groups[1].params: selects 0.Linear.bias, which group 0 already has, got 'vectors'"),
    ([{"params": "biases", "momentum": 0.9}],
     "optimizer.param_groups[0].momentum: unknown option (optimizer 'adam' takes lr, betas, "),
    ([{"params": "biases", "name": "adamw", "lr": -1}], "optimizer.param_groups[0].lr: must be a number > 0, got -1"),
    ([{"lr": 0.1}], "optimizer.param_groups[0].params: missing: say which tensors, e.g. params: biases"),
    ([3], "optimizer.param_groups[0]: must be a mapping with params (which tensors) and settings"),
    ([{"params": "output", "name": "gd"}], "optimizer.param_groups[0].name: must not be gd in a group"),
    ([{"params": []}], "optimizer.param_groups[0].params: must be a selector or a list of them"),
    ("biases", "optimizer.param_groups: must be a non-empty list of mappings"),
    ({"params": "biases"}, "optimizer.param_groups: must be a list of groups, got one mapping: write [{...}]"),
    ([{"params": "biases", "name": "lbfgs"}], "optimizer.param_groups[0].name: cannot be in param groups: it steps "
                                              "the whole model with its own evaluations, got 'lbfgs'"),
    ([{"params": "biases", "name": "muon", "fallback": "lbfgs"}],
     "optimizer.param_groups[0].fallback: must be an optimizer for any tensor"),
    ([{"params": "biases", "name": "muon", "fallback": "muon"}],
     "optimizer.param_groups[0].fallback: must be an optimizer for any tensor (not muon"),
])
def test_bad_groups_are_one_line_naming_the_key(groups, message):
    with pytest.raises(ConfigError) as e:
        optimizers.check("adam", {"param_groups": groups})
        optimizers.plan("adam", {"param_groups": groups}, mlp().layout)
    assert str(e.value).startswith(message), str(e.value)


def test_the_sections_own_mistakes_are_the_sections_not_a_groups():
    with pytest.raises(ConfigError, match=r"^optimizer\.momentum: unknown option \(optimizer 'adam' takes"):
        optimizers.check("adam", {"momentum": 0.9, "param_groups": [{"params": "output", "lr": 0.1}]})


def test_a_selector_typo_gets_a_hint_and_a_muon_group_needs_a_matrix():
    with pytest.raises(ConfigError, match=r"selects no tensor .*got 'bias' \(did you mean 'biases'\?\)$"):
        optimizers.plan("adam", {"param_groups": [{"params": "bias", "weight_decay": 0}]}, mlp().layout)
    with pytest.raises(ConfigError, match=r"^optimizer.param_groups\[0\].params: selects no matrix, and muon"):
        optimizers.plan("adamw", {"param_groups": [{"params": "biases", "name": "muon"}]}, mlp().layout)


def test_a_bad_selector_in_a_config_exits_2_with_one_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dataset: {name: moons, n_samples: 100}\nmodel: {name: mlp, hidden: [4]}\nloss: cross_entropy\n"
                   "optimizer: {name: adamw, param_groups: [{params: '*.bais', weight_decay: 0}]}\n")
    r = CliRunner().invoke(app, ["run", str(cfg), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert r.output.strip().count("\n") == 0 and "optimizer.param_groups[0].params: selects no tensor" in r.output
    assert not (tmp_path / "o").exists()


def test_elementwise_optimizers_keep_the_one_buffer_fast_path():
    net = mlp()
    block = net.params[None].copy()
    opt = optimizers.build_for_model("adamw", block, [{"lr": 0.01}], net.layout)
    assert type(opt).__name__ == "AdamW" and opt.params[0] is block  # one array: the whole buffer
    grouped = optimizers.build_for_model("adamw", block, [{"param_groups": [{"params": "biases", "weight_decay": 0}]}],
                                         net.layout)
    assert isinstance(grouped, Partitioned)


def test_structured_parts_are_views_of_the_buffer_in_torch_orientation():
    net = mlp(n_in=3, hidden=(8,))
    block = net.params[None]
    opt = optimizers.build_for_model("muon", block, [{}], net.layout)
    muon = opt.parts[0][0]
    assert [p.shape for p in muon.params] == [(1, 8, 3), (1, 2, 8)]  # (out, in) as torch's nn.Linear
    assert all(np.shares_memory(p, block) for p in muon.params)
    np.testing.assert_array_equal(muon.params[0][0], net.layers[0].params[0].T)


def test_muon_with_adamw_on_the_rest_is_torchs_two_optimizers():
    """A model's step: torch.optim.Muon on the weights (as nn.Linear holds them) and
    torch.optim.AdamW on the biases, at the settings of the fallback and a param group."""
    torch = pytest.importorskip("torch")
    net = mlp(n_in=5, n_out=3, hidden=(7, 4))
    block = net.params[None]
    hp = {"lr": 0.05, "momentum": 0.9, "fallback": {"name": "adamw", "lr": 0.01, "weight_decay": 0.0},
          "param_groups": [{"params": "4.Linear.bias", "name": "adamw", "lr": 0.002}]}
    opt = optimizers.build_for_model("muon", block, [hp], net.layout)
    ws = [torch.tensor(layer.params[0].T.copy(), requires_grad=True) for layer in net.layers[::2]]
    bs = [torch.tensor(layer.params[1].copy(), requires_grad=True) for layer in net.layers[::2]]
    ref = [torch.optim.Muon(ws, lr=0.05, momentum=0.9), torch.optim.AdamW(bs[:2], lr=0.01, weight_decay=0.0),
           torch.optim.AdamW(bs[2:], lr=0.002)]
    rng = np.random.default_rng(0)
    for _ in range(8):
        g = rng.normal(size=block.shape).astype(np.float32)
        opt.step([g])
        grads = optimizers.groups.views(g[0], net.layout, torch_order=True)
        for t, gt in zip(ws + bs, grads[0::2] + grads[1::2]):
            t.grad = torch.tensor(np.ascontiguousarray(gt))
        for r in ref:
            r.step()
    for layer, w, b in zip(net.layers[::2], ws, bs):
        np.testing.assert_allclose(layer.params[0].T, w.detach().numpy(), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(layer.params[1], b.detach().numpy(), rtol=1e-5, atol=1e-7)


def test_a_schedule_scales_every_part_by_one_factor():
    net = mlp()
    opt = optimizers.build_for_model("muon", net.params[None].copy(), [{"lr": 0.02, "fallback": {
        "name": "adamw", "lr": 0.004}}], net.layout)
    opt.lr[0] = 0.01  # what a schedule writes: half the section's rate
    opt.step([np.ones((1, net.n_params), np.float32)])
    assert [part.lr[0, 0] for part, _ in opt.parts] == pytest.approx([0.01, 0.002])


def test_stacked_muon_runs_share_one_partitioned_optimizer():
    d = data.load("moons", n_samples=200, seed=0)
    runs = [dict(model={"name": "mlp", "hidden": [8]}, loss="cross_entropy", seed=s, train={"epochs": 2},
                 optimizer={"name": "muon", "lr": lr}) for s, lr in [(0, 0.02), (1, 0.05)]]
    made = []
    real = optimizers.build_for_model

    def spy(*a, **k):
        made.append(real(*a, **k))
        return made[-1]

    optimizers.build_for_model = spy
    try:
        stacked = train_stack(d, runs)
    finally:
        optimizers.build_for_model = real
    assert len(made) == 1 and isinstance(made[0], Partitioned) and made[0].parts[0][0].params[0].shape[0] == 2
    alone = [train(d, **r) for r in runs]
    assert [s.history[-1]["train_loss"] for s in stacked] == [a.history[-1]["train_loss"] for a in alone]


def test_dry_run_shows_which_optimizer_steps_which_tensor(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dataset: {name: moons, n_samples: 100}\nmodel: {name: mlp, hidden: [4]}\nloss: cross_entropy\n"
                   "optimizer: {name: muon, param_groups: [{params: output, name: sgd}]}\n"
                   "grid: {optimizer.lr: [0.01, 0.02]}\n")
    r = CliRunner().invoke(app, ["run", str(cfg), "--out", str(tmp_path / "o"), "--dry-run"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    lines = [line for line in r.output.splitlines() if line.startswith("tensors by optimizer")]
    assert lines == ['tensors by optimizer in {"name": "mlp", "hidden": [4]}: muon (lr=0.01): 0.Linear.weight; '
                     'adamw (defaults): 0.Linear.bias; sgd (defaults): 2.Linear.weight, 2.Linear.bias',
                     'tensors by optimizer in {"name": "mlp", "hidden": [4]}: muon (lr=0.02): 0.Linear.weight; '
                     'adamw (defaults): 0.Linear.bias; sgd (defaults): 2.Linear.weight, 2.Linear.bias']


def test_muon_sees_convolution_weights_as_out_by_in_times_kernel_matrices():
    cnn = nn.build("cnn", 64, 3, 0, (2, 8, 8), channels=[4, 6], kernel_size=3, hidden=[5])
    block = cnn.params[None]
    opt = optimizers.build_for_model("muon", block, [{}], cnn.layout)
    muon = opt.parts[0][0]
    assert [p.shape for p in muon.params] == [(1, 4, 18), (1, 6, 36), (1, 5, 6 * 2 * 2), (1, 3, 5)]
    assert all(np.shares_memory(p, block) for p in muon.params)
    np.testing.assert_array_equal(muon.params[1][0], cnn.layers[4].params[0].reshape(6, 36))


def test_muon_built_directly_flattens_a_convolution_weight_as_in_a_model():
    """optimizers.build("muon", [w]) on a 4-D weight steps it as the (out, in*kh*kw) matrix
    a model's Muon sees: the same numbers."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 2, 3, 3)).astype(np.float32)
    flat = w.reshape(4, 18).copy()
    a, b = optimizers.build("muon", [w], lr=0.05), optimizers.build("muon", [flat], lr=0.05)
    for _ in range(3):
        g = rng.normal(size=w.shape).astype(np.float32)
        a.step([g])
        b.step([g.reshape(4, 18)])
    np.testing.assert_array_equal(w.reshape(4, 18), flat)
    assert not np.array_equal(flat, rng.normal(size=1))


def test_an_lbfgs_closure_that_returns_the_loss_alone_is_told_what_to_return():
    opt = optimizers.build("lbfgs", [np.ones(3, np.float32)])
    with pytest.raises(TypeError, match=r"an lbfgs closure returns \(loss, gradient\)"):
        opt.step_closure(lambda: 1.0)
