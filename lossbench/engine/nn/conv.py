"""Image layers with torch's semantics: conv2d, max_pool2d, avg_pool2d, flatten, batch_norm.

Data is NCHW, as in torch. Inside a convolution the image is channels-last: the padded
input is copied once into (N, H, W, C) order, a strided view of its k x k windows is
copied into one preallocated (N*Ho*Wo, kh*kw*C) buffer (im2col), and the convolution is
ONE matrix product with the weights. The output handed on is an NCHW *view* of the
channels-last result, so elementwise layers after it keep that memory order and the next
convolution's copy to channels-last is a straight copy. The input gradient is a gather,
not a col2im scatter: the output gradient is dilated by the stride and padded, im2col'd
the same way, and multiplied by the spatially flipped weights (one more matrix product).

Scratch buffers are reused from one batch to the next (one per purpose and mode; training
keeps the windows for the weight gradient, evaluation runs in chunks of images and keeps
nothing), so a backprop closure is valid until its layer's next forward pass in the same
mode; training does forward, then backward.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from lossbench.engine.nn.layers import LAYERS, Layer, init_affine
from lossbench.registry import AnyOf, Bool, Choice, Int, Optional, Real, fail


def _windows(a: np.ndarray, kh: int, kw: int, stride: int, oh: int, ow: int) -> np.ndarray:
    """(N, oh, ow, kh, kw, C) strided view of the k x k windows of channels-last `a`."""
    n, _, _, c = a.shape
    sn, sh, sw, sc = a.strides
    return as_strided(a, (n, oh, ow, kh, kw, c), (sn, sh * stride, sw * stride, sh, sw, sc), writeable=False)


class _Buffers:
    """Scratch arrays reused from batch to batch, one per purpose: a new shape (the last,
    smaller batch of an epoch) replaces the old array rather than adding a second one."""

    def __init__(self):
        self._arrays: dict = {}

    def _get(self, key, shape, dtype, make) -> np.ndarray:
        a = self._arrays.get(key)
        if a is None or a.shape != shape or a.dtype != dtype:
            a = self._arrays[key] = make(shape, dtype)
        return a

    def zeros(self, key, shape, dtype) -> np.ndarray:
        """A buffer whose padding border stays zero: only its interior is ever written."""
        return self._get(key, shape, np.dtype(dtype), np.zeros)

    def empty(self, key, shape, dtype) -> np.ndarray:
        return self._get(key, shape, np.dtype(dtype), np.empty)

    def ones(self, key, shape, dtype) -> np.ndarray:
        return self._get(key, shape, np.dtype(dtype), np.ones)


@LAYERS.register("conv2d", in_channels=Int(ge=1), out_channels=Int(ge=1), kernel_size=Int(ge=1),
                 stride=Int(ge=1), padding=AnyOf(Int(ge=0), Choice("same", "valid")), bias=Bool())
class Conv2d(Layer):
    """2-D convolution over NCHW images, torch.nn.Conv2d (square kernel, no dilation or groups).

    y[n, o] = b[o] + sum_c W[o, c] (*) x[n, c], W of shape (out_channels, in_channels, k, k)
    padding: zeros on each side (an integer), 'valid' (= 0) or 'same' (output size = input
    size; stride 1 only, an even kernel pads one more at the bottom/right, as torch does)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int | str = 0, bias: bool = True):
        k = kernel_size
        if padding == "same":
            if stride != 1:
                raise fail("model.padding", "'same' needs stride 1 (as in torch)", padding)
            self.pad = ((k - 1) // 2, k - 1 - (k - 1) // 2)
        else:
            p = 0 if padding == "valid" else int(padding)
            self.pad = (p, p)
        self.c_in, self.c_out, self.k, self.stride, self.bias = in_channels, out_channels, k, stride, bias
        self.shapes = ((out_channels, in_channels, k, k),) + (((out_channels,),) if bias else ())
        self._buf = _Buffers()

    def init(self, rng, scheme):
        k2 = self.k * self.k
        init_affine(self.params, rng, scheme, self.c_in * k2, self.c_out * k2)

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        lo, hi = self.pad
        return (h + lo + hi - self.k) // self.stride + 1, (w + lo + hi - self.k) // self.stride + 1

    def _im2col(self, xp: np.ndarray, oh: int, ow: int, mode: str) -> np.ndarray:
        """(images*oh*ow, k*k*c) windows of channels-last padded `xp`, rows in (n, oh, ow)
        order and columns in (kh, kw, c) order, copied into a reused buffer."""
        n, _, _, c = xp.shape
        k, s = self.k, self.stride
        if c == 1:
            # one channel: a window row would be k*k scattered floats; gather the transpose
            # instead, one contiguous image row per (offset, image, output row)
            cols_t = self._buf.empty((mode, "cols"), (k * k, n * oh * ow), xp.dtype)
            cols_t.reshape(k, k, n, oh, ow)[...] = _windows(xp, k, k, s, oh, ow)[..., 0].transpose(3, 4, 0, 1, 2)
            return cols_t.T
        cols = self._buf.empty((mode, "cols"), (n * oh * ow, k * k * c), xp.dtype)
        cols.reshape(n, oh, ow, k, k, c)[...] = _windows(xp, k, k, s, oh, ow)
        return cols

    def forward(self, x, train):
        n, c, h, w_ = x.shape
        k, s, (lo, hi) = self.k, self.stride, self.pad
        oh, ow = self.output_size(h, w_)
        if oh < 1 or ow < 1:
            raise ValueError(f"conv2d: a {h}x{w_} input is smaller than the {k}x{k} kernel")
        dt = x.dtype
        w = self.params[0]
        mode = "train" if train else "eval"
        wm = w.transpose(2, 3, 1, 0).reshape(k * k * c, self.c_out).astype(dt)  # rows in (kh, kw, c) order
        hp, wp = h + lo + hi, w_ + lo + hi
        if train:  # keep every image's windows: the weight gradient needs them
            # channels-last padded input: the border is zero once and stays zero
            xp = self._buf.zeros((mode, "xp"), (n, hp, wp, c), dt)
            xp[:, lo : lo + h, lo : lo + w_, :] = x.transpose(0, 2, 3, 1)
            cols_train = self._im2col(xp, oh, ow, mode)
            y = np.matmul(cols_train, wm)
        else:  # evaluation keeps nothing: chunks of images bound the memory of a large batch
            y = np.empty((n * oh * ow, self.c_out), dt)
            b = _chunk(oh * ow * k * k * c * dt.itemsize, n)
            xp = self._buf.zeros((mode, "xp"), (b, hp, wp, c), dt)
            for i in range(0, n, b):
                m = min(b, n - i)
                xp[:m, lo : lo + h, lo : lo + w_, :] = x[i : i + m].transpose(0, 2, 3, 1)
                np.matmul(self._im2col(xp[:m], oh, ow, mode), wm, out=y[i * oh * ow : (i + m) * oh * ow])
        if self.bias:
            y += self.params[1]
        out = y.reshape(n, oh, ow, self.c_out).transpose(0, 3, 1, 2)

        def backprop(dy, need_dx=True):
            # (N, O, oh, ow) -> rows (n, oh, ow), one column per output channel
            dyl = np.ascontiguousarray(dy.transpose(0, 2, 3, 1)).reshape(n * oh * ow, self.c_out)
            gw = self.grads[0]
            if not train:  # gradients in evaluation mode (rare): gather the windows now
                xpf = np.zeros((n, hp, wp, c), dt)
                xpf[:, lo : lo + h, lo : lo + w_, :] = x.transpose(0, 2, 3, 1)
                cols = self._im2col(xpf, oh, ow, "eval backprop")
            else:
                cols = cols_train
            gw[...] = np.matmul(cols.T, dyl).reshape(k, k, c, self.c_out).transpose(3, 2, 0, 1)
            if self.bias:  # column sums as a product with ones: 10x faster than sum(axis=0) on few columns
                self.grads[1][...] = np.matmul(self._buf.ones((mode, "ones"), (len(dyl),), dt), dyl)
            if not need_dx:
                return None
            # gather: dx[h] = sum_j D[h + j] Wflip[j] over the stride-dilated, padded dy
            # (the border and the stride's holes are never written: they stay zero)
            hh, ww = h + k - 1, w_ + k - 1
            dp = self._buf.zeros((mode, "dyp"), (n, hh, ww, self.c_out), dt)
            t0 = k - 1 - lo
            rh = _placed(t0, s, oh, hh)
            rw = _placed(t0, s, ow, ww)
            dyl4 = dyl.reshape(n, oh, ow, self.c_out)
            dp[:, rh[0], rw[0], :] = dyl4[:, rh[1], rw[1], :]
            wf = w[:, :, ::-1, ::-1].transpose(2, 3, 0, 1).reshape(k * k * self.c_out, c).astype(dt)
            dx = np.empty((n, h, w_, c), dt)
            # in chunks of images, so the gathered windows take at most about GATHER_CHUNK_BYTES
            b = _chunk(h * w_ * k * k * self.c_out * dt.itemsize, n, GATHER_CHUNK_BYTES)
            cols2 = self._buf.empty((mode, "cols2"), (b * h * w_, k * k * self.c_out), dt)
            for i in range(0, n, b):
                m = min(b, n - i)
                part = cols2[: m * h * w_]
                part.reshape(m, h, w_, k, k, self.c_out)[...] = _windows(dp[i : i + m], k, k, 1, h, w_)
                np.matmul(part, wf, out=dx[i : i + m].reshape(m * h * w_, c))
            return dx.transpose(0, 3, 1, 2)

        return out, backprop


CHUNK_BYTES = 64 << 20  # gathered windows per matrix product: large, as OpenBLAS is slow on short matrices
# ... except the input gradient's product (k*k*out_channels columns, in_channels outputs): on
# 2c2d's second convolution 4 MB chunks took 27 ms where 64 MB took 45 (cache-resident windows)
GATHER_CHUNK_BYTES = 4 << 20
POOL_CHUNK_BYTES = 2 << 20  # images per pooling pass: about the 2 MB of one core's L2 cache


def _chunk(bytes_per_image: int, n: int, limit: int = CHUNK_BYTES) -> int:
    """Images per chunk so one chunk's gathered windows take about CHUNK_BYTES (at least one image)."""
    return max(1, min(n, limit // max(1, bytes_per_image)))


def _placed(t0: int, s: int, o: int, length: int) -> tuple[slice, slice]:
    """Where output rows 0..o-1 land in the dilated, padded gradient (row t0 + i*s) and
    which of them land inside [0, length): (destination slice, source slice)."""
    first = -(t0 // s) if t0 < 0 else 0  # ceil(-t0 / s): the first row at or after 0
    last = min(o - 1, (length - 1 - t0) // s)
    if last < first:
        return slice(0, 0), slice(0, 0)
    return slice(t0 + first * s, t0 + last * s + 1, s), slice(first, last + 1)


def _offsets(k: int, s: int, oh: int, ow: int):
    """(index a*k + b, slices picking offset (a, b) of every window), in row-major order.

    Pooling runs offset by offset over whole strided views: k*k elementwise passes that
    keep the input's memory layout (channels-last stays channels-last)."""
    for a in range(k):
        for b in range(k):
            yield a * k + b, (slice(None), slice(None), slice(a, a + s * (oh - 1) + 1, s),
                              slice(b, b + s * (ow - 1) + 1, s))


class _Pool(Layer):
    """What max and average pooling share: k x k windows every `stride` (default k)."""

    def __init__(self, kernel_size: int = 2, stride: int | None = None):
        self.k, self.s = kernel_size, stride or kernel_size

    def windows(self, x: np.ndarray) -> tuple[int, int, list]:
        """(output height, output width, _offsets of x's windows); no padding and floor
        division, torch's defaults."""
        k, s = self.k, self.s
        h, w = x.shape[2:]
        oh, ow = (h - k) // s + 1, (w - k) // s + 1
        if oh < 1 or ow < 1:
            raise ValueError(f"pool: a {h}x{w} input is smaller than the {k}x{k} window")
        return oh, ow, list(_offsets(k, s, oh, ow))


@LAYERS.register("max_pool2d", kernel_size=Int(ge=1), stride=Optional(Int(ge=1)))
class MaxPool2d(_Pool):
    """Maximum over k x k windows, torch.nn.MaxPool2d (no padding; stride defaults to the kernel).

    y = max of each window; the gradient goes to the FIRST maximum of a window in row-major
    order, as torch's does (a constant window passes it to its top-left element only)
    """

    def forward(self, x, train):
        k, s = self.k, self.s
        oh, ow, offsets = self.windows(x)
        y = np.empty_like(x[offsets[0][1]], order="K")  # x's memory layout (channels-last stays so)
        arg = np.zeros_like(y, dtype=np.uint8 if k * k < 256 else np.int32) if train else None
        # a few images at a time: the k*k passes then re-read a chunk from cache, not memory
        # (measured 2-3x faster on 32-channel 28x28 batches than whole-batch passes)
        b = _chunk(x[0].nbytes, len(x), POOL_CHUNK_BYTES)
        for i in range(0, len(x), b):
            self._max(x[i : i + b], offsets, y[i : i + b], arg[i : i + b] if train else None)

        def backprop(dy, need_dx=True):
            if not need_dx:
                return None
            # the layout of x; zeros unless the windows tile x exactly (every element written)
            tiles = s == k and x.shape[2] == k * oh and x.shape[3] == k * ow
            dx = (np.empty_like if tiles else np.zeros_like)(x, dtype=dy.dtype)
            for i in range(0, len(x), b):
                self._route(dy[i : i + b], arg[i : i + b], offsets, dx[i : i + b])
            return dx

        return y, backprop

    @staticmethod
    def _max(x, offsets, y, arg) -> None:
        """y = the windows' maxima of x; arg (if given) = the offset of each window's first maximum."""
        y[...] = x[offsets[0][1]]
        if arg is not None:
            gt, moved = np.empty_like(arg, dtype=bool), np.empty_like(arg)
        for i, at in offsets[1:]:
            v = x[at]
            if arg is not None:
                # strictly greater, so of tied maxima the first keeps the window; offsets
                # come in increasing order, so max(arg, i * gt) sets arg = i where gt
                # (branch-free: a masked copy is several times slower on random masks)
                np.greater(v, y, out=gt)
                np.multiply(gt, arg.dtype.type(i), out=moved)
                np.maximum(arg, moved, out=arg)
            np.maximum(y, v, out=y)

    def _route(self, dy, arg, offsets, dx) -> None:
        """dx[window's first maximum] += dy, for dx zeroed or tiled exactly by the windows."""
        for i, at in offsets:
            if self.s >= self.k:  # windows do not overlap: each element gets one window's share
                np.multiply(dy, arg == i, out=dx[at])
            else:
                dx[at] += np.where(arg == i, dy, 0)


@LAYERS.register("avg_pool2d", kernel_size=Int(ge=1), stride=Optional(Int(ge=1)))
class AvgPool2d(_Pool):
    """Mean over k x k windows, torch.nn.AvgPool2d (no padding; stride defaults to the kernel).

    y = mean of each window; each element of a window gets dy / k^2
    """

    def forward(self, x, train):
        k = self.k
        _, _, offsets = self.windows(x)
        y = x[offsets[0][1]].copy(order="K")
        for _, at in offsets[1:]:
            y += x[at]
        y *= x.dtype.type(1.0 / (k * k))

        def backprop(dy, need_dx=True):
            if not need_dx:
                return None
            share = dy * dy.dtype.type(1.0 / (k * k))
            dx = np.zeros_like(x, dtype=dy.dtype)
            for _, at in offsets:
                dx[at] += share
            return dx

        return y, backprop


@LAYERS.register("flatten")
class Flatten(Layer):
    """Images to vectors, torch.nn.Flatten: (N, C, H, W) -> (N, C*H*W) in (C, H, W) order."""

    def forward(self, x, train):
        def backprop(dy, need_dx=True):
            if not need_dx:
                return None
            # in x's memory layout (channels-last after a convolution), so the layers below
            # work on operands of one layout: mixed layouts made a pooling backward 3x slower
            dx = np.empty_like(x, dtype=dy.dtype)
            dx[...] = dy.reshape(x.shape)
            return dx

        return x.reshape(len(x), -1), backprop


@LAYERS.register("batch_norm", num_features=Int(ge=1), eps=Real(gt=0), momentum=Real(ge=0, le=1))
class BatchNorm(Layer):
    """Batch normalization of features (N, F) or channels (N, C, H, W), torch.nn.BatchNorm1d/2d.

    training: y = weight (x - mean) / sqrt(var + eps) + bias with the batch's mean and
    biased variance per feature/channel; running_mean and running_var (buffers, not
    parameters) move by `momentum` towards the batch mean and the unbiased variance
    evaluation: the same with running_mean and running_var
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        self.f, self.eps, self.momentum = num_features, eps, momentum
        self.shapes = ((num_features,), (num_features,))
        self.running_mean = np.zeros(num_features, np.float32)
        self.running_var = np.ones(num_features, np.float32)

    def bind(self, params, grads):
        super().bind(params, grads)
        # statistics in the parameters' precision (a float64 copy of a model keeps its values)
        dt = params[0].dtype
        self.running_mean = self.running_mean.astype(dt, copy=False)
        self.running_var = self.running_var.astype(dt, copy=False)

    def init(self, rng, scheme):
        # torch's BatchNorm starts as the identity whatever the init scheme of the model
        self.params[0][...] = 1.0
        self.params[1][...] = 0.0

    def forward(self, x, train):
        if x.ndim not in (2, 4) or x.shape[1] != self.f:
            raise ValueError(f"batch_norm: expected (N, {self.f}) or (N, {self.f}, H, W) input, got {x.shape}")
        axes = (0,) if x.ndim == 2 else (0, 2, 3)
        bshape = (1, self.f) + (1,) * (x.ndim - 2)
        dt = x.dtype
        gamma, beta = self.params
        m = x.size // self.f
        if train:
            mean = x.mean(axis=axes, dtype=dt)
            xc = x - mean.reshape(bshape)
            var = np.mean(xc * xc, axis=axes, dtype=dt)
            mom = self.momentum
            unbiased = var * (m / (m - 1)) if m > 1 else var
            self.running_mean *= 1 - mom
            self.running_mean += mom * mean
            self.running_var *= 1 - mom
            self.running_var += mom * unbiased
        else:
            mean, var = self.running_mean.astype(dt), self.running_var.astype(dt)
            xc = x - mean.reshape(bshape)
        inv = (1.0 / np.sqrt(var + dt.type(self.eps))).astype(dt)
        xhat = xc * inv.reshape(bshape)
        y = xhat * gamma.astype(dt).reshape(bshape) + beta.astype(dt).reshape(bshape)

        def backprop(dy, need_dx=True):
            gg, gb = self.grads
            dy.sum(axis=axes, out=gb)
            np.sum(dy * xhat, axis=axes, out=gg)
            if not need_dx:
                return None
            scale = (gamma * inv).astype(dt).reshape(bshape)
            if not train:  # the statistics are constants in evaluation mode
                return dy * scale
            # d/dx of the batch statistics: dx = g inv (dy - mean(dy) - xhat mean(dy xhat))
            dx = dy - (gb / m).astype(dt).reshape(bshape)
            dx -= xhat * (gg / m).astype(dt).reshape(bshape)
            dx *= scale
            return dx

        return y, backprop
