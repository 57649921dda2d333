import numpy as np
import pytest

from lossbench import losses, nn
from lossbench.engine.nn.layers import Dropout
from lossbench.errors import ConfigError

from gradcheck import assert_close_grad, numeric_grad


def test_relu_gelu_values():
    x = np.array([[-2.0, -0.5, 0.0, 0.5, 2.0]], np.float32)
    y, _ = nn.LAYERS.build("relu").forward(x, False)
    np.testing.assert_array_equal(y, [[0, 0, 0, 0.5, 2]])
    y, _ = nn.LAYERS.build("leaky_relu").forward(x, False)
    np.testing.assert_allclose(y, [[-0.02, -0.005, 0, 0.5, 2]], rtol=1e-6)
    # GELU(x) = x Phi(x); Phi(2) = 0.97724987, Phi(0.5) = 0.69146246
    y, _ = nn.LAYERS.build("gelu").forward(x, False)
    phi2, phi05 = 0.97724987, 0.69146246
    expected = [[-2 * (1 - phi2), -0.5 * (1 - phi05), 0, 0.5 * phi05, 2 * phi2]]
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-7)


def test_dropout_scales_in_training_and_is_identity_in_eval():
    d = Dropout(0.25, np.random.default_rng(0))
    x = np.ones((1000, 100), np.float32)
    y, _ = d.forward(x, True)
    assert set(np.unique(y)) == {0.0, np.float32(1 / 0.75)}
    assert abs((y == 0).mean() - 0.25) < 0.01
    assert d.forward(x, False)[0] is x


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "leaky_relu", "gelu"])
def test_whole_model_gradient_in_flat_buffer(activation):
    net = nn.build("mlp", 4, 3, 0, hidden=[5, 6], activation=activation)
    # float64 copy of the flat buffer so finite differences are exact enough
    net.bind(net.params.astype(np.float64))
    rng = np.random.default_rng(2)
    # Zero-initialised biases put dead ReLU units exactly on the kink; move them off.
    net.params += rng.normal(scale=0.1, size=net.params.size)
    x, y = rng.normal(size=(7, 4)), rng.integers(0, 3, 7)
    ce = losses.build("cross_entropy")
    net.backward(ce.grad(net.forward(x, True), y))
    numeric = numeric_grad(lambda: ce.value(net.forward(x, True), y), net.params)
    assert_close_grad(net.grads, numeric, atol=1e-6)  # erf approximation ~1e-7


def test_parameters_are_one_contiguous_buffer():
    net = nn.build("mlp", 784, 10, 0, hidden=[256, 128])
    assert net.n_params == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10
    assert net.params.dtype == np.float32 and net.params.flags.c_contiguous
    w = net.layers[0].params[0]
    assert np.shares_memory(w, net.params)
    net.params[:] = 0.5  # one vectorized update reaches every layer
    assert (w == 0.5).all() and (net.layers[-1].params[1] == 0.5).all()


def test_init_schemes_and_seed():
    a = nn.build("mlp", 100, 10, 1, hidden=[400])
    b = nn.build("mlp", 100, 10, 1, hidden=[400])
    c = nn.build("mlp", 100, 10, 2, hidden=[400])
    np.testing.assert_array_equal(a.params, b.params)
    assert not np.array_equal(a.params, c.params)
    w = nn.build("mlp", 100, 10, 1, hidden=[400], init="he").layers[0].params[0]
    assert w.std() == pytest.approx(np.sqrt(2 / 100), rel=0.03)  # he
    x = nn.build("linear", 100, 400, 0, init="xavier").layers[0].params[0]
    bound_ = np.sqrt(6 / 500)
    assert x.max() <= bound_ and x.min() >= -bound_ and x.max() > 0.95 * bound_


@pytest.mark.parametrize("model", ["mlp", "linear"])
def test_default_init_is_torch_nn_linear(model):
    """torch.nn.Linear.reset_parameters: weight and bias uniform in ±1/sqrt(fan_in)."""
    net = nn.build(model, 400, 300, 0, **({"hidden": [200]} if model == "mlp" else {}))
    for layer in net.layers[::2]:
        w, b = layer.params
        bound = 1 / np.sqrt(w.shape[0])
        for p in (w, b):
            assert np.abs(p).max() <= bound and np.abs(p).max() > 0.95 * bound
        assert w.std() == pytest.approx(bound / np.sqrt(3), rel=0.03)  # std of U(-a, a) is a/sqrt(3)
        assert b.std() == pytest.approx(bound / np.sqrt(3), rel=0.2)


def test_bad_model_options():
    with pytest.raises(ConfigError, match=r"^model\.activation: must be one of \['relu', 'leaky_relu', 'tanh', "
                                          r"'sigmoid', 'gelu'\], got 'relux' \(did you mean 'relu'\?\)$"):
        nn.build("mlp", 2, 2, activation="relux")
    with pytest.raises(ConfigError, match=r"^model\.hidden\[1\]: must be an integer >= 1, got -1$"):
        nn.build("mlp", 2, 2, hidden=[4, -1])
    with pytest.raises(ConfigError,
                       match=r"^model\.init: must be one of \['torch', 'he', 'xavier'\], got 'orthogonal'$"):
        nn.build("mlp", 2, 2, init="orthogonal")
    with pytest.raises(ConfigError, match=r"^model\.hiden: unknown option .*got \[3\] \(did you mean 'hidden'\?\)$"):
        nn.build("mlp", 2, 2, hiden=[3])
    with pytest.raises(ConfigError, match=r"^model\.dropout: must be a number in \[0, 1\), got 1\.0$"):
        nn.build("mlp", 2, 2, dropout=1.0)


def test_a_model_too_big_for_memory_is_refused_before_anything_is_allocated(monkeypatch):
    import tracemalloc

    from lossbench.engine.nn import models

    monkeypatch.setattr(models, "physical_memory", lambda: 1 << 20)  # a 1 MiB machine
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match=r"^model: does not fit in memory: 202,110 parameters need 1\.5 MiB "
                                              r"for weights and gradients, this machine has 1\.0 MiB"):
            nn.build("mlp", 100, 10, 0, hidden=[1000, 100])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100_000  # the 0.8 MB parameter buffer was never made
    n_params = 100 * 1000 + 1000 + 1000 * 100 + 100 + 100 * 10 + 10
    assert nn.plan("mlp", 100, 10, 0, hidden=[1000, 100]).n_params == n_params


def test_cnn_presets_are_the_published_architectures():
    lenet = nn.plan("lenet5", 784, 10, 0, (1, 28, 28))
    assert lenet.n_params == 61_706  # LeCun et al.'s LeNet-5 on 28x28 inputs padded by 2
    deepobs = nn.plan("2c2d", 784, 10, 0, (1, 28, 28))
    conv, dense = (5 * 5 * 32 + 32) + (5 * 5 * 32 * 64 + 64), (7 * 7 * 64 * 1024 + 1024) + (1024 * 10 + 10)
    assert deepobs.n_params == conv + dense
    kinds = [type(layer).__name__ for layer in nn.plan("cnn", 784, 10, 0, (1, 28, 28), channels=[4, 8],
                                                        kernel_size=3, pool="avg", batch_norm=True, hidden=[16]).layers]
    assert kinds == ["ToImage", "Conv2d", "BatchNorm", "ReLU", "AvgPool2d", "Conv2d", "BatchNorm", "ReLU",
                     "AvgPool2d", "Flatten", "Linear", "ReLU", "Linear"]


def test_a_cnn_needs_image_data():
    with pytest.raises(ConfigError, match=r"^model\.name: must be linear or mlp on tabular data \(convolutional models "
                                          r"need an image dataset: mnist, fashion_mnist\), got '2c2d'$"):
        nn.plan("2c2d", 2, 3, 0, None)
    with pytest.raises(ConfigError, match=r"^model\.padding: must be one value or one per convolution \(2\), "
                                          r"got \[2, 0, 1\]$"):
        nn.plan("cnn", 784, 10, 0, (1, 28, 28), padding=[2, 0, 1])
    with pytest.raises(ConfigError, match=r"^model\.channels: leave no pixels of the 28x28 images"):
        nn.plan("cnn", 784, 10, 0, (1, 28, 28), channels=[4, 4, 4, 4, 4, 4])


@pytest.mark.parametrize("model,kw", [("mlp", {"hidden": [4]}), ("cnn", {"channels": [2], "hidden": [4]})])
def test_backprop_stops_at_the_first_layer_with_parameters(model, kw):
    # nobody needs d loss / d data: the first layer with parameters skips its input gradient
    # (in a CNN it is behind the reshape to images) and the layers in front of it never run
    net = nn.build(model, 36, 3, 0, (1, 6, 6) if model == "cnn" else None, **kw)
    net.forward(np.ones((2, 36), np.float32), True)
    calls = []

    def spy(i, backprop):
        return lambda dy, need_dx=True: calls.append((i, need_dx)) or backprop(dy, need_dx)

    net._backprops = [spy(i, b) for i, b in enumerate(net._backprops)]
    net.backward(np.ones((2, 3), np.float32))
    first = 1 if model == "cnn" else 0
    assert type(net.layers[first]).__name__ in ("Conv2d", "Linear")
    assert calls[-1] == (first, False)
    assert all(need for i, need in calls[:-1]) and len(calls) == len(net.layers) - first
