"""Oracle probes of a Python nn.Module: the Python half of the C++ PyModuleProbeTarget.

The C++ prober (groupmates._engine; inside on_step, or on its probe thread) calls these functions with the GIL held:

    clone(model, optimizer)                 deep copy of the weights AND the optimizer state
    train_step(model, optimizer, loss_fn, tokens, lr_scale, grad_clip)
                                            one real optimizer step, lr temporarily * lr_scale
    reference_loss(model, loss_fn, reference_batches)
                                            mean loss, torch.no_grad(), eval mode
    weights(model)                          the trainable parameters, in order (first-order labels)
    reference_gradient(model, loss_fn, reference_batches)
                                            d mean reference loss / d weights(model), eval mode

They only ever run on copies: the live model and optimizer are read (deep-copied) in clone(),
which GroupMatesLoader.on_step calls on the trainer's thread, and never written.

A rollout from weights theta: R_0 = reference loss; for t = 1..L one optimizer step on the t-th
batch, R_t = reference loss; s_t = R_t - R_0; label y_t = s_t - s_{t-1} (y_1 = s_1).
"""
import copy
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from ._extensions import require_engine
from .errors import config_error

LossFn = Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]


def next_token_loss(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """The default loss_fn: model(tokens[:, :-1]) are logits [B, T-1, V] of tokens[:, 1:]."""
    logits = model(tokens[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), tokens[:, 1:].reshape(-1))


def clone(model: torch.nn.Module, optimizer: torch.optim.Optimizer):
    """(model copy, optimizer copy): one copy.deepcopy of the pair, so the copied optimizer's
    param_groups and per-parameter state refer to the copy's parameters (any param groups, any
    optimizer class; works on torch 1.13 and 2.x). Gradients are not copied."""
    with torch.no_grad():
        m, opt = copy.deepcopy((model, optimizer))
    for p in m.parameters():
        p.grad = None
    return m, opt


def train_step(model, optimizer, loss_fn, tokens, lr_scale: float, grad_clip: float) -> float:
    """zero_grad, loss, backward, clip_grad_norm_(grad_clip), step with every group's lr * lr_scale."""
    device = _device_of(model)
    if tokens.device != device:
        tokens = tokens.to(device)
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model, tokens)
    value = float(loss.detach())
    loss.backward()
    if grad_clip > 0:
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    saved = [g["lr"] for g in optimizer.param_groups]
    try:
        if lr_scale != 1.0:
            for g in optimizer.param_groups:
                g["lr"] = g["lr"] * lr_scale
        optimizer.step()
    finally:
        for g, lr in zip(optimizer.param_groups, saved):
            g["lr"] = lr
    return value


def reference_loss(model, loss_fn, reference_batches) -> float:
    """Mean of loss_fn over the reference batches, under torch.no_grad() in eval mode (restored)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            total = 0.0
            for batch in reference_batches:
                total += float(loss_fn(model, batch))
    finally:
        model.train(was_training)
    return total / len(reference_batches)


def weights(model) -> list:
    """The parameters an optimizer step changes (requires_grad), in module order."""
    return [p for p in model.parameters() if p.requires_grad]


def reference_gradient(model, loss_fn, reference_batches) -> list:
    """d (mean of loss_fn over the reference batches) / d weights(model), in eval mode (restored);
    zeros for a weight the loss does not use. The parameters' .grad are left untouched."""
    params = weights(model)
    was_training = model.training
    model.eval()
    total = [torch.zeros_like(p) for p in params]
    try:
        with torch.enable_grad():
            for batch in reference_batches:  # one batch's graph at a time, as reference_loss
                grads = torch.autograd.grad(loss_fn(model, batch) / len(reference_batches), params, allow_unused=True)
                for t, g in zip(total, grads):
                    if g is not None:
                        t.add_(g.detach())
    finally:
        model.train(was_training)
    return total


def _device_of(model):
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def make_target(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Optional[LossFn] = None,
                reference_batches: Optional[Sequence[torch.Tensor]] = None, grad_clip: float = 1.0):
    """(target, ops): a C++ PyModuleProbeTarget over the live model (what GroupMatesLoader.on_step
    hands the prober) and its callbacks' record (ops.last_error, ops.errors: Python exceptions
    raised by probes, e.g. by loss_fn on the probe thread).

    reference_batches: held-out token batches (LongTensor [B, T] each, or one [N, T] tensor),
    moved to the model's device once. loss_fn(model, tokens) -> scalar tensor (default
    next_token_loss)."""
    engine = require_engine("probes of a Python model")
    if not isinstance(model, torch.nn.Module):
        raise config_error("on_step.model", f"expected a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise config_error("on_step.optimizer", f"expected a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if reference_batches is None:
        raise config_error("on_step.reference_batches",
                           "probes need held-out reference batches (LongTensor [B, T] each): the labels are changes "
                           "of the loss on them")
    if isinstance(reference_batches, torch.Tensor):
        reference_batches = [reference_batches]
    refs = list(reference_batches)
    if not refs or any(not isinstance(r, torch.Tensor) or r.dim() != 2 for r in refs):
        raise config_error("on_step.reference_batches", "expected a non-empty list of token tensors [B, T]")
    device = _device_of(model)
    refs = [r.to(device=device, dtype=torch.int64) for r in refs]
    ops = engine._ProbeOps(clone, train_step, reference_loss, weights, reference_gradient)
    target = engine._make_py_target(ops, model, optimizer, loss_fn or next_token_loss, refs, str(device),
                                    float(grad_clip))
    return target, ops
