"""A plain `assert` explains itself when it fails: what was compared, and the values it found.

IPython passes every cell's syntax tree through its `ast_transformers` before running it; prepare()
adds ExplainAsserts there. An assert without a message then fails with one, for example

    assert t.data.shape == (2, 3)
    AssertionError: t.data.shape == (2, 3)
      got:      (3, 2)
      expected: (2, 3)

(a comparison shows both sides, a call such as `np.array_equal(a, b)` its arguments, anything else
its source). Each value is computed once, as before: the rewritten test binds it with `:=` on the
way. An assert that has a message keeps it.
"""

import ast

SHOWN_CHARACTERS = 300  # of each value's repr: a big array is cut, the message stays readable
_NAME = "_tito_assert_{}"  # the names the rewritten asserts bind their values to


def _shown(label, name):
    return f"\n  {label:<9} {{{name}!r:.{SHOWN_CHARACTERS}}}"


class ExplainAsserts(ast.NodeTransformer):
    """Give every assert without a message one that shows what was compared."""

    def visit_Assert(self, node):
        if node.msg is not None:
            return node
        source = ast.unparse(node.test)
        test, lines = node.test, ""
        if isinstance(test, ast.Compare) and len(test.ops) == 1:
            left, right = _NAME.format("left"), _NAME.format("right")
            test = ast.Compare(
                left=ast.NamedExpr(target=ast.Name(left, ast.Store()), value=test.left),
                ops=test.ops,
                comparators=[ast.NamedExpr(target=ast.Name(right, ast.Store()), value=test.comparators[0])],
            )
            equal = isinstance(test.ops[0], (ast.Eq, ast.Is))
            lines = _shown("got:" if equal else "left:", left) + _shown("expected:" if equal else "right:", right)
        elif isinstance(test, ast.Call) and test.args and not any(isinstance(a, ast.Starred) for a in test.args):
            names = [_NAME.format(i) for i in range(len(test.args))]
            test = ast.Call(
                func=test.func,
                args=[ast.NamedExpr(target=ast.Name(n, ast.Store()), value=a) for n, a in zip(names, test.args)],
                keywords=test.keywords,
            )
            lines = "".join(_shown(f"arg {i + 1}:", n) for i, n in enumerate(names))
        message = ast.parse("f" + repr(source.replace("{", "{{").replace("}", "}}") + lines), mode="eval").body
        return ast.fix_missing_locations(ast.copy_location(ast.Assert(test=test, msg=message), node))

    def visit_ClassDef(self, node):
        return node  # := is not allowed in some places of a class body: leave its asserts alone


def install(shell):
    """Add ExplainAsserts to an IPython shell once (a notebook's setup cell may run again)."""
    if not any(isinstance(t, ExplainAsserts) for t in shell.ast_transformers):
        shell.ast_transformers.append(ExplainAsserts())
