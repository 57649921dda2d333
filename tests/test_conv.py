"""Image layers against their torch namesakes: forward outputs and every gradient (input
and parameters) on random batches, float64 to ~1e-10 and float32 within float32 rounding,
over strides, paddings, odd sizes, bias or none; pools on inputs with ties; batch norm
through several training steps (running statistics) and then in evaluation mode."""

import numpy as np
import pytest

from lossbench.engine import nn
from lossbench.engine.nn import conv

torch = pytest.importorskip("torch")
F = torch.nn.functional

TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=2e-5, atol=2e-6)}
DTYPES = [np.float64, np.float32]


def close(ours, ref, dtype, scale=1.0):
    """Equal within the dtype's tolerance; atol scales with the size of the reference."""
    tol = TOL[dtype]
    ref = ref.detach().numpy() if hasattr(ref, "detach") else ref
    assert ours.dtype == dtype
    np.testing.assert_allclose(ours, ref, rtol=tol["rtol"], atol=tol["atol"] * max(scale, np.abs(ref).max()))


def build(name, dtype, rng, **kw):
    """A layer bound to random parameters of `dtype` (so both bias and weights matter)."""
    layer = nn.LAYERS.build(name, **kw)
    params = [rng.normal(size=s).astype(dtype) for s in layer.shapes]
    grads = [np.full(s, np.nan, dtype) for s in layer.shapes]  # overwritten, never accumulated
    layer.bind(params, grads)
    return layer, params, grads


def ours_and_torch(layer, x, dy, torch_fn, params, train=True):
    """(y, dx) from the layer and (y, dx, param grads) from torch on the same data."""
    y, backprop = layer.forward(x, train)
    dx = backprop(dy.copy())
    return (y, dx), torch_ref(x, dy, torch_fn, params)


def torch_ref(x, dy, torch_fn, params):
    """torch's (y, dx, param grads) for output gradient dy."""
    tx = torch.tensor(x, requires_grad=True)
    tp = [torch.tensor(p, requires_grad=True) for p in params]
    ty = torch_fn(tx, *tp)
    ty.backward(torch.tensor(dy))
    return ty, tx.grad, [p.grad for p in tp]


# ---------------------------------------------------------------- conv2d

# (arguments, input shape (N, C, H, W))
CONV_CASES = [
    ({"in_channels": 3, "out_channels": 4, "kernel_size": 3}, (2, 3, 7, 6)),
    ({"in_channels": 3, "out_channels": 4, "kernel_size": 3, "padding": "same"}, (2, 3, 7, 6)),
    ({"in_channels": 2, "out_channels": 5, "kernel_size": 4, "padding": "same"}, (2, 2, 6, 7)),  # even: pads 1, 2
    ({"in_channels": 2, "out_channels": 3, "kernel_size": 5, "padding": "valid", "bias": False}, (3, 2, 9, 8)),
    ({"in_channels": 3, "out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1}, (2, 3, 9, 8)),
    ({"in_channels": 3, "out_channels": 2, "kernel_size": 3, "stride": 2}, (2, 3, 8, 9)),  # rows left unused
    ({"in_channels": 1, "out_channels": 4, "kernel_size": 5, "stride": 3, "padding": 2}, (2, 1, 11, 10)),
    ({"in_channels": 2, "out_channels": 3, "kernel_size": 2, "padding": 3}, (1, 2, 3, 4)),  # padding > kernel - 1
    ({"in_channels": 4, "out_channels": 3, "kernel_size": 1, "stride": 2, "bias": False}, (2, 4, 5, 5)),
]


def torch_conv(kw):
    pad = kw.get("padding", 0)

    def f(x, w, b=None):
        return F.conv2d(x, w, b, stride=kw.get("stride", 1), padding=pad)

    return f


@pytest.mark.parametrize("chunk", ["all", "one", "two"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw,shape", CONV_CASES, ids=[str(kw) for kw, _ in CONV_CASES])
def test_conv2d_matches_torch(kw, shape, dtype, chunk, monkeypatch):
    # the input gradient (and the forward pass in evaluation mode) run in chunks of images:
    # all at once, one by one, or two at a time (an uneven last chunk when the batch is odd)
    n, _, h, w = shape
    # (the input gradient's windows per image are the largest: two of them is two images or more)
    per_image = h * w * kw["kernel_size"] ** 2 * max(kw["out_channels"], kw["in_channels"]) * np.dtype(dtype).itemsize
    monkeypatch.setattr(conv, "CHUNK_BYTES", {"all": 1 << 30, "one": 1, "two": 2 * per_image}[chunk])
    rng = np.random.default_rng(0)
    layer, params, grads = build("conv2d", dtype, rng, **kw)
    x = rng.normal(size=shape).astype(dtype)
    y0, _ = layer.forward(x, True)
    dy = rng.normal(size=y0.shape).astype(dtype)
    (y, dx), (ty, tdx, tgrads) = ours_and_torch(layer, x, dy, torch_conv(kw), params)
    assert y.shape == tuple(ty.shape) and dx.shape == x.shape
    close(y, ty, dtype)
    close(dx, tdx, dtype)
    assert len(grads) == (2 if kw.get("bias", True) else 1)
    for g, tg in zip(grads, tgrads):
        close(g, tg, dtype)
    # evaluation mode: the forward pass in chunks, keeping nothing; gradients still exact
    y, backprop = layer.forward(x, False)
    close(y, ty, dtype)
    close(backprop(dy.copy()), tdx, dtype)
    for g, tg in zip(grads, tgrads):
        close(g, tg, dtype)


def test_conv2d_repeated_batches_reuse_buffers_without_leaking():
    """A second batch of the same shape (buffers reused) gives torch's answer too, also
    after an evaluation pass on other data in between (before the backprop), and a batch
    of another size replaces the scratch arrays instead of adding to them."""
    rng = np.random.default_rng(1)
    kw = {"in_channels": 2, "out_channels": 3, "kernel_size": 3, "stride": 2, "padding": 1}
    layer, params, grads = build("conv2d", np.float64, rng, **kw)
    held = []
    for n in (3, 3, 5, 3):
        x = rng.normal(size=(n, 2, 7, 7))
        dy = rng.normal(size=(n, 3, 4, 4))
        y, backprop = layer.forward(x, True)
        layer.forward(rng.normal(size=(n, 2, 7, 7)), False)  # same shape, evaluation mode
        dx = backprop(dy.copy())
        ty, tdx, tgrads = torch_ref(x, dy, torch_conv(kw), params)
        close(y, ty, np.float64)
        close(dx, tdx, np.float64)
        for g, tg in zip(grads, tgrads):
            close(g, tg, np.float64)
        held.append(sum(a.nbytes for a in layer._buf._arrays.values()))
    assert held[0] == held[1] == held[3] < held[2]  # a new batch size replaces the scratch arrays


@pytest.mark.parametrize("scheme", ["torch", "he", "xavier"])
def test_conv2d_init_bounds_and_scale(scheme):
    layer = nn.LAYERS.build("conv2d", in_channels=8, out_channels=64, kernel_size=5)
    w, b = np.zeros((64, 8, 5, 5), np.float32), np.full(64, np.nan, np.float32)
    layer.bind([w, b], [np.zeros_like(w), np.zeros_like(b)])
    layer.init(np.random.default_rng(0), scheme)
    fan_in, fan_out = 8 * 25, 64 * 25
    if scheme == "torch":  # kaiming_uniform_(a=sqrt(5)): U(±1/sqrt(fan_in)), bias the same
        bound = 1 / np.sqrt(fan_in)
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
        assert np.abs(b).max() <= bound and b.std() > 0
        assert w.std() == pytest.approx(bound / np.sqrt(3), rel=0.05)
    elif scheme == "he":
        assert w.std() == pytest.approx(np.sqrt(2 / fan_in), rel=0.05) and not b.any()
    else:
        assert w.std() == pytest.approx(np.sqrt(2 / (fan_in + fan_out)), rel=0.05) and not b.any()


def test_conv2d_same_padding_needs_stride_1():
    with pytest.raises(Exception, match="stride 1"):
        nn.LAYERS.build("conv2d", in_channels=1, out_channels=1, kernel_size=3, stride=2, padding="same")


# ---------------------------------------------------------------- pools

def tied(rng, shape, dtype):
    """Few distinct values and constant blocks: many windows hold tied maxima (MNIST's
    background is constant 0)."""
    x = rng.integers(0, 3, size=shape).astype(dtype)
    x[:, :, : shape[2] // 2, : shape[3] // 2] = 0.0  # a constant region
    return x


# (layer, arguments, torch function, input shape)
POOL_CASES = [
    ("max_pool2d", {"kernel_size": 2}, lambda x: F.max_pool2d(x, 2), (2, 3, 8, 8)),
    ("max_pool2d", {"kernel_size": 2}, lambda x: F.max_pool2d(x, 2), (2, 3, 7, 9)),  # odd: last row dropped
    ("max_pool2d", {"kernel_size": 3, "stride": 2}, lambda x: F.max_pool2d(x, 3, 2), (2, 2, 9, 8)),  # overlap
    ("max_pool2d", {"kernel_size": 3, "stride": 1}, lambda x: F.max_pool2d(x, 3, 1), (1, 2, 6, 7)),
    ("max_pool2d", {"kernel_size": 2, "stride": 3}, lambda x: F.max_pool2d(x, 2, 3), (2, 2, 8, 8)),  # gaps
    ("avg_pool2d", {"kernel_size": 2}, lambda x: F.avg_pool2d(x, 2), (2, 3, 8, 8)),
    ("avg_pool2d", {"kernel_size": 2}, lambda x: F.avg_pool2d(x, 2), (2, 3, 7, 9)),
    ("avg_pool2d", {"kernel_size": 3, "stride": 2}, lambda x: F.avg_pool2d(x, 3, 2), (2, 2, 9, 8)),
    ("avg_pool2d", {"kernel_size": 3, "stride": 1}, lambda x: F.avg_pool2d(x, 3, 1), (1, 2, 6, 7)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ties", [True, False])
@pytest.mark.parametrize("name,kw,fn,shape", POOL_CASES, ids=[f"{n}{kw}{s}" for n, kw, _, s in POOL_CASES])
def test_pool_matches_torch(name, kw, fn, shape, ties, dtype):
    rng = np.random.default_rng(2)
    layer = nn.LAYERS.build(name, **kw)
    x = tied(rng, shape, dtype) if ties else rng.normal(size=shape).astype(dtype)
    y0, _ = layer.forward(x, True)
    dy = rng.normal(size=y0.shape).astype(dtype)
    (y, dx), (ty, tdx, _) = ours_and_torch(layer, x, dy, fn, [])
    close(y, ty, dtype)
    close(dx, tdx, dtype)


def test_max_pool_sends_a_constant_windows_gradient_to_its_first_element_only():
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 2:, 2:] = [[1, 5], [5, 5]]  # a tie of 5s in the last window: the first one wins
    y, backprop = nn.LAYERS.build("max_pool2d", kernel_size=2).forward(x, True)
    np.testing.assert_array_equal(y[0, 0], [[0, 0], [0, 5]])
    dx = backprop(np.array([[[[1, 2], [3, 4]]]], np.float32))
    np.testing.assert_array_equal(dx[0, 0], [[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 0, 4], [0, 0, 0, 0]])


# ---------------------------------------------------------------- flatten

def test_flatten_is_torch_flatten_in_chw_order():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    xt = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)  # NCHW view of NHWC memory
    for inp in (x, xt):
        y, backprop = nn.LAYERS.build("flatten").forward(inp, True)
        np.testing.assert_array_equal(y, torch.flatten(torch.tensor(x), 1).numpy())
        dy = np.arange(y.size, dtype=np.float32).reshape(y.shape)
        np.testing.assert_array_equal(backprop(dy), dy.reshape(x.shape))


# ---------------------------------------------------------------- batch_norm

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(16, 5), (6, 4, 5, 3)], ids=["1d", "2d"])
def test_batch_norm_matches_torch_in_training_and_evaluation(shape, dtype):
    rng = np.random.default_rng(3)
    f = shape[1]
    layer, params, grads = build("batch_norm", dtype, rng, num_features=f, momentum=0.2)
    ref = (torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d)(f, momentum=0.2)
    ref = ref.to(torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(params[0]))
        ref.bias.copy_(torch.tensor(params[1]))

    def compare(train, steps):
        ref.train(train)
        for _ in range(steps):
            x = (rng.normal(size=shape) * 3 + 1.5).astype(dtype)
            dy = rng.normal(size=shape).astype(dtype)
            y, backprop = layer.forward(x, train)
            dx = backprop(dy.copy())
            tx = torch.tensor(x, requires_grad=True)
            ref.zero_grad()
            ty = ref(tx)
            ty.backward(torch.tensor(dy))
            close(y, ty, dtype)
            close(dx, tx.grad, dtype)
            close(grads[0], ref.weight.grad, dtype)
            close(grads[1], ref.bias.grad, dtype)
            close(layer.running_mean, ref.running_mean, dtype)
            close(layer.running_var, ref.running_var, dtype)

    compare(True, 4)
    assert not np.allclose(layer.running_var, 1.0)  # the statistics moved
    compare(False, 2)


def test_batch_norm_statistics_are_buffers_not_parameters():
    layer = nn.LAYERS.build("batch_norm", num_features=3)
    assert layer.shapes == ((3,), (3,))  # weight and bias only: the optimizer never sees the statistics
    layer.bind([np.zeros(3, np.float32), np.zeros(3, np.float32)], [np.zeros(3, np.float32)] * 2)
    layer.init(np.random.default_rng(0), "he")
    np.testing.assert_array_equal(layer.params[0], 1.0)
    np.testing.assert_array_equal(layer.params[1], 0.0)
    np.testing.assert_array_equal(layer.running_mean, 0.0)
    np.testing.assert_array_equal(layer.running_var, 1.0)


# ---------------------------------------------------------------- whole models

def torch_cnn(net, dtype, activation):
    """torch's conv -> activation -> pool stack with our model's parameters, in torch's order."""
    from lossbench.engine.nn.cnn import ToImage
    from lossbench.engine.nn.layers import Linear

    T = torch.nn
    mods = []
    for layer in net.layers:
        name = type(layer).__name__
        if name == "Conv2d":
            mods.append(T.Conv2d(layer.c_in, layer.c_out, layer.k, padding=layer.pad[0]))
            mods.append({"relu": T.ReLU, "tanh": T.Tanh}[activation]())
        elif isinstance(layer, Linear):
            mods += [T.Linear(*layer.params[0].shape), {"relu": T.ReLU, "tanh": T.Tanh}[activation]()]
        elif name == "MaxPool2d":
            mods.append(T.MaxPool2d(2))
        elif name == "Flatten":
            mods.append(T.Flatten())
        else:
            assert isinstance(layer, (ToImage, nn.layers.ReLU, nn.layers.Tanh)), name
    model = T.Sequential(*mods[:-1]).to(torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():
        ours = [layer for layer in net.layers if layer.shapes]
        theirs = [m for m in model if isinstance(m, (T.Conv2d, T.Linear))]
        for a, b in zip(ours, theirs):
            b.weight.copy_(torch.tensor(a.params[0] if isinstance(b, T.Conv2d) else a.params[0].T))
            b.bias.copy_(torch.tensor(a.params[1]))
    return model


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_cnn_model_is_torchs_conv_activation_pool_stack(dtype, activation):
    # Small integers as inputs and weights: convolution outputs tie often, between windows of
    # different inputs, so routing a tie's gradient to any but the first maximum changes the
    # weight gradients; a zero background adds windows whose maximum is <= 0 after the bias.
    # Through the whole model, where max-pooling may run before the ReLU: the same outputs and
    # the same parameter gradients as torch's conv -> activation -> pool.
    rng = np.random.default_rng(4)
    net = nn.build("cnn", 144, 3, 0, (1, 12, 12), channels=[3, 4], kernel_size=3, hidden=[8], activation=activation)
    net.bind(rng.integers(-2, 3, size=net.n_params).astype(dtype) / 4)
    x = rng.integers(0, 3, size=(5, 144)).astype(dtype)
    x[:, :36] = 0.0
    dy = rng.normal(size=(5, 3)).astype(dtype)
    model = torch_cnn(net, dtype, activation)
    tx = torch.tensor(x.reshape(5, 1, 12, 12))
    ty = model(tx)
    ty.backward(torch.tensor(dy))
    close(net.forward(x, True), ty, dtype)
    grads = net.backward(dy.copy())
    ref = np.concatenate([g.detach().numpy().ravel() if g.ndim != 2 else g.detach().numpy().T.ravel()
                          for m in model if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
                          for g in (m.weight.grad, m.bias.grad)])
    close(grads, ref, dtype)
