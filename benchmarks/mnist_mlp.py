"""MNIST MLP benchmark: the reference tinytorch against the same network written by hand in numpy.

Run from the repository root:

    python benchmarks/mnist_mlp.py                          # 5 epochs, the default recipe
    OPENBLAS_NUM_THREADS=2 python benchmarks/mnist_mlp.py   # two BLAS threads (default: one)
    python benchmarks/mnist_mlp.py --epochs 8 --check       # exit 1 if a target below is missed

MNIST comes from tito.datasets (set TINYTORCH_DATA to a folder with the official files to skip
the download). The reference tinytorch is exported from the solutions in source/ into a temporary
folder by the same exporter students use.

Both sides train MLP 784-256-128-10 (ReLU) in float32 from the *same* initial weights (copied from
the tinytorch model), on the same batches in the same order, with SGD (momentum 0.9) and the same
per-epoch cosine learning-rate decay. Their accuracies therefore track each other closely (float
rounding makes the two runs drift apart a little); the time is what differs. The two run interleaved, epoch by epoch, so a busy machine slows both alike.
Targets: >= 98% test accuracy in < 30 s of training, and tinytorch epochs <= 1.5x numpy's.
"""

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

# One BLAS thread unless told otherwise: steadier timings, and what parallel grading uses.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo, when not installed
from milestones.foundation.test_lenet_milestone import predict  # noqa: E402
from tito.course import REPO, milestone  # noqa: E402
from tito.datasets import load_mnist  # noqa: E402
from tito.notebook import load_tinytorch  # noqa: E402

SIZES = [784, 256, 128, 10]


class NumpyMLP:
    """The baseline: forward, backward and SGD-momentum for the same MLP, by hand."""

    def __init__(self, params):
        self.params = [np.array(p, dtype=np.float32) for p in params]  # W1, b1, W2, b2, W3, b3
        self.velocity = [np.zeros_like(p) for p in self.params]
        self.steps = 0

    def logits(self, x):
        W1, b1, W2, b2, W3, b3 = self.params
        return np.maximum(np.maximum(x @ W1 + b1, 0) @ W2 + b2, 0) @ W3 + b3

    def step(self, x, y, lr, momentum):
        W1, b1, W2, b2, W3, b3 = self.params
        a1 = x @ W1 + b1
        h1 = np.maximum(a1, 0)
        a2 = h1 @ W2 + b2
        h2 = np.maximum(a2, 0)
        z = h2 @ W3 + b3
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(len(y)), y] -= 1  # d(mean cross-entropy)/dz = (softmax - onehot) / N
        g = p / np.float32(len(y))
        grads = [None] * 6
        grads[4], grads[5] = h2.T @ g, g.sum(axis=0)
        g = (g @ W3.T) * (a2 > 0)
        grads[2], grads[3] = h1.T @ g, g.sum(axis=0)
        g = (g @ W2.T) * (a1 > 0)
        grads[0], grads[1] = x.T @ g, g.sum(axis=0)
        self.steps += 1
        for param, v, grad in zip(self.params, self.velocity, grads):
            if self.steps % 100 == 0:
                v[np.abs(v) < 1e-30] = 0  # no subnormal floats, as tinytorch's SGD
            v *= momentum
            v += grad
            param -= np.float32(lr) * v


def cosine_lr(lr, epoch, epochs):
    """Per-epoch cosine decay: lr at epoch 0, falling towards 0 (set before each epoch)."""
    return lr * 0.5 * (1 + math.cos(math.pi * epoch / epochs))


def main():
    ap = argparse.ArgumentParser(description="MNIST MLP: reference tinytorch vs. hand-written numpy")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = ap.parse_args()

    tt, report = load_tinytorch(REPO / "source", milestone(1).requires, tempfile.mkdtemp(prefix="tinytorch-bench-"))
    problems = {name: p for name, p in report.items() if p}
    if problems:
        sys.exit(f"could not export the reference tinytorch: {problems}")
    (X, y), (X_test, y_test) = load_mnist()

    np.random.seed(args.seed)
    model = tt.MLP(SIZES)
    baseline = NumpyMLP([p.data for p in model.parameters()])  # identical starting point
    assert [p.shape for p in baseline.params] == [(784, 256), (256,), (256, 128), (128,), (128, 10), (10,)]
    loss_fn = tt.CrossEntropyLoss()
    optimizer = tt.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)

    print(
        f"MLP {'-'.join(map(str, SIZES))}, batch {args.batch_size}, SGD momentum {args.momentum}, "
        f"lr {args.lr} with cosine decay over {args.epochs} epochs, float32, "
        f"{os.environ['OPENBLAS_NUM_THREADS']} BLAS thread(s)"
    )
    print(f"{'epoch':>5} {'lr':>7} | {'tinytorch s':>11} {'acc':>7} | {'numpy s':>8} {'acc':>7} | {'ratio':>5}")
    rows, totals, reached = [], {"tt": 0.0, "np": 0.0}, {"tt": None, "np": None}
    for epoch in range(args.epochs):
        lr = cosine_lr(args.lr, epoch, args.epochs)
        optimizer.lr = lr
        # the batches train_epoch will draw, as index arrays (same rng seed -> same order)
        batches = [
            b
            for b, _ in tt.iterate_minibatches(
                np.arange(len(X)), np.arange(len(X)), args.batch_size, rng=np.random.default_rng(args.seed + epoch)
            )
        ]

        def run_tinytorch():
            t0 = time.perf_counter()
            tt.train_epoch(
                model,
                loss_fn,
                optimizer,
                X,
                y,
                batch_size=args.batch_size,
                rng=np.random.default_rng(args.seed + epoch),
            )
            return time.perf_counter() - t0

        def run_numpy():
            t0 = time.perf_counter()
            for b in batches:
                baseline.step(X[b], y[b], lr, args.momentum)
            return time.perf_counter() - t0

        # alternate who goes first, so neither always gets the warmer cache or the quieter machine
        if epoch % 2 == 0:
            s_tt, s_np = run_tinytorch(), run_numpy()
        else:
            s_np, s_tt = run_numpy(), run_tinytorch()
        acc_tt = float(np.mean(predict(tt, model, X_test).argmax(axis=1) == y_test))
        acc_np = float(np.mean(baseline.logits(X_test).argmax(axis=1) == y_test))
        totals["tt"] += s_tt
        totals["np"] += s_np
        for key, acc in (("tt", acc_tt), ("np", acc_np)):
            if reached[key] is None and acc >= 0.98:
                reached[key] = (totals[key], epoch + 1)
        rows.append(s_tt / s_np)
        print(
            f"{epoch + 1:>5} {lr:>7.4f} | {s_tt:>11.2f} {acc_tt:>7.2%} | {s_np:>8.2f} {acc_np:>7.2%} | "
            f"{s_tt / s_np:>4.2f}x"
        )

    ratio = float(np.median(rows))
    print(
        f"{'total':>13} | {totals['tt']:>11.2f} {'':>7} | {totals['np']:>8.2f} {'':>7} | "
        f"{totals['tt'] / totals['np']:>4.2f}x"
    )

    def when(key):
        return "not reached" if reached[key] is None else f"{reached[key][0]:.1f} s (epoch {reached[key][1]})"

    print(f"time to 98%: tinytorch {when('tt')}, numpy {when('np')}")
    print(f"tinytorch / numpy seconds per epoch: {ratio:.2f}x (median over epochs)")
    ok_fast = reached["tt"] is not None and reached["tt"][0] < 30
    ok_ratio = ratio <= 1.5
    print(
        f"targets: 98% in < 30 s {'met' if ok_fast else 'MISSED'}; epoch time <= 1.5x numpy "
        f"{'met' if ok_ratio else 'MISSED'}"
    )
    if args.check and not (ok_fast and ok_ratio):
        sys.exit(1)


if __name__ == "__main__":
    main()
