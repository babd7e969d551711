"""The Python-functions corpus of Milestone 3: real functions from the standard library's own source.

Every Python installation ships its standard library as .py files, so the corpus needs no download
and is the same on every machine with the same Python version. `python_functions()` walks that
folder in sorted order and keeps, for every top-level function and method (`def`, not `async def`):

- its source without decorators, dedented to column 0, with the docstring removed and blank lines
  dropped (a blank line is what separates two functions, so `generate` can stop there);
- only if it is pure ASCII, has no tab, is 40-600 characters long and still parses on its own.

Folders of tests, IDLE, lib2to3, turtledemo and site-packages are left out (tests are repetitive,
the others are applications and third-party code). A file goes wholly to the training set or wholly
to the validation set (a CRC32 of its path relative to the library, so a function's neighbours
never leak into validation). The text of a split is its functions joined by one blank line.
Counts per Python version are in milestones/generation/README.md; `python -m tito.corpus` prints them.
"""

import ast
import functools
import sysconfig
import textwrap
import zlib
from dataclasses import dataclass
from pathlib import Path

SKIPPED_FOLDERS = {"test", "tests", "idlelib", "lib2to3", "turtledemo", "site-packages", "__pycache__"}
MIN_CHARS, MAX_CHARS = 40, 600
VALIDATION_SHARE = 10  # one file in ten (by CRC32 of its path) goes to validation
SEPARATOR = "\n\n"  # between functions: a blank line, which no kept function contains


@dataclass(frozen=True)
class Corpus:
    train: tuple  # the training functions, each a str starting with "def "
    validation: tuple
    files: int  # .py files read
    python: str  # the interpreter version whose library this is

    @property
    def train_text(self):
        return SEPARATOR.join(self.train) + SEPARATOR

    @property
    def validation_text(self):
        return SEPARATOR.join(self.validation) + SEPARATOR


def stdlib_folder():
    return Path(sysconfig.get_paths()["stdlib"])


def _without_docstring(node, lines):
    """The function's lines (def line to end, decorators left out) with its docstring lines removed."""
    first, last = node.lineno - 1, node.end_lineno
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0].value, "value", None), str):
        if len(body) == 1:
            return None  # nothing but a docstring
        doc = body[0]
        if doc.lineno - 1 == first:  # `def f(): "doc"; return 1` on one line: keep it whole
            return None
        keep = set(range(first, last)) - set(range(doc.lineno - 1, doc.end_lineno))
        return [lines[i] for i in sorted(keep)]
    return lines[first:last]


def functions_in(source):
    """The kept functions of one module's source text, in order of appearance."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    lines = source.splitlines()
    found = []
    candidates = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        candidates += [n for n in cls.body if isinstance(n, ast.FunctionDef)]
    for node in sorted(candidates, key=lambda n: n.lineno):
        kept = _without_docstring(node, lines)
        if kept is None:
            continue
        text = textwrap.dedent("\n".join(line for line in kept if line.strip())).rstrip()
        if not (MIN_CHARS <= len(text) <= MAX_CHARS) or "\t" in text or not text.isascii():
            continue
        if not text.startswith("def "):
            continue
        try:
            ast.parse(text)
        except SyntaxError:  # e.g. a line continued inside a removed docstring's neighbourhood
            continue
        found.append(text)
    return found


def _is_validation(relative):
    return zlib.crc32(relative.encode()) % VALIDATION_SHARE == 0


@functools.lru_cache(maxsize=2)
def python_functions(folder=None):
    """The corpus of the running interpreter's standard library (or of `folder`), deterministic."""
    folder = Path(folder) if folder else stdlib_folder()
    train, validation, files = [], [], 0
    for path in sorted(folder.rglob("*.py")):
        relative = path.relative_to(folder).as_posix()
        if SKIPPED_FOLDERS & set(relative.split("/")[:-1]):
            continue
        try:
            source = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        files += 1
        (validation if _is_validation(relative) else train).extend(functions_in(source))
    if not train or not validation:
        raise FileNotFoundError(
            f"no Python functions found under {folder}: this interpreter seems to ship without its "
            "standard library source (some minimal Docker images strip it). Install the full Python "
            "(for example the python3 package, not only python3-minimal)."
        )
    import platform

    return Corpus(tuple(train), tuple(validation), files, platform.python_version())


def summary(corpus):
    chars = set(corpus.train_text)
    return (
        f"Python {corpus.python}: {corpus.files} files; "
        f"{len(corpus.train):,} training functions ({len(corpus.train_text):,} characters), "
        f"{len(corpus.validation):,} validation functions ({len(corpus.validation_text):,} characters), "
        f"{len(chars)} distinct characters in the training text"
    )


if __name__ == "__main__":
    print(summary(python_functions()))
