"""Which runs train together as one stacked model (`run --stack auto|off|N`).

Runs stack when they share the dataset (the same mapping: content and split), the model
(architecture and options; the seed may differ), the batches (batch size, full batch or
not, shuffling) and the number of epochs; loss, optimizer, schedule and early stopping
may differ. Image models never stack (their layers take no run axis), nor do runs whose
optimizer runs alone (lbfgs).

`auto` stacks where it is faster: a small model's step is NumPy's per-call overhead, which
a stack pays once for K runs; a large one is BLAS-bound, and stacking it would only delay
its first record. The bound is on parameters x batch size (see AUTO_WORK).
"""

from __future__ import annotations

import json
import math

from lossbench import data
from lossbench.engine import losses, nn, optimizers
from lossbench.engine.train import TrainConfig, full_batch, model_outputs
from lossbench.registry import AnyOf, Choice, Int, split_named
from lossbench.sweep.spec import RunSpec

STACK = AnyOf(Choice("auto", "off"), Int(ge=1))
# auto stacks a model when parameters x batch size is at most this: an MLP 2-64-64-3 at
# batch 128 (0.6 M) stacks, the MNIST MLP 784-256-128-10 at batch 128 (30 M) does not
AUTO_WORK = 2_000_000
MAX_STACK = 64
# a stack's parameter-sized buffers (weights, gradients, optimizer state and scratch:
# at most 8 copies) stay under this many bytes
MEMORY_BUDGET = 256 << 20


def plan_stacks(todo: list[RunSpec], stack, workers: int, datasets: dict) -> list[list[RunSpec]]:
    """`todo` cut into stacks (lists of RunSpecs trained as one; a single run is a stack of
    one), in the order of their first run. With several workers a group is spread over
    them rather than trained as one stack on one worker."""
    STACK.check("stack", stack)
    if stack == "off" or stack == 1:
        return [[s] for s in todo]
    groups: dict[str, list[RunSpec]] = {}
    for spec in todo:
        groups.setdefault(_key(spec), []).append(spec)
    stacks = []
    for specs in groups.values():
        cap = _cap(specs[0], stack, datasets)
        if cap <= 1:
            stacks += [[s] for s in specs]
            continue
        n = max(math.ceil(len(specs) / cap), min(workers, len(specs)))
        size = math.ceil(len(specs) / n)
        stacks += [specs[i : i + size] for i in range(0, len(specs), size)]
    first = {s.run_id: i for i, s in enumerate(todo)}
    return sorted(stacks, key=lambda st: first[st[0].run_id])


def _batches(cfg: dict) -> tuple:
    train = TrainConfig.of(cfg.get("train") or {})
    full = full_batch(train, split_named("optimizer", cfg["optimizer"], "optimizer")[0])
    return "full" if full else train.batch_size, train.epochs, train.shuffle


def _key(spec: RunSpec) -> str:
    cfg = spec.config
    return json.dumps([cfg["dataset"], cfg["model"], _batches(cfg), _outputs(cfg), _alone(spec)], sort_keys=True,
                      default=str)


def _alone(spec: RunSpec) -> str | None:
    """A run whose optimizer runs alone (lbfgs: its steps re-evaluate its own loss) is a
    group of its own, keyed by its run id; None for the others."""
    name = split_named("optimizer", spec.config["optimizer"], "optimizer")[0]
    return spec.run_id if name in optimizers.OPTIMIZERS and optimizers.needs_closure(name) else None


def _outputs(cfg: dict) -> tuple:
    """What, besides the data, decides the model's number of outputs: the loss's kind of
    target (bce on two classes has one output, cross_entropy two) and outputs per target."""
    name = split_named("loss", cfg["loss"], "loss")[0]
    loss = losses.LOSSES.get(name) if name in losses.LOSSES.names() else None
    return (loss.target, loss.outputs_per_target) if loss is not None else (name,)


def _cap(spec: RunSpec, stack, datasets: dict) -> int:
    """How many runs like `spec` may share a stack: 1 if its model cannot stack."""
    cfg = spec.config
    try:
        d = data.load_spec(cfg["dataset"], datasets)  # loaded while validating: no second load
        name, options = split_named("model", cfg["model"], "model")
        loss_name, loss_kw = split_named("loss", cfg["loss"], "loss")
        n_out = model_outputs(losses.build(loss_name, **loss_kw), loss_name, d.task, d.n_outputs, d.name)
        model = nn.plan(name, d.n_features, n_out, 0, d.image_shape, **options)
    except Exception:  # noqa: BLE001  (alone, the run records what is wrong with it)
        return 1
    if not model.stackable:
        return 1
    n_params = model.n_params
    batch = _batches(cfg)[0]
    if stack == "auto" and n_params * (len(d.x_train) if batch == "full" else batch) > AUTO_WORK:
        return 1
    fits = max(1, MEMORY_BUDGET // (n_params * 8 * 4))
    return min(MAX_STACK if stack == "auto" else stack, fits)
