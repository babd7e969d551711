"""CIFAR-10 CNN benchmark: the reference tinytorch against the same network in hand-written numpy and in PyTorch.

Run from the repository root (TINYTORCH_DATA names a folder with cifar10/ in it; without it,
tito.datasets downloads CIFAR-10 into its cache):

    python benchmarks/cifar_cnn.py                          # Milestone 2's recipe, 3 epochs, all three
    python benchmarks/cifar_cnn.py --only tinytorch,numpy   # some of the contenders
    python benchmarks/cifar_cnn.py --epochs 1 --config long # one epoch of the larger configuration
    python benchmarks/cifar_cnn.py --check                  # exit 1 if a target below is missed

What is compared. Three contenders train the same CNN with the same recipe, one after the other, each
in its own process (the script runs itself with --contender NAME), so that each one's peak memory is
its own; every one uses ONE BLAS thread (and torch.set_num_threads(1)):
  tinytorch  the reference package, exported from the solutions in source/ by the exporter students
             use, trained exactly as the Milestone 2 judge trains (milestones/revolution/
             test_alexnet_milestone.py: its loader(), transform() and predict(), the student's
             DataLoader, Adam, OneCycleLR and Trainer.fit), one Trainer.fit epoch at a time so that
             the test accuracy can be measured after each epoch; the judge's speed check is left out.
  numpy      the same network written by hand: NHWC, 3x3 convolutions as a strided-view im2col and one
             matmul, BatchNorm2d (batch statistics in training, running statistics in eval), 2x2
             max-pooling as np.maximum over 4 strided slices, ReLU after the pooling, Linear,
             cross-entropy, Adam with the same one-cycle cosine schedule stepped per batch; the first
             convolution computes no input gradient.
  torch      PyTorch on the CPU (when it is installed; it is not a dependency of the course): the same
             network in NCHW, torch.optim.Adam and OneCycleLR(anneal_strategy="cos", three_phase=False,
             cycle_momentum=False).
The numpy and torch contenders draw their batches exactly as tinytorch's DataLoader does (the same
shuffles, flips and crops from the same seeds: batch 128, drop_last, per-channel Normalize with the
mean and std of milestone.yml) and initialise their weights as tinytorch's layers (He-uniform weights,
zero biases), from a generator of their own. For each contender the script prints the seconds per
epoch (data pipeline included, evaluation excluded), the test accuracy on all 10,000 test images after
each epoch, the training time until the first epoch at >= 65% (Milestone 2's threshold), and the peak
memory (ru_maxrss) of its process, then a table side by side and the ratios of the mean epoch times,
and for each contender the GFLOP/s its matrix products reach (epoch_flops(), about 1.7 TFLOP per epoch,
over its CPU seconds) beside this machine's one-thread float32 GEMM peak (benchmarks/gemm_peak.py).
Seconds are wall-clock time; the CPU seconds beside them (time.process_time) show how much of it the
contender really ran, which matters on a machine shared with other work.

Configurations (--config):
  judge  Milestone 2's default model and recipe (milestones/revolution/milestone.yml): 3 blocks of
         Conv2d 3x3 - BatchNorm2d - MaxPool2d - ReLU with 24/48/96 channels, Linear(1536, 10); Adam
         with OneCycleLR (max_lr 3e-3, pct_start 0.3, div_factor 25, final_div_factor 1e4), batch 128,
         random horizontal flips, 3 epochs.
  long   a larger model meant to pass 80% (not yet measured to the end): 3 blocks with 32/64/128
         channels, then Linear(2048, 256) - ReLU - Linear(256, 10); the same Adam one-cycle schedule
         (max_lr 3e-3), random flips and RandomCrop(32, padding=4), 15 epochs. In tinytorch:
             Sequential(
                 Conv2d(3, 32, 3, padding=1), BatchNorm2d(32), MaxPool2d(2), ReLU(),
                 Conv2d(32, 64, 3, padding=1), BatchNorm2d(64), MaxPool2d(2), ReLU(),
                 Conv2d(64, 128, 3, padding=1), BatchNorm2d(128), MaxPool2d(2), ReLU(),
                 Flatten(), Linear(2048, 256), ReLU(), Linear(256, 10),
             )
         with transform=Compose([RandomCrop(32, padding=4, seed=1), RandomHorizontalFlip(0.5, seed=0),
         Normalize(mean, std)]) in the DataLoader. An epoch takes about 1.5x as long as one of the judge
         config; try --epochs 1 first to see what 15 epochs will cost on your machine.

Targets (--check; a target whose contender was not run is reported as not measured and not failed):
  tinytorch with the judge recipe reaches >= 68% test accuracy within 150 s of training
      (with --config long: >= 80% within 900 s);
  tinytorch's mean epoch time is <= 1.15x numpy's;
  tinytorch's peak memory is < 2000 MB.
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
from numpy.lib.stride_tricks import as_strided, sliding_window_view  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo, when not installed
from benchmarks.gemm_peak import add_malloc_option, apply_malloc_option, print_rates  # noqa: E402
from tito.course import REPO  # noqa: E402

MILESTONE = yaml.safe_load((REPO / "milestones" / "revolution" / "milestone.yml").read_text())
THRESHOLD = MILESTONE["threshold"]  # 0.65
CONTENDERS = {"tinytorch": "tinytorch", "numpy": "numpy", "torch": "PyTorch"}
MAX_RATIO, MAX_MEMORY_MB = 1.15, 2000
EPS_BN, MOMENTUM_BN = 1e-5, 0.1  # BatchNorm2d's epsilon and running-statistics momentum, as in tinytorch and PyTorch


def configuration(name, epochs=None):
    """The recipe (milestone.yml's judge section) with the model and augmentation of a configuration."""
    cfg = dict(MILESTONE["judge"])
    if name == "judge":
        cfg.update(channels=[24, 48, 96], hidden=None, crop=0, target=(0.68, 150.0))
    else:
        cfg.update(channels=[32, 64, 128], hidden=256, crop=4, epochs=15, max_lr=3e-3, target=(0.80, 900.0))
    if epochs:
        cfg["epochs"] = epochs
    return cfg


def epoch_flops(cfg, images=50_000):
    """The matrix-product arithmetic of one training epoch (forward and backward; the first convolution
    computes no input gradient): 2 * rows * inner * columns per product."""
    n, size, cin, step = cfg["batch_size"], 32, 3, 0
    for k, c in enumerate(cfg["channels"]):
        product = 2 * n * size * size * 9 * cin * c  # im2col rows (N*H*W) x (9*Cin) times (9*Cin) x Cout
        step += product * (2 if k == 0 else 3)  # forward, weight gradient, input gradient
        size, cin = size // 2, c
    dims = [size * size * cin] + ([cfg["hidden"]] if cfg["hidden"] else []) + [10]
    step += sum(3 * 2 * n * a * b for a, b in zip(dims[:-1], dims[1:]))
    return step * (images // n)


def describe(cfg):
    blocks = "/".join(map(str, cfg["channels"]))
    head = f"Linear({16 * cfg['channels'][-1]}, {cfg['hidden']}) - ReLU - " if cfg["hidden"] else ""
    head += f"Linear({cfg['hidden'] or 16 * cfg['channels'][-1]}, 10)"
    augment = f"flip {cfg['flip']}" + (f" + RandomCrop(32, padding={cfg['crop']})" if cfg["crop"] else "")
    return (
        f"3 x [conv3x3-maxpool-BN-ReLU] ({blocks} channels) - {head}; Adam + one-cycle (max_lr {cfg['max_lr']:g}), "
        f"batch {cfg['batch_size']}, {augment}; {cfg['epochs']} epoch(s); 1 BLAS thread"
    )


def tinytorch_model_source(cfg):
    """The build_model cell: milestone.yml's default for the judge config, the same pattern otherwise."""
    if cfg["channels"] == [24, 48, 96] and not cfg["hidden"]:
        return MILESTONE["model"]["default_source"]
    lines, cin = [], 3
    for c in cfg["channels"]:
        lines.append(f"        Conv2d({cin}, {c}, 3, padding=1), MaxPool2d(2), BatchNorm2d({c}), ReLU(),")
        cin = c
    flat = 16 * cin
    head = (
        f"Linear({flat}, {cfg['hidden']}), ReLU(), Linear({cfg['hidden']}, 10)"
        if cfg["hidden"]
        else f"Linear({flat}, 10)"
    )
    return "def build_model():\n    return Sequential(\n" + "\n".join(lines) + f"\n        Flatten(), {head},\n    )\n"


# ---------------------------------------------------------------------------------- the data pipeline
class Batches:
    """tinytorch's DataLoader + transforms re-done in numpy: the same seeds give the same batches.

    Epoch e is shuffled by default_rng((seed, e)); RandomCrop (when used) draws from default_rng(seed + 1)
    and RandomHorizontalFlip from default_rng(seed), one batch at a time; then Normalize to float32 NHWC.
    """

    def __init__(self, X, y, cfg):
        self.X, self.y, self.cfg = X, y, cfg
        self.bs = cfg["batch_size"]
        self.flip_rng = np.random.default_rng(cfg["seed"])
        self.crop_rng = np.random.default_rng(cfg["seed"] + 1)
        self.mean = np.asarray(cfg["mean"], dtype=np.float32)
        self.std = np.asarray(cfg["std"], dtype=np.float32)
        self.epoch = 0

    def __len__(self):
        return len(self.X) // self.bs  # drop_last

    def normalize(self, xb):
        out = np.divide(xb, np.float32(255), dtype=np.float32)
        out -= self.mean
        out /= self.std
        return out

    def crop(self, xb):
        p, (n, h, w) = self.cfg["crop"], xb.shape[:3]
        padded = np.pad(xb, ((0, 0), (p, p), (p, p), (0, 0)))
        top = self.crop_rng.integers(0, 2 * p + 1, size=n)
        left = self.crop_rng.integers(0, 2 * p + 1, size=n)
        windows = sliding_window_view(padded, (h, w), axis=(1, 2))  # (N, 2p+1, 2p+1, C, h, w)
        return np.ascontiguousarray(windows[np.arange(n), top, left].transpose(0, 2, 3, 1))

    def __iter__(self):
        order = np.random.default_rng((self.cfg["seed"], self.epoch)).permutation(len(self.X))
        self.epoch += 1
        for start in range(0, len(self) * self.bs, self.bs):
            idx = order[start : start + self.bs]
            xb, yb = self.X[idx], self.y[idx]  # fancy indexing: a copy of the uint8 batch
            if self.cfg["crop"]:
                xb = self.crop(xb)
            flip = self.flip_rng.random(len(xb)) < self.cfg["flip"]
            xb[flip] = xb[flip, :, ::-1]
            yield self.normalize(xb), yb


def one_cycle_lr(cfg, total_steps, t, pct_start=0.3, div_factor=25.0, final_div_factor=1e4):
    """The one-cycle cosine schedule of tinytorch's OneCycleLR and PyTorch's (two phases), at step t."""
    start = cfg["max_lr"] / div_factor
    end = start / final_div_factor
    peak, last = pct_start * total_steps - 1, total_steps - 1
    if t <= peak:
        a, b, p = start, cfg["max_lr"], t / peak
    else:
        a, b, p = cfg["max_lr"], end, min(1.0, (t - peak) / (last - peak))
    return b + (a - b) * (1 + math.cos(math.pi * p)) / 2


def he_uniform(fan_in, shape, rng):
    """tinytorch's kaiming_uniform: U(-b, b) with b = sqrt(6 / fan_in), float32."""
    bound = math.sqrt(6.0 / fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


# ---------------------------------------------------------------------------------- the numpy CNN
def im2col3x3(x):
    """(N, H, W, C) -> (N*H*W, 9*C): every 3x3 window (zero padding 1) as one row, (kh, kw, c) order."""
    n, h, w, c = x.shape
    xp = np.zeros((n, h + 2, w + 2, c), dtype=x.dtype)
    xp[:, 1:-1, 1:-1] = x
    s0, s1, s2, s3 = xp.strides
    windows = as_strided(xp, (n, h, w, 3, 3, c), (s0, s1, s2, s1, s2, s3), writeable=False)
    return windows.reshape(n * h * w, 9 * c)  # the one copy


def col2im3x3(dcols, shape):
    """The adjoint of im2col3x3: add every window's gradient back onto the (unpadded) input."""
    n, h, w, c = shape
    dcols = dcols.reshape(n, h, w, 3, 3, c)
    dxp = np.zeros((n, h + 2, w + 2, c), dtype=dcols.dtype)
    for i in range(3):
        for j in range(3):
            dxp[:, i : i + h, j : j + w] += dcols[:, :, :, i, j]
    return dxp[:, 1:-1, 1:-1]


QUADRANTS = [(slice(None), slice(a, None, 2), slice(b, None, 2)) for a in (0, 1) for b in (0, 1)]


class NumpyCNN:
    """conv3x3-maxpool2-BN-ReLU blocks, then Linear (- ReLU - Linear), forward and backward by hand, NHWC."""

    def __init__(self, channels, hidden, rng):
        self.blocks, cin = [], 3
        for c in channels:
            self.blocks.append(
                {
                    "W": he_uniform(9 * cin, (9 * cin, c), rng),  # (kh, kw, cin) x cout, as the im2col rows
                    "b": np.zeros(c, np.float32),
                    "gamma": np.ones(c, np.float32),
                    "beta": np.zeros(c, np.float32),
                    "running_mean": np.zeros(c, np.float32),
                    "running_var": np.ones(c, np.float32),
                }
            )
            cin = c
        dims = [16 * cin] + ([hidden] if hidden else []) + [10]
        self.linears = [
            {"W": he_uniform(a, (a, b), rng), "b": np.zeros(b, np.float32)} for a, b in zip(dims[:-1], dims[1:])
        ]
        self.params = [blk[k] for blk in self.blocks for k in ("W", "b", "gamma", "beta")]
        self.params += [lin[k] for lin in self.linears for k in ("W", "b")]

    # -- forward --
    def _block_forward(self, blk, x, train):
        n, h, w, _ = x.shape
        cols = im2col3x3(x)
        z = cols @ blk["W"]
        z += blk["b"]
        c = z.shape[1]
        y = z.reshape(n, h, w, c)
        q = [y[s] for s in QUADRANTS]
        pooled = np.maximum(np.maximum(q[0], q[1]), np.maximum(q[2], q[3]))  # (n, h/2, w/2, c)
        p = pooled.reshape(-1, c)
        if train:
            mean = np.einsum("ij->j", p) / np.float32(len(p))  # column sums: einsum is faster than .sum(0)
            xhat = p - mean
            var = np.einsum("ij,ij->j", xhat, xhat) / np.float32(len(p))
            inv = 1 / np.sqrt(var + np.float32(EPS_BN))
            xhat *= inv
            m = len(p)
            blk["running_mean"] *= 1 - MOMENTUM_BN
            blk["running_mean"] += MOMENTUM_BN * mean
            blk["running_var"] *= 1 - MOMENTUM_BN
            blk["running_var"] += MOMENTUM_BN * var * (m / (m - 1))
            bn = xhat * blk["gamma"] + blk["beta"]
        else:
            inv = blk["gamma"] / np.sqrt(blk["running_var"] + np.float32(EPS_BN))
            xhat = None
            bn = p * inv + (blk["beta"] - blk["running_mean"] * inv)
        out = np.maximum(bn, 0).reshape(pooled.shape)
        cache = (cols, y, pooled, xhat, inv, out) if train else None
        return out, cache

    def logits(self, x, train=False, caches=None):
        for blk in self.blocks:
            x, cache = self._block_forward(blk, x, train)
            if caches is not None:
                caches.append(cache)
        h = x.reshape(len(x), -1)
        for k, lin in enumerate(self.linears):
            if caches is not None:
                caches.append(h)
            h = h @ lin["W"] + lin["b"]
            if k < len(self.linears) - 1:
                np.maximum(h, 0, out=h)
        return h

    # -- backward --
    def _block_backward(self, blk, cache, dout, need_dx):
        cols, y, pooled, xhat, inv, out = cache
        m, c = xhat.shape
        dbn = (dout * (out > 0)).reshape(m, c)  # ReLU
        dbeta = np.einsum("ij->j", dbn)
        dgamma = np.einsum("ij,ij->j", dbn, xhat)
        dp = dbn - dbeta / m  # BatchNorm with batch statistics
        dp -= xhat * (dgamma / m)
        dp *= blk["gamma"] * inv
        dp = dp.reshape(pooled.shape)
        dy = np.empty_like(y)  # max-pool: the gradient goes to the first maximum of each 2x2 window
        taken = None
        for s in QUADRANTS:
            hit = y[s] == pooled
            if taken is None:
                taken = hit
            else:
                hit &= ~taken
                taken |= hit
            np.multiply(dp, hit, out=dy[s])
        dz = dy.reshape(-1, c)
        grads = [cols.T @ dz, np.einsum("ij->j", dz), dgamma, dbeta]
        dx = None
        if need_dx:
            n, h, w, _ = y.shape
            dx = col2im3x3(dz @ blk["W"].T, (n, h, w, cols.shape[1] // 9))
        return grads, dx

    def loss_and_grads(self, x, labels):
        caches = []
        z = self.logits(x, train=True, caches=caches)
        n = len(labels)
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        loss = -float(np.mean(np.log(p[np.arange(n), labels] + 1e-12)))
        p[np.arange(n), labels] -= 1
        g = p / np.float32(n)
        lin_grads = []
        for k in range(len(self.linears) - 1, -1, -1):
            h, lin = caches[len(self.blocks) + k], self.linears[k]
            lin_grads = [h.T @ g, g.sum(axis=0)] + lin_grads
            g = g @ lin["W"].T
            if k > 0:
                g *= h > 0
        g = g.reshape(caches[len(self.blocks) - 1][5].shape)
        block_grads = []
        for i in range(len(self.blocks) - 1, -1, -1):
            grads, g = self._block_backward(self.blocks[i], caches[i], g, need_dx=i > 0)
            block_grads = grads + block_grads
        return loss, block_grads + lin_grads


class NumpyAdam:
    """tinytorch's Adam (bias-corrected moments in float32, moments below 1e-30 flushed every 100 steps)."""

    def __init__(self, params, betas=(0.9, 0.999), eps=1e-8):
        self.params, self.betas, self.eps, self.steps = params, betas, eps, 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def step(self, grads, lr):
        self.steps += 1
        b1, b2 = self.betas
        c1, c2 = 1 - b1**self.steps, 1 - b2**self.steps
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * (g * g)
            p -= np.float32(lr / c1) * m / (np.sqrt(v / np.float32(c2)) + np.float32(self.eps))
            if self.steps % 100 == 0:
                m[np.abs(m) < 1e-30] = 0
                v[np.abs(v) < 1e-30] = 0


# ---------------------------------------------------------------------------------- the contenders
def log(text):
    print(text, file=sys.stderr, flush=True)


def run_epochs(name, cfg, train_epoch, accuracy):
    """train_epoch() -> mean loss; accuracy() -> test accuracy. Returns the per-epoch record."""
    seconds, cpu, accs, losses = [], [], [], []
    for epoch in range(cfg["epochs"]):
        start, start_cpu = time.perf_counter(), time.process_time()
        losses.append(float(train_epoch()))
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        accs.append(float(accuracy()))
        log(
            f"  {name:9s} epoch {epoch + 1:2d}/{cfg['epochs']}: {seconds[-1]:6.1f} s ({cpu[-1]:.1f} s CPU), "
            f"loss {losses[-1]:.3f}, test accuracy {accs[-1]:.2%}"
        )
    return {"epoch_seconds": seconds, "epoch_cpu_seconds": cpu, "accuracy": accs, "train_loss": losses}


def contender_tinytorch(cfg, data):
    with tempfile.TemporaryDirectory(prefix="tinytorch-bench-") as tmp:
        return train_tinytorch(cfg, data, tmp)


def train_tinytorch(cfg, data, tmp):
    from milestones.revolution import test_alexnet_milestone as m2
    from tito.course import MODULES
    from tito.notebook import load_tinytorch

    (X, y), (X_test, y_test) = data
    # the reference package, exported from the solutions in source/ into tmp as students export theirs
    tt, report = load_tinytorch(REPO / "source", [m for m in MODULES if (REPO / "source" / m).is_dir()], tmp)
    problems = {name: p for name, p in report.items() if p}
    if problems:
        raise RuntimeError(f"the reference tinytorch does not export cleanly: {problems}")
    namespace = {"np": np, "__name__": "__milestone__"}  # the build_model cell, run as the judge runs it
    exec("from tinytorch import *", namespace)
    exec(tinytorch_model_source(cfg), namespace)
    build_model = namespace["build_model"]

    # milestones/revolution/test_alexnet_milestone.train(), one Trainer.fit epoch at a time
    if cfg["crop"]:
        data = tt.DataLoader(
            tt.ArrayDataset(X, y),
            batch_size=cfg["batch_size"],
            shuffle=True,
            drop_last=True,
            seed=cfg["seed"],
            transform=tt.Compose(
                [
                    tt.RandomCrop(32, padding=cfg["crop"], seed=cfg["seed"] + 1),
                    tt.RandomHorizontalFlip(cfg["flip"], seed=cfg["seed"]),
                    tt.Normalize(cfg["mean"], cfg["std"]),
                ]
            ),
        )
    else:
        data = m2.loader(tt, X, y, cfg)
    total_steps = cfg["epochs"] * len(data)
    np.random.seed(cfg["seed"])
    model = build_model()
    optimizer = tt.Adam(model.parameters(), lr=cfg["max_lr"], weight_decay=cfg["weight_decay"])
    scheduler = tt.OneCycleLR(optimizer, max_lr=cfg["max_lr"], total_steps=total_steps)
    trainer = tt.Trainer(model, tt.CrossEntropyLoss(), optimizer, scheduler=scheduler, progress=True)

    def train_epoch():
        history = trainer.fit(data, 1)
        return history["train_loss"][-1]

    def accuracy():
        return np.mean(m2.predict(tt, model, X_test, cfg).argmax(axis=1) == y_test)

    return run_epochs("tinytorch", cfg, train_epoch, accuracy)


def contender_numpy(cfg, data):
    (X, y), (X_test, y_test) = data
    batches = Batches(X, y, cfg)
    net = NumpyCNN(cfg["channels"], cfg["hidden"], np.random.default_rng(cfg["seed"]))
    adam = NumpyAdam(net.params)
    total_steps = cfg["epochs"] * len(batches)

    def train_epoch():
        losses = []
        for xb, yb in batches:
            loss, grads = net.loss_and_grads(xb, yb)
            adam.step(grads, one_cycle_lr(cfg, total_steps, adam.steps))
            losses.append(loss)
        return np.mean(losses)

    def accuracy():
        correct = 0
        for s in range(0, len(X_test), 1000):
            correct += np.sum(
                net.logits(batches.normalize(X_test[s : s + 1000])).argmax(axis=1) == y_test[s : s + 1000]
            )
        return correct / len(X_test)

    return run_epochs("numpy", cfg, train_epoch, accuracy)


def contender_torch(cfg, data):
    import torch
    from torch import nn

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    (X, y), (X_test, y_test) = data
    batches = Batches(X, y, cfg)
    rng = np.random.default_rng(cfg["seed"])
    layers, cin = [], 3
    for c in cfg["channels"]:
        layers += [nn.Conv2d(cin, c, 3, padding=1), nn.MaxPool2d(2)]
        layers += [nn.BatchNorm2d(c, eps=EPS_BN, momentum=MOMENTUM_BN), nn.ReLU()]
        cin = c
    dims = [16 * cin] + ([cfg["hidden"]] if cfg["hidden"] else []) + [10]
    layers.append(nn.Flatten())
    for k, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if k < len(dims) - 2 else [])
    model = nn.Sequential(*layers)
    with torch.no_grad():  # tinytorch's initialisation: He-uniform weights, zero biases
        for layer in model:
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                fan_in = layer.weight[0].numel()
                layer.weight.copy_(torch.from_numpy(he_uniform(fan_in, tuple(layer.weight.shape), rng)))
                layer.bias.zero_()
    total_steps = cfg["epochs"] * len(batches)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["max_lr"], weight_decay=cfg["weight_decay"])
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=cfg["max_lr"],
        total_steps=total_steps,
        pct_start=0.3,
        div_factor=25.0,
        final_div_factor=1e4,
        anneal_strategy="cos",
        three_phase=False,
        cycle_momentum=False,  # tinytorch's Adam keeps beta1 = 0.9 throughout
    )
    loss_fn = nn.CrossEntropyLoss()

    def nchw(xb):
        return torch.from_numpy(np.ascontiguousarray(xb.transpose(0, 3, 1, 2)))

    def train_epoch():
        model.train()
        losses = []
        for xb, yb in batches:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(nchw(xb)), torch.from_numpy(yb.astype(np.int64)))
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        return np.mean(losses)

    def accuracy():
        model.eval()
        correct = 0
        with torch.inference_mode():
            for s in range(0, len(X_test), 1000):
                out = model(nchw(batches.normalize(X_test[s : s + 1000]))).numpy()
                correct += np.sum(out.argmax(axis=1) == y_test[s : s + 1000])
        return correct / len(X_test)

    return run_epochs("torch", cfg, train_epoch, accuracy)


def child(name, cfg):
    """One contender in this process: the result as one line of JSON on the real stdout."""
    result_fd = os.dup(1)
    os.dup2(2, 1)  # everything printed while training (progress bars too) goes to stderr
    result = {"name": name}
    try:
        from tito.datasets import load_cifar10

        data = load_cifar10()
        result.update(
            {"tinytorch": contender_tinytorch, "numpy": contender_numpy, "torch": contender_torch}[name](cfg, data)
        )
    except Exception as err:
        result["error"] = f"{type(err).__name__}: {err}"
        log(f"  {name}: {result['error']}")
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sys.stdout.flush()
    with os.fdopen(result_fd, "w") as out:
        out.write(json.dumps(result) + "\n")


# ---------------------------------------------------------------------------------- the report
def run_contender(name, args):
    command = [sys.executable, str(Path(__file__).resolve()), "--contender", name, "--config", args.config]
    if args.epochs:
        command += ["--epochs", str(args.epochs)]
    proc = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    lines = proc.stdout.strip().splitlines()
    if not lines:
        return {"name": name, "error": f"the contender's process ended with exit code {proc.returncode} and no result"}
    return json.loads(lines[-1])


def time_to(result, accuracy):
    """(training seconds, epoch) at the end of the first epoch with test accuracy >= accuracy, or None."""
    total = 0.0
    for epoch, (s, acc) in enumerate(zip(result["epoch_seconds"], result["accuracy"])):
        total += s
        if acc >= accuracy:
            return total, epoch + 1
    return None


def print_table(results, cfg):
    ok = [r for r in results if "error" not in r]
    if not ok:
        return
    width = 26
    print()
    print(f"{'':>16}" + "".join(f" | {CONTENDERS[r['name']]:>{width}}" for r in ok))
    print(f"{'epoch':>16}" + "".join(f" | {'s':>7} {'CPU s':>7} {'accuracy':>10}" for _ in ok))
    for e in range(cfg["epochs"]):
        print(
            f"{e + 1:>16}"
            + "".join(
                f" | {r['epoch_seconds'][e]:>7.1f} {r['epoch_cpu_seconds'][e]:>7.1f} {r['accuracy'][e]:>10.2%}"
                for r in ok
            )
        )

    def row(label, cell):
        print(f"{label:>16}" + "".join(f" | {cell(r):>{width}}" for r in ok))

    row("mean s/epoch", lambda r: f"{np.mean(r['epoch_seconds']):.1f} ({np.mean(r['epoch_cpu_seconds']):.1f} CPU)")
    row("training s", lambda r: f"{np.sum(r['epoch_seconds']):.1f}")

    def reached(r):
        hit = time_to(r, THRESHOLD)
        return "not reached" if hit is None else f"{hit[0]:.1f} (epoch {hit[1]})"

    row(f"s to {THRESHOLD:.0%}", reached)
    row("final accuracy", lambda r: f"{r['accuracy'][-1]:.2%}")
    row("peak memory MB", lambda r: f"{r['peak_mb']:.0f}")


def main():
    ap = argparse.ArgumentParser(description="CIFAR-10 CNN: reference tinytorch vs. hand-written numpy vs. PyTorch")
    ap.add_argument("--epochs", type=int, default=None, help="epochs (default: the configuration's, 3 for judge)")
    ap.add_argument("--config", choices=["judge", "long"], default="judge")
    ap.add_argument("--only", default="tinytorch,numpy,torch", help="comma-separated contenders to run")
    ap.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    add_malloc_option(ap)
    ap.add_argument("--contender", choices=list(CONTENDERS), help=argparse.SUPPRESS)  # internal: one child process
    args = ap.parse_args()
    cfg = configuration(args.config, args.epochs)
    if args.contender:
        child(args.contender, cfg)
        return

    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown:
        ap.error(f"unknown contender(s) {unknown}; choose from {', '.join(CONTENDERS)}")
    print(f"CIFAR-10 CNN, config {args.config}: {describe(cfg)}")
    print(f"every contender's process: one BLAS thread, {apply_malloc_option(args)}")
    results = []
    for name in [n for n in CONTENDERS if n in names]:
        if name == "torch" and importlib.util.find_spec("torch") is None:
            print("PyTorch not installed: skipping the torch contender")
            continue
        print(f"{CONTENDERS[name]} ...", flush=True)
        results.append(run_contender(name, args))
        if "error" in results[-1]:
            print(f"{CONTENDERS[name]} failed: {results[-1]['error']}")
    print_table(results, cfg)

    by_name = {r["name"]: r for r in results if "error" not in r}
    mean = {n: float(np.mean(r["epoch_seconds"])) for n, r in by_name.items()}
    cpu = {n: float(np.mean(r["epoch_cpu_seconds"])) for n, r in by_name.items()}
    for other in ("numpy", "torch"):
        if "tinytorch" in mean and other in mean:
            print(
                f"tinytorch / {CONTENDERS[other]} seconds per epoch: {mean['tinytorch'] / mean[other]:.2f}x "
                f"(mean wall-clock time; CPU time: {cpu['tinytorch'] / cpu[other]:.2f}x)"
            )

    print_rates([(CONTENDERS[name], epoch_flops(cfg), seconds) for name, seconds in cpu.items()], "CPU time per epoch")

    goal, budget = cfg["target"]
    verdicts = []
    tt = by_name.get("tinytorch")
    if tt is None:
        verdicts.append((f">= {goal:.0%} within {budget:.0f} s", None))
    else:
        hit = time_to(tt, goal)
        verdicts.append((f">= {goal:.0%} within {budget:.0f} s", hit is not None and hit[0] <= budget))
        verdicts.append((f"peak memory < {MAX_MEMORY_MB} MB", tt["peak_mb"] < MAX_MEMORY_MB))
    ratio = mean["tinytorch"] / mean["numpy"] if {"tinytorch", "numpy"} <= mean.keys() else None
    verdicts.append((f"epoch time <= {MAX_RATIO}x numpy", None if ratio is None else ratio <= MAX_RATIO))
    words = {True: "met", False: "MISSED", None: "not measured"}
    print("targets (tinytorch): " + "; ".join(f"{what} {words[v]}" for what, v in verdicts))
    if args.check and any(v is False for _, v in verdicts):
        sys.exit(1)


if __name__ == "__main__":
    main()
