"""Test helpers used by the notebooks' test cells: numerical gradient checks and closeness asserts."""

import numpy as np


def to_numpy(x):
    """The numbers of a Tensor, ndarray or Python number, as an ndarray."""
    return np.asarray(x.data if hasattr(x, "data") and not isinstance(x, np.ndarray) else x)


def assert_close(actual, expected, atol=1e-6, rtol=1e-5, msg=""):
    """Assert two tensors/arrays/numbers agree in shape and value, with a readable failure."""
    a, e = to_numpy(actual), to_numpy(expected)
    prefix = f"{msg}: " if msg else ""
    assert a.shape == e.shape, f"{prefix}shape {a.shape} != expected {e.shape}"
    if not np.allclose(a, e, atol=atol, rtol=rtol, equal_nan=False):
        worst = tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(a - e)), a.shape)) if a.shape else ()
        raise AssertionError(
            f"{prefix}values differ (largest gap at index {worst}: "
            f"got {a[worst].item()!r}, expected {e[worst].item()!r})"
        )


def gradcheck(fn, *arrays, atol=1e-5, rtol=1e-4, eps=1e-6, seed=0):
    """Compare the gradients your autograd computes for fn against central differences.

    fn takes Tensors (one per array) and returns a Tensor. We backpropagate a fixed random W as the
    output's gradient (the gradient of sum(fn(...) * W)), so every output element matters, and check
    d/d(input) for each input in float64. Seeding W directly keeps the check about fn's own rules.
    """
    from tinytorch.tensor import Tensor  # the package prepare() put on the path

    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    weights = None

    def objective(values):
        nonlocal weights
        out = fn(*[Tensor(v) for v in values])
        data = np.asarray(out.data, dtype=np.float64)
        if weights is None:
            weights = np.random.default_rng(seed).standard_normal(data.shape)
        return float(np.sum(data * weights))

    objective(arrays)  # fixes the weights' shape
    inputs = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    out = fn(*inputs)
    assert out.data.shape == weights.shape, "fn returned different shapes for the same input shapes"
    out.backward(weights.astype(out.data.dtype))

    for i, (inp, base) in enumerate(zip(inputs, arrays)):
        numeric = np.zeros_like(base)
        for idx in np.ndindex(base.shape):
            plus, minus = [a.copy() for a in arrays], [a.copy() for a in arrays]
            plus[i][idx] += eps
            minus[i][idx] -= eps
            numeric[idx] = (objective(plus) - objective(minus)) / (2 * eps)
        assert inp.grad is not None, f"input {i} got no gradient (is requires_grad passed through the op?)"
        analytic = np.asarray(inp.grad, dtype=np.float64)
        assert analytic.shape == base.shape, (
            f"input {i}: gradient shape {analytic.shape} != input shape {base.shape} "
            "(did you reduce the gradient over broadcast axes?)"
        )
        assert_close(analytic, numeric, atol=atol, rtol=rtol, msg=f"gradient of input {i}")
