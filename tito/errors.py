"""Errors from a student's code, told in the student's terms: which notebook cell, which function.

The exporter writes a marker line `# --- 03_activations.ipynb, cell 8 ---` above each exported
cell, so a line of tinytorch/activations.py can be traced back to the cell it came from.
"""

import linecache
import re
import traceback
from pathlib import Path

MARKER = re.compile(r"^# --- (?P<notebook>[\w.-]+\.ipynb), cell (?P<cell>\d+) ---$")


def notebook_location(filename, lineno):
    """'03_activations.ipynb, cell 8, line 4' for a line of an exported file, else None."""
    if Path(filename).parent.name != "tinytorch":
        return None
    for number in range(lineno, 0, -1):
        match = MARKER.match(linecache.getline(filename, number).rstrip("\n"))
        if match:  # the cell's first line (`#| export`) was dropped on export: +1
            return f"{match['notebook']}, cell {match['cell']}, line {lineno - number + 1}"
    return None


def unwritten_message(exc):
    """'relu() is not written yet (03_activations.ipynb, cell 8) ...' for a NotImplementedError."""
    tb = exc.__traceback__
    if tb is None:
        return "a function that is not written yet raised NotImplementedError"
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    name = getattr(code, "co_qualname", code.co_name)  # Tensor.__add__ (Python 3.11+), else __add__
    where = notebook_location(code.co_filename, tb.tb_lineno)
    cell = f" ({where.rsplit(', line', 1)[0]})" if where else ""
    return f"{name}() is not written yet{cell}: fill in its solution cell, run it, then run this again"


def name_unwritten(exc):
    """Give an empty NotImplementedError the name of the function that raised it (in place)."""
    if isinstance(exc, NotImplementedError) and not str(exc):
        exc.args = (unwritten_message(exc),)
    return exc


def student_traceback(exc, keep):
    """The frames of exc's traceback for which keep(filename) is true, as readable lines.

    Lines of an exported package are shown with the notebook cell they came from.
    """
    lines = []
    for frame in traceback.extract_tb(exc.__traceback__):
        if not keep(frame.filename):
            continue
        where = notebook_location(frame.filename, frame.lineno) or f"{Path(frame.filename).name}, line {frame.lineno}"
        lines.append(f"  {where}, in {frame.name}")
        if frame.line:
            lines.append(f"      {frame.line.strip()}")
    return lines
