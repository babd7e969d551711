"""The gradient checker the notebooks' tests rely on must catch a wrong gradient."""

import numpy as np
import pytest

from tito.checks import assert_close, gradcheck


@pytest.fixture
def cube_op(reference_tinytorch):
    """A private op x**3 whose gradient rule each test sets."""
    from tinytorch.autograd import GRADIENTS

    Tensor = reference_tinytorch.Tensor
    yield GRADIENTS, (lambda x: Tensor._make(x.data**3, (x,), "test_cube"))
    GRADIENTS.pop("test_cube", None)


def test_gradcheck_accepts_the_right_gradient(cube_op):
    rules, cube = cube_op
    rules["test_cube"] = lambda out, grad: (grad * 3 * out._parents[0].data ** 2,)
    gradcheck(cube, np.random.default_rng(0).standard_normal((3, 4)))


def test_gradcheck_rejects_a_wrong_gradient(cube_op):
    rules, cube = cube_op
    rules["test_cube"] = lambda out, grad: (grad * 2 * out._parents[0].data,)
    with pytest.raises(AssertionError, match="gradient of input 0"):
        gradcheck(cube, np.random.default_rng(0).standard_normal((3, 4)))


def test_assert_close_names_the_worst_element():
    with pytest.raises(AssertionError, match=r"largest gap at index \(1,\)"):
        assert_close(np.array([1.0, 5.0]), np.array([1.0, 2.0]))
