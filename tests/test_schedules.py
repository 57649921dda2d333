import math

import numpy as np
import pytest

from lossbench import schedules
from lossbench.errors import ConfigError


def lrs(name, epochs=10, metrics=None, **kw):
    s = schedules.build(name, 0.1, epochs, **kw)
    metrics = metrics or [None] * epochs
    return [s(e, m) for e, m in enumerate(metrics)]


def test_closed_forms():
    assert lrs("constant", 3) == [0.1] * 3
    assert lrs("step", 6, step_size=2, gamma=0.5) == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    assert lrs("exponential", 3, gamma=0.5) == pytest.approx([0.1, 0.05, 0.025])
    cos = lrs("cosine", 4)
    assert cos == pytest.approx([0.1 * (1 + math.cos(math.pi * k / 4)) / 2 for k in range(4)])
    warm = lrs("warmup_cosine", 6, warmup_epochs=2, start_factor=0.2)
    assert warm[:3] == pytest.approx([0.02, 0.06, 0.1])
    assert warm[3:] == pytest.approx([0.1 * (1 + math.cos(math.pi * k / 4)) / 2 for k in (1, 2, 3)])


def test_reduce_on_plateau_waits_for_patience_then_cools_down():
    # improving, then flat: with patience 2, the 3rd bad epoch cuts the lr
    metrics = [None, 1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]
    got = lrs("reduce_on_plateau", len(metrics), metrics, patience=2, factor=0.5, cooldown=1)
    # epoch 5: third bad epoch -> cut; epoch 6: cooldown resets the count; 7, 8: bad 1, 2
    assert got == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05])


@pytest.mark.parametrize(
    "name,kw,pattern",
    [
        ("step", {"step_size": 0}, r"^train\.schedule\.step_size: must be an integer >= 1, got 0$"),
        ("step", {"gamma": -1}, r"^train\.schedule\.gamma: must be a number > 0, got -1$"),
        ("reduce_on_plateau", {"factor": 1.5}, r"^train\.schedule\.factor: must be a number in \(0, 1\), got 1\.5$"),
        ("cosine", {"eta_min": -1}, r"^train\.schedule\.eta_min: must be a number >= 0, got -1$"),
        ("cosine", {"T_max": 2.5}, r"^train\.schedule\.T_max: must be an integer >= 1, got 2\.5$"),
        ("cosinus", {}, r"^train\.schedule\.name: must be one of .*, got 'cosinus' \(did you mean 'cosine'\?\)$"),
        ("cosine", {"Tmax": 3}, r"^train\.schedule\.Tmax: unknown option .*got 3 \(did you mean 'T_max'\?\)$"),
        ("cosine", {"epochs": 3}, r"^train\.schedule\.epochs: unknown option"),  # context, never an option
    ],
)
def test_bad_options(name, kw, pattern):
    with pytest.raises(ConfigError, match=pattern):
        schedules.build(name, 0.1, 10, **kw)


def test_matches_torch_schedulers():
    torch = pytest.importorskip("torch")
    S = torch.optim.lr_scheduler

    def torch_lrs(make, epochs, metrics=None):
        p = torch.zeros(1, requires_grad=True)
        opt = torch.optim.SGD([p], lr=0.1)
        sched = make(opt)
        out = []
        for e in range(epochs):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step(metrics[e + 1]) if metrics else sched.step()
        return out

    assert lrs("step", 9, step_size=3, gamma=0.3) == pytest.approx(torch_lrs(lambda o: S.StepLR(o, 3, 0.3), 9))
    assert lrs("exponential", 9, gamma=0.7) == pytest.approx(torch_lrs(lambda o: S.ExponentialLR(o, 0.7), 9))
    assert lrs("cosine", 9, eta_min=0.01) == pytest.approx(torch_lrs(lambda o: S.CosineAnnealingLR(o, 9, 0.01), 9))
    rng = np.random.default_rng(0)
    metrics = [None] + list(np.minimum.accumulate(rng.random(20)) + rng.random(20) * 0.05)
    ours = lrs("reduce_on_plateau", 20, metrics[:20], patience=1, factor=0.5, cooldown=1, threshold=0.01)
    ref = torch_lrs(lambda o: S.ReduceLROnPlateau(o, factor=0.5, patience=1, cooldown=1, threshold=0.01), 20, metrics)
    assert ours == pytest.approx(ref)


def test_cosine_is_periodic_past_t_max_like_torch():
    expected = [0.1, 0.085355, 0.05, 0.014645, 0, 0.014645, 0.05, 0.085355, 0.1, 0.085355]
    assert lrs("cosine", 10, T_max=4) == pytest.approx(expected, abs=1e-6)
