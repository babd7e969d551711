"""tito.asserts: a plain assert in a notebook cell fails with what it compared and the values it found."""

import ast

import pytest

from tito.asserts import ExplainAsserts, install


def failure(source, namespace=None):
    """The AssertionError message the rewritten source raises (None if it does not raise)."""
    tree = ast.fix_missing_locations(ExplainAsserts().visit(ast.parse(source)))
    try:
        exec(compile(tree, "<cell>", "exec"), namespace if namespace is not None else {})
    except AssertionError as err:
        return str(err)
    return None


def test_a_comparison_shows_both_sides():
    assert (
        failure("shape = (3, 2)\nassert shape == (2, 3)") == "shape == (2, 3)\n  got:      (3, 2)\n  expected: (2, 3)"
    )
    assert failure("assert 2 < 1") == "2 < 1\n  left:     2\n  right:    1"


def test_a_call_shows_its_arguments_and_anything_else_its_source():
    assert (
        failure("assert isinstance([1], dict)") == "isinstance([1], dict)\n  arg 1:    [1]\n  arg 2:    <class 'dict'>"
    )
    assert failure("x = {}\nassert x and len(x) == 1") == "x and len(x) == 1"


def test_each_value_is_computed_once_and_a_message_is_kept():
    calls = []
    namespace = {"f": lambda: calls.append(1) or 5}
    assert failure("assert f() == 4", namespace).endswith("got:      5\n  expected: 4")
    assert calls == [1]
    assert failure("assert f() == 5", namespace) is None  # a passing assert raises nothing
    assert failure("assert 1 == 2, 'mine'") == "mine"
    assert failure("def g(x):\n    assert x == 1\ng(2)") == "x == 1\n  got:      2\n  expected: 1"


def test_braces_in_the_source_and_huge_values_stay_readable():
    message = failure("import numpy as np\nassert np.arange(10_000).sum() == {'a': 1}['a']")
    assert message.startswith("np.arange(10000).sum() == {'a': 1}['a']\n")
    message = failure("big = list(range(10_000))\nassert big == []")
    assert len(message) < 800


def test_install_adds_the_transformer_once_and_ipython_uses_it():
    interactiveshell = pytest.importorskip("IPython.core.interactiveshell")
    shell = interactiveshell.InteractiveShell.instance()
    try:
        install(shell)
        install(shell)
        assert sum(isinstance(t, ExplainAsserts) for t in shell.ast_transformers) == 1
        result = shell.run_cell("value = 3\nassert value == 4", silent=True)
        assert "got:      3" in str(result.error_in_exec)
    finally:
        shell.ast_transformers[:] = [t for t in shell.ast_transformers if not isinstance(t, ExplainAsserts)]
