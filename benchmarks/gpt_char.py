"""Character-level GPT benchmark: the reference tinytorch against the same model in hand-written numpy and in PyTorch.

Run from the repository root (the corpus is the running Python's own standard library, tito.corpus):

    python benchmarks/gpt_char.py                           # Milestone 3's recipe, 600 steps, all three
    python benchmarks/gpt_char.py --only tinytorch,numpy    # some of the contenders
    python benchmarks/gpt_char.py --steps 20 --samples 16   # a quick look: 20 steps, 16 samples
    python benchmarks/gpt_char.py --config long             # the larger configuration (see below)
    python benchmarks/gpt_char.py --check                   # exit 1 unless the three compute the same model
    python benchmarks/gpt_char.py --package build/reference/tinytorch   # an exported package instead of source/

What is compared. Three contenders train the same character-level GPT with the same recipe on the same
batches, one after the other, each in its own process (the script runs itself with --contender NAME),
so that each one's peak memory is its own; every one uses ONE BLAS thread (and torch.set_num_threads(1)):
  tinytorch  the reference package, exported from the solutions in source/ by the exporter students use
             (or the package given with --package), built and trained as the Milestone 3 judge does
             (milestones/generation/test_chatgpt_milestone.py): np.random.seed(seed), then
             GPT(GPTConfig(...)), CharTokenizer.from_text, AdamW, WarmupCosineLR, and fit_gpt's step
             (zero_grad, gpt_loss(model(x), y).backward(), clip_grad_norm, optimizer.step,
             scheduler.step), written out here so that each step can be timed.
  numpy      the same model written by hand in float32 with its forward and backward passes (no
             autograd): token embedding + learned position embedding; pre-norm blocks
             x = x + attn(ln1(x)), x = x + ff(ln2(x)) with one Linear(C, 3C) for q, k, v, causal
             softmax(q k^T / sqrt(D)) v over (B, H, T, D) as batched matmuls, Linear(C, C);
             ff = Linear(C, 4C) - GELU (tanh approximation) - Linear(4C, C); final LayerNorm; head
             Linear(C, V); mean cross-entropy; the embedding gradient as one one-hot matmul; AdamW,
             gradient clipping and the warm-up + cosine schedule exactly as tinytorch's.
  torch      PyTorch on the CPU (when it is installed; it is not a dependency of the course): the same
             model with nn.Embedding, nn.LayerNorm, nn.Linear, F.gelu(approximate="tanh") and
             F.scaled_dot_product_attention(is_causal=True); torch.optim.AdamW (eps 1e-8),
             clip_grad_norm_ and LambdaLR with tinytorch's schedule.
All contenders have biases everywhere and LayerNorms with weight and bias (eps 1e-5), no dropout.
The numpy and torch contenders start from the same weights, drawn as tinytorch's layers draw theirs
(Embedding 0.02 * N(0, 1), Linear He-uniform with zero biases, LayerNorm 1 and 0) from
default_rng(seed); tinytorch draws its own from np.random.seed(seed), as the judge does. The batches
are drawn once per process from default_rng(seed) with sample_batch's logic (random starts s,
x = data[s:s+T], y = data[s+1:s+T+1]), so every contender sees the same batches in the same order, and
the same ones as fit_gpt(seed=seed) would.

Measured, for each contender: the seconds per step (median over the steps after the first 5; its CPU
seconds beside it, which matters on a machine shared with other work) and the tokens per second
(B * T / that median), the training time (every step), the peak memory (ru_maxrss of its process),
the validation loss in nats per character (64 evenly spaced windows of the validation text, from the
logits, in float64 numpy: the judge's validation_loss), and generation: --samples functions (128)
sampled in one batch from the prompt "def " (after a blank line) at temperature 0.5, each until it ends
with a blank line ("\\n\\n") or after 600 new characters, finished rows leaving the batch, the window
cropped to the last `context` tokens; the same sampling loop and random draws for everyone (the judge's
sample_ids(); each contender only supplies its logits for the window). Reported: functions per second
the share that ast.parse reads as exactly one FunctionDef (what the judge counts) and the share that
also compile()s (the judge's read_function; nothing generated is ever executed). Then a table side by side, the ratios of the
seconds per step (tinytorch / numpy, tinytorch / PyTorch), the GFLOP/s each contender's matrix products
reach (step_flops(), about 23 GFLOP per step, over its median CPU seconds) beside this machine's one-thread
float32 GEMM peak (benchmarks/gemm_peak.py), and the first 3 samples of each contender.

Configurations (--config; the recipe is milestones/generation/milestone.yml's judge section):
  judge  Milestone 3's model and recipe: 4 layers, d_model 128, 4 heads, context 128, batch 32, AdamW
         (lr 3e-3, weight_decay 0.01), 50 warm-up steps then cosine down to 3e-4, gradient norm
         clipped to 1.0, 600 steps, seed 0; 128 samples at temperature 0.5.
  long   the same model trained longer, to reach >= 70% parsing functions within 15 minutes of
         tinytorch training: 1600 steps (about 0.5 s each for tinytorch here, one BLAS thread). Its
         numbers are in milestones/generation/README.md; try --steps 20 first to see what a step costs
         on your machine.
--steps N trains N steps with the schedule fitted to them (the warm-up is at most a tenth of them).

--check runs no benchmark: it builds the three models with the same weights (the numpy model's, copied
into tinytorch's GPT in model.parameters() order and into the torch model), compares the loss and every
parameter's gradient on one batch (8 windows of the configuration's context; relative difference
||g - g_numpy|| / ||g_numpy|| <= 1e-4), then the parameters after 3 steps of clipping + AdamW + schedule
(<= 1e-4 relative; the key third of the qkv biases left out, as its exact gradient is 0), and whether
tinytorch's sample_batch draws the benchmark's batches; it exits 1 if anything disagrees.
"""

import os

# One BLAS thread for every contender, set before numpy (or torch) is imported.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import yaml  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo, when not installed
from benchmarks.gemm_peak import add_malloc_option, apply_malloc_option, print_rates  # noqa: E402
from tito.course import REPO  # noqa: E402

MILESTONE = yaml.safe_load((REPO / "milestones" / "generation" / "milestone.yml").read_text())
CONTENDERS = {"tinytorch": "tinytorch", "numpy": "numpy", "torch": "PyTorch"}
EPS_LN = 1e-5  # LayerNorm's epsilon, as in tinytorch and PyTorch
GELU_C = math.sqrt(2 / math.pi)

TIMING_WARMUP = 5  # steps left out of the median seconds per step
CHECK_BATCH, CHECK_STEPS, CHECK_RTOL = 8, 3, 1e-4
SHOWN_LINES = 20  # of each sample printed at the end


def step_flops(cfg, vocab_size=97):
    """The matrix-product arithmetic of one training step, forward and backward (3x the forward): per
    block the q/k/v, output and two feed-forward products, the attention scores q k^T and their
    weighted sum of v; the head (the embedding gradient is a one-hot product, left out)."""
    tokens, C, T = cfg["batch_size"] * cfg["context"], cfg["d_model"], cfg["context"]
    block = 2 * tokens * C * (3 * C + C + 4 * C + 4 * C) + 2 * (2 * tokens * T * C)
    return 3 * (cfg["n_layers"] * block + 2 * tokens * C * vocab_size)


def configuration(name, steps=None, samples=None):
    """The recipe (milestone.yml's judge section) with the model of a configuration."""
    cfg = dict(MILESTONE["judge"])
    if name == "judge":  # milestone.yml's default build_model
        cfg.update(n_layers=4, d_model=128, n_heads=4)
    else:
        cfg.update(n_layers=4, d_model=128, n_heads=4, steps=1600)
    if steps:
        cfg["steps"] = steps
    cfg["warmup_steps"] = min(cfg["warmup_steps"], cfg["steps"] // 10)
    if samples:
        cfg["samples"] = samples
    return cfg


def describe(cfg):
    return (
        f"GPT {cfg['n_layers']} layers, d_model {cfg['d_model']}, {cfg['n_heads']} heads, context "
        f"{cfg['context']}; AdamW lr {cfg['lr']:g} (weight_decay {cfg['weight_decay']:g}), {cfg['warmup_steps']} "
        f"warm-up steps then cosine to {cfg['min_lr']:g}, clip {cfg['clip_norm']:g}; batch {cfg['batch_size']}, "
        f"{cfg['steps']} steps, seed {cfg['seed']}; {cfg['samples']} samples at temperature {cfg['temperature']:g}; "
        "1 BLAS thread"
    )


def lr_at(cfg, t):
    """tinytorch's WarmupCosineLR at step t: linear warm-up from 0, then a half cosine down to min_lr."""
    if t < cfg["warmup_steps"]:
        return cfg["lr"] * t / cfg["warmup_steps"]
    p = min(1.0, (t - cfg["warmup_steps"]) / (cfg["steps"] - cfg["warmup_steps"]))
    return cfg["min_lr"] + (cfg["lr"] - cfg["min_lr"]) * (1 + math.cos(math.pi * p)) / 2


# ---------------------------------------------------------------------------------- the data
def judge_module():
    from milestones.generation import test_chatgpt_milestone as m3

    return m3


def load_text():
    """(training text, validation text, vocabulary, training ids, validation ids)."""
    m3 = judge_module()
    corpus = m3.corpus()
    train_text, val_text = corpus.train_text, corpus.validation_text
    vocab = m3.vocabulary(train_text)  # "\x00" + the sorted characters of the training text
    return train_text, val_text, vocab, m3.encode(vocab, train_text), m3.encode(vocab, val_text)


def batches(data, cfg, steps=None, batch_size=None):
    """The batches of every contender: sample_batch's draws from default_rng(seed), one step after the other."""
    rng = np.random.default_rng(cfg["seed"])
    B, T = batch_size or cfg["batch_size"], cfg["context"]
    for _ in range(cfg["steps"] if steps is None else steps):
        starts = rng.integers(0, len(data) - T, size=B)
        idx = starts[:, None] + np.arange(T)
        yield data[idx], data[idx + 1]


# ---------------------------------------------------------------------------------- the numpy GPT
def parameter_shapes(cfg, vocab_size):
    """[(name, shape)] in the order of tinytorch's GPT(...).parameters(); Linear weights are (in, out)."""
    C, V = cfg["d_model"], vocab_size
    shapes = [("tokens.weight", (V, C)), ("positions.weight", (cfg["context"], C))]
    for i in range(cfg["n_layers"]):
        p = f"blocks.{i}."
        shapes += [(p + "ln1.weight", (C,)), (p + "ln1.bias", (C,))]
        shapes += [(p + "attn.qkv.weight", (C, 3 * C)), (p + "attn.qkv.bias", (3 * C,))]
        shapes += [(p + "attn.proj.weight", (C, C)), (p + "attn.proj.bias", (C,))]
        shapes += [(p + "ln2.weight", (C,)), (p + "ln2.bias", (C,))]
        shapes += [(p + "ff.fc1.weight", (C, 4 * C)), (p + "ff.fc1.bias", (4 * C,))]
        shapes += [(p + "ff.fc2.weight", (4 * C, C)), (p + "ff.fc2.bias", (C,))]
    shapes += [("ln_f.weight", (C,)), ("ln_f.bias", (C,)), ("head.weight", (C, V)), ("head.bias", (V,))]
    return shapes


def initial_parameters(cfg, vocab_size, rng):
    """tinytorch's initialisation from rng: embeddings 0.02 N(0,1), Linear He-uniform, zero biases, LN 1/0."""
    params = []
    for name, shape in parameter_shapes(cfg, vocab_size):
        if name in ("tokens.weight", "positions.weight"):
            value = 0.02 * rng.standard_normal(shape)
        elif name.endswith(".bias"):
            value = np.zeros(shape)
        elif len(shape) == 1:  # a LayerNorm's weight
            value = np.ones(shape)
        else:
            bound = math.sqrt(6.0 / shape[0])
            value = rng.uniform(-bound, bound, size=shape)
        params.append(value.astype(np.float32))
    return params


def layer_norm(x, w, b):
    """LayerNorm over the last axis of x (N, C); returns the output and what the backward pass needs."""
    mean = x.mean(axis=-1, keepdims=True)
    xhat = x - mean
    var = np.einsum("ij,ij->i", xhat, xhat)[:, None] / np.float32(x.shape[-1])
    inv = 1 / np.sqrt(var + np.float32(EPS_LN))
    xhat *= inv
    return xhat * w + b, (xhat, inv)


def layer_norm_backward(dy, w, cache):
    """(dx, dweight, dbias) of layer_norm for the upstream gradient dy (N, C)."""
    xhat, inv = cache
    dw = np.einsum("ij,ij->j", dy, xhat)
    db = dy.sum(axis=0)
    g = dy * w
    c = np.float32(1 / g.shape[-1])
    dx = g - g.sum(axis=-1, keepdims=True) * c
    dx -= xhat * (np.einsum("ij,ij->i", g, xhat)[:, None] * c)
    dx *= inv
    return dx, dw, db


class NumpyGPT:
    """The GPT, forward and backward by hand: activations as (B*T, C) matrices, attention as (B, H, T, T)."""

    def __init__(self, cfg, vocab_size, params):
        self.cfg, self.V = cfg, vocab_size
        self.names = [name for name, _ in parameter_shapes(cfg, vocab_size)]
        self.params = params  # float32 arrays, updated in place by the optimizer
        self.p = dict(zip(self.names, params))
        self.masks = {}

    def _mask(self, T):
        """(T, T) float32: 0 where a query may look, -inf above the diagonal (the future)."""
        if T not in self.masks:
            self.masks[T] = np.where(np.triu(np.ones((T, T), dtype=bool), k=1), -np.inf, 0).astype(np.float32)
        return self.masks[T]

    def forward(self, ids, caches=None):
        """Logits (B*T, V) for token ids (B, T); with caches (a list), keep what backward() needs."""
        p, cfg = self.p, self.cfg
        B, T = ids.shape
        C, H = cfg["d_model"], cfg["n_heads"]
        D = C // H
        scale = np.float32(1 / math.sqrt(D))
        x = p["tokens.weight"][ids.reshape(-1)]  # (N, C)
        x.reshape(B, T, C)[...] += p["positions.weight"][:T]
        mask = self._mask(T)
        for i in range(cfg["n_layers"]):
            pre = f"blocks.{i}."
            a, ln1 = layer_norm(x, p[pre + "ln1.weight"], p[pre + "ln1.bias"])
            qkv = a @ p[pre + "attn.qkv.weight"]
            qkv += p[pre + "attn.qkv.bias"]
            q, k, v = qkv.reshape(B, T, 3, H, D).transpose(2, 0, 3, 1, 4)  # each (B, H, T, D), views
            att = q @ k.transpose(0, 1, 3, 2)  # (B, H, T, T)
            att *= scale
            att += mask
            att -= att.max(axis=-1, keepdims=True)
            np.exp(att, out=att)
            att /= att.sum(axis=-1, keepdims=True)
            o = (att @ v).transpose(0, 2, 1, 3).reshape(B * T, C)  # heads merged: (N, C)
            y = o @ p[pre + "attn.proj.weight"]
            y += p[pre + "attn.proj.bias"]
            x = x + y
            a2, ln2 = layer_norm(x, p[pre + "ln2.weight"], p[pre + "ln2.bias"])
            u = a2 @ p[pre + "ff.fc1.weight"]
            u += p[pre + "ff.fc1.bias"]
            t = np.tanh(np.float32(GELU_C) * (u + np.float32(0.044715) * (u * u * u)))
            g = u * (np.float32(0.5) * (1 + t))  # GELU, tanh approximation
            y = g @ p[pre + "ff.fc2.weight"]
            y += p[pre + "ff.fc2.bias"]
            x = x + y
            if caches is not None:
                caches.append((a, ln1, q, k, v, att, o, a2, ln2, u, t, g))
        hf, lnf = layer_norm(x, p["ln_f.weight"], p["ln_f.bias"])
        logits = hf @ p["head.weight"]
        logits += p["head.bias"]
        if caches is not None:
            caches.append((hf, lnf))
        return logits

    def logits(self, ids):
        return self.forward(ids).reshape(*ids.shape, self.V)

    def loss_and_grads(self, ids, targets):
        """Mean cross-entropy of the next characters and the gradient of every parameter (in self.names order)."""
        p, cfg = self.p, self.cfg
        B, T = ids.shape
        C, H = cfg["d_model"], cfg["n_heads"]
        D, N = C // H, B * T
        scale = np.float32(1 / math.sqrt(D))
        caches = []
        z = self.forward(ids, caches)
        rows, y = np.arange(N), targets.reshape(-1)
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        loss = -float(np.mean(np.log(z[rows, y])))
        z[rows, y] -= 1
        dz = z * np.float32(1 / N)
        grads = {}
        hf, lnf = caches.pop()
        grads["head.weight"], grads["head.bias"] = hf.T @ dz, dz.sum(axis=0)
        dx, grads["ln_f.weight"], grads["ln_f.bias"] = layer_norm_backward(
            dz @ p["head.weight"].T, p["ln_f.weight"], lnf
        )
        for i in range(cfg["n_layers"] - 1, -1, -1):
            pre = f"blocks.{i}."
            a, ln1, q, k, v, att, o, a2, ln2, u, t, g = caches[i]
            # x = x + fc2(gelu(fc1(ln2(x))))
            grads[pre + "ff.fc2.weight"], grads[pre + "ff.fc2.bias"] = g.T @ dx, dx.sum(axis=0)
            du = dx @ p[pre + "ff.fc2.weight"].T
            local = u * u
            local *= np.float32(3 * 0.044715)
            local += 1
            local *= u
            local *= 1 - t * t
            local *= np.float32(0.5 * GELU_C)
            local += np.float32(0.5) * (1 + t)
            du *= local
            grads[pre + "ff.fc1.weight"], grads[pre + "ff.fc1.bias"] = a2.T @ du, du.sum(axis=0)
            dln, grads[pre + "ln2.weight"], grads[pre + "ln2.bias"] = layer_norm_backward(
                du @ p[pre + "ff.fc1.weight"].T, p[pre + "ln2.weight"], ln2
            )
            dx = dx + dln
            # x = x + proj(attention(qkv(ln1(x))))
            grads[pre + "attn.proj.weight"], grads[pre + "attn.proj.bias"] = o.T @ dx, dx.sum(axis=0)
            do = (dx @ p[pre + "attn.proj.weight"].T).reshape(B, T, H, D).transpose(0, 2, 1, 3)
            datt = do @ v.transpose(0, 1, 3, 2)  # (B, H, T, T)
            dqkv = np.empty((B, T, 3, H, D), dtype=np.float32)
            dqkv[:, :, 2] = (att.transpose(0, 1, 3, 2) @ do).transpose(0, 2, 1, 3)  # dv
            datt -= np.einsum("bhij,bhij->bhi", datt, att)[..., None]  # softmax backward
            datt *= att
            datt *= scale
            dqkv[:, :, 0] = (datt @ k).transpose(0, 2, 1, 3)  # dq
            dqkv[:, :, 1] = (datt.transpose(0, 1, 3, 2) @ q).transpose(0, 2, 1, 3)  # dk
            dqkv = dqkv.reshape(N, 3 * C)
            grads[pre + "attn.qkv.weight"], grads[pre + "attn.qkv.bias"] = a.T @ dqkv, dqkv.sum(axis=0)
            dln, grads[pre + "ln1.weight"], grads[pre + "ln1.bias"] = layer_norm_backward(
                dqkv @ p[pre + "attn.qkv.weight"].T, p[pre + "ln1.weight"], ln1
            )
            dx = dx + dln
        dpos = np.zeros_like(p["positions.weight"])
        dpos[:T] = dx.reshape(B, T, C).sum(axis=0)
        grads["positions.weight"] = dpos
        onehot = np.zeros((N, self.V), dtype=np.float32)  # the embedding gradient: one matmul, no np.add.at
        onehot[rows, ids.reshape(-1)] = 1
        grads["tokens.weight"] = onehot.T @ dx
        return loss, [grads[name] for name in self.names]


def clip_grad_norm(grads, max_norm):
    """tinytorch's clip_grad_norm on a list of arrays: the joint L2 norm in float64, scaled in place."""
    total = math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads))
    if total > max_norm:
        scale = np.float32(max_norm / (total + 1e-6))
        for g in grads:
            g *= scale
    return total


class NumpyAdamW:
    """tinytorch's AdamW: p -= lr * wd * p, then Adam (bias-corrected, float32 moments, tiny ones flushed)."""

    def __init__(self, params, weight_decay, betas=(0.9, 0.999), eps=1e-8):
        self.params, self.weight_decay, self.betas, self.eps, self.steps = params, weight_decay, betas, eps, 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def step(self, grads, lr):
        self.steps += 1
        b1, b2 = self.betas
        c1, c2 = 1 - b1**self.steps, 1 - b2**self.steps
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            if self.weight_decay:
                p -= np.float32(lr * self.weight_decay) * p
            m *= np.float32(b1)
            m += np.float32(1 - b1) * g
            v *= np.float32(b2)
            v += np.float32(1 - b2) * (g * g)
            p -= np.float32(lr / c1) * m / (np.sqrt(v / np.float32(c2)) + np.float32(self.eps))
            if self.steps % 100 == 0:
                m[np.abs(m) < 1e-30] = 0
                v[np.abs(v) < 1e-30] = 0


# ---------------------------------------------------------------------------------- the torch GPT
def torch_model(cfg, vocab_size, params):
    """The same GPT in torch.nn, its parameters copied from params (parameter_shapes' order)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Block(nn.Module):
        def __init__(self, C, H):
            super().__init__()
            self.H = H
            self.ln1, self.ln2 = nn.LayerNorm(C, eps=EPS_LN), nn.LayerNorm(C, eps=EPS_LN)
            self.qkv, self.proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
            self.fc1, self.fc2 = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, self.H, C // self.H).permute(2, 0, 3, 1, 4)
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, D)
            x = x + self.proj(o.transpose(1, 2).reshape(B, T, C))
            return x + self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate="tanh"))

        def ordered(self):  # parameter_shapes' order within a block
            return [
                self.ln1.weight,
                self.ln1.bias,
                self.qkv.weight,
                self.qkv.bias,
                self.proj.weight,
                self.proj.bias,
                self.ln2.weight,
                self.ln2.bias,
                self.fc1.weight,
                self.fc1.bias,
                self.fc2.weight,
                self.fc2.bias,
            ]

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            C = cfg["d_model"]
            self.tokens = nn.Embedding(vocab_size, C)
            self.positions = nn.Parameter(torch.zeros(cfg["context"], C))
            self.blocks = nn.ModuleList(Block(C, cfg["n_heads"]) for _ in range(cfg["n_layers"]))
            self.ln_f = nn.LayerNorm(C, eps=EPS_LN)
            self.head = nn.Linear(C, vocab_size)

        def forward(self, ids):
            x = self.tokens(ids) + self.positions[: ids.shape[1]]
            for block in self.blocks:
                x = block(x)
            return self.head(self.ln_f(x))

        def ordered(self):
            inner = [p for block in self.blocks for p in block.ordered()]
            return (
                [self.tokens.weight, self.positions]
                + inner
                + [self.ln_f.weight, self.ln_f.bias, self.head.weight, self.head.bias]
            )

    model = GPT()
    with torch.no_grad():
        for tp, value in zip(model.ordered(), params):
            is_linear = value.ndim == 2 and tp is not model.tokens.weight and tp is not model.positions
            tp.copy_(torch.from_numpy(value.T.copy() if is_linear else value))  # nn.Linear keeps (out, in)
    return model


def torch_grads(model):
    """The gradients of model.ordered() as numpy arrays in the numpy model's layout."""
    out = []
    for tp in model.ordered():
        g = tp.grad.numpy()
        is_linear = g.ndim == 2 and tp is not model.tokens.weight and tp is not model.positions
        out.append(g.T if is_linear else g)
    return out


# ---------------------------------------------------------------------------------- tinytorch
def load_package(package, tmp):
    """The tinytorch at `package` (a folder named tinytorch), or the reference one exported from source/ into tmp."""
    from tito.course import MODULES
    from tito.notebook import import_tinytorch, load_tinytorch

    if package:
        return import_tinytorch(Path(package).resolve())
    tt, report = load_tinytorch(REPO / "source", [m for m in MODULES if (REPO / "source" / m).is_dir()], tmp)
    problems = {name: p for name, p in report.items() if p}
    if problems:
        raise RuntimeError(f"the reference tinytorch does not export cleanly: {problems}")
    return tt


def tinytorch_model(tt, cfg, vocab_size):
    missing = [
        n for n in ("GPT", "GPTConfig", "gpt_loss", "sample_batch", "AdamW", "WarmupCosineLR") if not hasattr(tt, n)
    ]
    if missing:
        raise RuntimeError(
            f"this tinytorch has no {', '.join(missing)} (Module 16, 16_tinygpt, is not exported in it); "
            "give an exported package that has them with --package"
        )
    config = tt.GPTConfig(
        vocab_size=vocab_size,
        context=cfg["context"],
        n_layers=cfg["n_layers"],
        d_model=cfg["d_model"],
        n_heads=cfg["n_heads"],
        dropout=0.0,
    )
    return tt.GPT(config)


# ---------------------------------------------------------------------------------- the contenders
def log(text):
    print(text, file=sys.stderr, flush=True)


def run_contender(name, cfg, text, train_step, window_logits):
    """Train with train_step(x, y, step) -> loss, then validation loss and samples from window_logits(ids)."""
    m3 = judge_module()
    train_text, val_text, vocab, data, val_data = text
    seconds, cpu, losses = [], [], []
    every = max(1, cfg["steps"] // 10)
    for step, (x, y) in enumerate(batches(data, cfg)):
        start, start_cpu = time.perf_counter(), time.process_time()
        losses.append(float(train_step(x, y, step)))
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        if (step + 1) % every == 0 or step + 1 == cfg["steps"]:
            log(
                f"  {name:9s} step {step + 1:4d}/{cfg['steps']}: {seconds[-1]:.3f} s ({cpu[-1]:.3f} s CPU), "
                f"loss {np.mean(losses[-every:]):.3f}"
            )
    windows = m3.validation_windows(val_data, cfg["validation_windows"], cfg["context"])
    logits = np.concatenate([window_logits(windows[s : s + 32, :-1]) for s in range(0, len(windows), 32)])
    val_loss = m3.validation_loss(logits, windows[:, 1:])
    log(f"  {name:9s} validation loss {val_loss:.3f} nats per character; sampling {cfg['samples']} functions ...")
    start = time.perf_counter()
    prompt = m3.encode(vocab, m3.STOP + cfg["prompt"])  # as the judge: right after a blank line
    ids = m3.sample_ids(lambda w: window_logits(w)[:, -1], prompt, m3.encode(vocab, m3.STOP), cfg)
    sample_seconds = time.perf_counter() - start
    rows = m3.read_samples(ids, vocab, train_text)
    parsed = [r for r in rows if m3.parses(r["verdict"])]  # the judge's measure
    log(f"  {name:9s} {len(parsed)}/{len(rows)} parse as a function; {sample_seconds:.1f} s")
    return {
        "step_seconds": seconds,
        "step_cpu_seconds": cpu,
        "losses": losses,
        "validation_loss": val_loss,
        "sample_seconds": sample_seconds,
        "samples": len(rows),
        "parsed": len(parsed),
        "compiled": sum(r["verdict"] == "compiles" for r in parsed),
        "novel": sum(r["novel"] for r in parsed),
        "finished": sum(not r["verdict"].startswith("unfinished") for r in rows),
        "sample_tokens": int((ids[:, len(prompt) :] >= 0).sum()),
        "examples": [{"text": r["text"], "verdict": r["verdict"]} for r in rows[:3]],
    }


def contender_tinytorch(cfg, text, package):
    with tempfile.TemporaryDirectory(prefix="tinytorch-bench-") as tmp:
        tt = load_package(package, tmp)
        train_text, _, vocab, data, _ = text
        tokenizer = tt.CharTokenizer.from_text(train_text)  # as the judge: the package's own tokenizer
        if list(tokenizer.vocab) != vocab or not np.array_equal(np.asarray(tokenizer.encode(train_text)), data):
            raise RuntimeError("tinytorch's CharTokenizer.from_text does not give the judge's vocabulary")
        np.random.seed(cfg["seed"])  # tinytorch's initialisers draw from numpy's global generator
        model = tinytorch_model(tt, cfg, len(vocab))
        optimizer = tt.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
        scheduler = tt.WarmupCosineLR(
            optimizer, warmup_steps=cfg["warmup_steps"], total_steps=cfg["steps"], min_lr=cfg["min_lr"]
        )
        model.train()

        def train_step(x, y, step):  # fit_gpt's step
            optimizer.zero_grad()
            loss = tt.gpt_loss(model(x), y)
            loss.backward()
            tt.clip_grad_norm(model.parameters(), cfg["clip_norm"])
            optimizer.step()
            scheduler.step()
            return float(loss.data)

        def window_logits(ids):
            model.eval()
            with tt.no_grad():
                out = model(ids)
            return np.asarray(out.data)

        return run_contender("tinytorch", cfg, text, train_step, window_logits)


def contender_numpy(cfg, text, package):
    vocab = text[2]
    net = NumpyGPT(cfg, len(vocab), initial_parameters(cfg, len(vocab), np.random.default_rng(cfg["seed"])))
    optimizer = NumpyAdamW(net.params, cfg["weight_decay"])

    def train_step(x, y, step):
        loss, grads = net.loss_and_grads(x, y)
        clip_grad_norm(grads, cfg["clip_norm"])
        optimizer.step(grads, lr_at(cfg, step))
        return loss

    return run_contender("numpy", cfg, text, train_step, net.logits)


def contender_torch(cfg, text, package):
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    vocab = text[2]
    model = torch_model(cfg, len(vocab), initial_parameters(cfg, len(vocab), np.random.default_rng(cfg["seed"])))
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"], eps=1e-8)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: lr_at(cfg, t) / cfg["lr"])
    loss_fn = torch.nn.CrossEntropyLoss()

    def train_step(x, y, step):
        model.train()
        optimizer.zero_grad(set_to_none=True)
        logits = model(torch.from_numpy(x))
        loss = loss_fn(logits.view(-1, logits.shape[-1]), torch.from_numpy(y).view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["clip_norm"])
        optimizer.step()
        scheduler.step()
        return loss.item()

    def window_logits(ids):
        model.eval()
        with torch.inference_mode():
            return model(torch.from_numpy(np.ascontiguousarray(ids))).numpy()

    return run_contender("torch", cfg, text, train_step, window_logits)


def child(name, cfg, package):
    """One contender in this process: the result as one line of JSON on the real stdout."""
    result_fd = os.dup(1)
    os.dup2(2, 1)  # everything printed while training goes to stderr
    result = {"name": name}
    try:
        contender = {"tinytorch": contender_tinytorch, "numpy": contender_numpy, "torch": contender_torch}[name]
        result.update(contender(cfg, load_text(), package))
    except Exception as err:
        result["error"] = f"{type(err).__name__}: {err}"
        log(f"  {name}: {result['error']}")
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sys.stdout.flush()
    with os.fdopen(result_fd, "w") as out:
        out.write(json.dumps(result) + "\n")


# ---------------------------------------------------------------------------------- --check
def relative(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def without_key_bias(name, value, C):
    """value, but for a qkv bias its query and value parts only. The key part's gradient is 0 in exact
    arithmetic (adding the same number to every score of a softmax row changes nothing), so Adam's
    normalised steps there only show each contender's rounding."""
    return np.concatenate([value[:C], value[2 * C :]]) if name.endswith("attn.qkv.bias") else value


def check(cfg, package):
    """Same weights, same batch: do the three contenders compute the same loss, gradients and updates?"""
    text = load_text()
    vocab, data = text[2], text[3]
    names = [name for name, _ in parameter_shapes(cfg, len(vocab))]
    start = initial_parameters(cfg, len(vocab), np.random.default_rng(cfg["seed"]))
    first = list(batches(data, cfg, steps=CHECK_STEPS, batch_size=CHECK_BATCH))
    x, y = first[0]
    net = NumpyGPT(cfg, len(vocab), [p.copy() for p in start])
    loss_np, grads_np = net.loss_and_grads(x, y)
    grads_np = [g.copy() for g in grads_np]
    print(
        f"check: {cfg['n_layers']} layers, d_model {cfg['d_model']}, {cfg['n_heads']} heads, "
        f"one batch of {CHECK_BATCH} x {cfg['context']}; numpy loss {loss_np:.6f}"
    )
    verdicts = []

    def compare(who, loss, grads, trained):
        worst = max(range(len(names)), key=lambda i: relative(grads[i], grads_np[i]))
        rel_grad = relative(grads[worst], grads_np[worst])
        rel_loss = abs(loss - loss_np) / abs(loss_np)
        print(
            f"  {who:9s} vs numpy: loss {loss:.6f} (relative difference {rel_loss:.1e}); largest relative "
            f"gradient difference {rel_grad:.1e} ({names[worst]})"
        )
        verdicts.append((f"{who} loss", rel_loss <= CHECK_RTOL))
        verdicts.append((f"{who} gradients", rel_grad <= CHECK_RTOL))
        trained = [without_key_bias(n, a, cfg["d_model"]) for n, a in zip(names, trained)]
        worst = max(range(len(names)), key=lambda i: relative(trained[i], trained_np[i]))
        rel_param = relative(trained[worst], trained_np[worst])
        print(
            f"  {who:9s} vs numpy after {CHECK_STEPS} steps of clipping + AdamW + schedule: largest relative "
            f"parameter difference {rel_param:.1e} ({names[worst]}; key biases left out)"
        )
        verdicts.append((f"{who} updates", rel_param <= CHECK_RTOL))

    # numpy: CHECK_STEPS training steps from the same start
    net = NumpyGPT(cfg, len(vocab), [p.copy() for p in start])
    optimizer = NumpyAdamW(net.params, cfg["weight_decay"])
    for step, (xb, yb) in enumerate(first):
        _, g = net.loss_and_grads(xb, yb)
        clip_grad_norm(g, cfg["clip_norm"])
        optimizer.step(g, lr_at(cfg, step))
    trained_np = [without_key_bias(n, p.copy(), cfg["d_model"]) for n, p in zip(names, net.params)]

    with tempfile.TemporaryDirectory(prefix="tinytorch-bench-") as tmp:
        try:
            tt = load_package(package, tmp)
            model = tinytorch_model(tt, cfg, len(vocab))
        except Exception as err:
            print(f"  tinytorch: {type(err).__name__}: {err}")
            verdicts.append(("tinytorch", False))
            model = None
        if model is not None:
            params = model.parameters()
            shapes = [tuple(p.shape) for p in params]
            expected = [tuple(p.shape) for p in start]
            if shapes != expected:
                print(f"  tinytorch: GPT.parameters() has shapes {shapes}, expected {expected} (parameter_shapes)")
                verdicts.append(("tinytorch parameters", False))
            else:

                def load_start():
                    for p, value in zip(params, start):
                        p.data = value.copy()

                load_start()
                model.train()
                loss = tt.gpt_loss(model(x), y)
                loss.backward()
                grads = [np.asarray(p.grad) for p in params]
                loss = float(loss.data)
                load_start()
                optimizer = tt.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
                scheduler = tt.WarmupCosineLR(
                    optimizer, warmup_steps=cfg["warmup_steps"], total_steps=cfg["steps"], min_lr=cfg["min_lr"]
                )
                for xb, yb in first:
                    optimizer.zero_grad()
                    tt.gpt_loss(model(xb), yb).backward()
                    tt.clip_grad_norm(params, cfg["clip_norm"])
                    optimizer.step()
                    scheduler.step()
                compare("tinytorch", loss, grads, [np.asarray(p.data) for p in params])
            rng = np.random.default_rng(cfg["seed"])
            same = all(
                all(
                    np.array_equal(a, b) for a, b in zip(tt.sample_batch(data, CHECK_BATCH, cfg["context"], rng), batch)
                )
                for batch in first
            )
            print(f"  tinytorch sample_batch draws the benchmark's batches: {same}")
            verdicts.append(("tinytorch sample_batch", same))

    if importlib.util.find_spec("torch") is None:
        print("  PyTorch not installed: not compared")
    else:
        import torch

        torch.set_num_threads(1)
        model = torch_model(cfg, len(vocab), start)
        logits = model(torch.from_numpy(x))
        loss = torch.nn.functional.cross_entropy(logits.view(-1, len(vocab)), torch.from_numpy(y).view(-1))
        loss.backward()
        grads = torch_grads(model)
        model = torch_model(cfg, len(vocab), start)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"], eps=1e-8)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: lr_at(cfg, t) / cfg["lr"])
        for xb, yb in first:
            optimizer.zero_grad()
            out = model(torch.from_numpy(xb))
            torch.nn.functional.cross_entropy(out.view(-1, len(vocab)), torch.from_numpy(yb).view(-1)).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["clip_norm"])
            optimizer.step()
            scheduler.step()
        trained = [
            p.detach().numpy().T
            if p.ndim == 2 and p is not model.tokens.weight and p is not model.positions
            else p.detach().numpy()
            for p in model.ordered()
        ]
        compare("PyTorch", loss.item(), grads, trained)
    failed = [what for what, ok in verdicts if not ok]
    print("check: " + ("all agree" if not failed else "DISAGREE: " + ", ".join(failed)))
    return not failed


# ---------------------------------------------------------------------------------- the report
def run_child(name, args):
    command = [sys.executable, str(Path(__file__).resolve()), "--contender", name, "--config", args.config]
    for option in ("steps", "samples", "package"):
        if getattr(args, option):
            command += [f"--{option}", str(getattr(args, option))]
    proc = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    lines = proc.stdout.strip().splitlines()
    if not lines:
        return {"name": name, "error": f"the contender's process ended with exit code {proc.returncode} and no result"}
    return json.loads(lines[-1])


def per_step(r):
    """Median wall-clock and CPU seconds per step, after the first TIMING_WARMUP steps."""
    skip = min(TIMING_WARMUP, len(r["step_seconds"]) // 4)
    return float(np.median(r["step_seconds"][skip:])), float(np.median(r["step_cpu_seconds"][skip:]))


def print_table(results, cfg):
    ok = [r for r in results if "error" not in r]
    if not ok:
        return
    width = 22
    print()
    print(f"{'':>24}" + "".join(f" | {CONTENDERS[r['name']]:>{width}}" for r in ok))

    def row(label, cell):
        print(f"{label:>24}" + "".join(f" | {cell(r):>{width}}" for r in ok))

    tokens = cfg["batch_size"] * cfg["context"]
    row("s/step (median)", lambda r: "{:.3f} ({:.3f} CPU)".format(*per_step(r)))
    row("tokens/s", lambda r: f"{tokens / per_step(r)[0]:,.0f}")
    row("training s", lambda r: f"{np.sum(r['step_seconds']):.1f} ({np.sum(r['step_cpu_seconds']):.1f} CPU)")
    quarters = np.array_split(np.arange(cfg["steps"]), min(4, cfg["steps"]))
    for q in quarters:
        row(f"train loss {q[0] + 1}-{q[-1] + 1}", lambda r, q=q: f"{np.mean(np.asarray(r['losses'])[q]):.3f}")
    row("validation nats/char", lambda r: f"{r['validation_loss']:.3f}")
    row("sampling s", lambda r: f"{r['sample_seconds']:.1f}")
    row("functions/s", lambda r: f"{r['samples'] / r['sample_seconds']:.2f}")
    row("sampled chars/s", lambda r: f"{r['sample_tokens'] / r['sample_seconds']:,.0f}")
    row("finished (blank line)", lambda r: f"{r['finished']}/{r['samples']}")
    row("parse (judged)", lambda r: f"{r['parsed']}/{r['samples']} ({r['parsed'] / r['samples']:.0%})")
    row("also compile", lambda r: f"{r['compiled']}/{r['samples']} ({r['compiled'] / r['samples']:.0%})")
    row("  of them new", lambda r: f"{r['novel']}/{r['parsed']}")
    row("peak memory MB", lambda r: f"{r['peak_mb']:.0f}")


def main():
    ap = argparse.ArgumentParser(
        description="Character-level GPT: reference tinytorch vs. hand-written numpy vs. PyTorch"
    )
    ap.add_argument(
        "--steps", type=int, default=None, help="training steps (default: the configuration's, 600 for judge)"
    )
    ap.add_argument("--samples", type=int, default=None, help="functions to sample (default: 128)")
    ap.add_argument("--config", choices=["judge", "long"], default="judge")
    ap.add_argument("--only", default="tinytorch,numpy,torch", help="comma-separated contenders to run")
    ap.add_argument(
        "--check", action="store_true", help="compare losses, gradients and updates; exit 1 if they disagree"
    )
    ap.add_argument("--package", help="an exported tinytorch package folder to use instead of exporting source/")
    add_malloc_option(ap)
    ap.add_argument("--contender", choices=list(CONTENDERS), help=argparse.SUPPRESS)  # internal: one child process
    args = ap.parse_args()
    cfg = configuration(args.config, args.steps, args.samples)
    if args.contender:
        child(args.contender, cfg, args.package)
        return
    if args.check:
        sys.exit(0 if check(cfg, args.package) else 1)

    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown:
        ap.error(f"unknown contender(s) {unknown}; choose from {', '.join(CONTENDERS)}")
    print(f"Character-level GPT, config {args.config}: {describe(cfg)}")
    print(f"every contender's process: one BLAS thread, {apply_malloc_option(args)}")
    results = []
    for name in [n for n in CONTENDERS if n in names]:
        if name == "torch" and importlib.util.find_spec("torch") is None:
            print("PyTorch not installed: skipping the torch contender")
            continue
        print(f"{CONTENDERS[name]} ...", flush=True)
        results.append(run_child(name, args))
        if "error" in results[-1]:
            print(f"{CONTENDERS[name]} failed: {results[-1]['error']}")
    print_table(results, cfg)

    by_name = {r["name"]: r for r in results if "error" not in r}
    for other in ("numpy", "torch"):
        if "tinytorch" in by_name and other in by_name:
            (wall, cpu), (wall_o, cpu_o) = per_step(by_name["tinytorch"]), per_step(by_name[other])
            print(
                f"tinytorch / {CONTENDERS[other]} seconds per step: {wall / wall_o:.2f}x "
                f"(median wall-clock time; CPU time: {cpu / cpu_o:.2f}x)"
            )
    rows = [(CONTENDERS[name], step_flops(cfg), per_step(r)[1]) for name, r in by_name.items()]
    print_rates(rows, "median CPU time per step")
    for r in by_name.values():
        print(f"\n{CONTENDERS[r['name']]}: the first {len(r['examples'])} samples")
        for example in r["examples"]:
            print(f"--- {example['verdict']}")
            lines = example["text"].splitlines()
            print(
                "\n".join(
                    lines[:SHOWN_LINES]
                    + ([f"[... {len(lines) - SHOWN_LINES} more lines]"] if len(lines) > SHOWN_LINES else [])
                )
            )


if __name__ == "__main__":
    main()
