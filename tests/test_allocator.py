"""tito keeps freed memory for reuse in every process started after it is imported (tito/__init__.py)."""

import json
import os
import subprocess
import sys

from tito import KEEP_FREED_MEMORY

SHOW = "import json, os, tito; print(json.dumps({k: os.environ.get(k) for k in tito.KEEP_FREED_MEMORY}))"


def _seen_after_import(**extra):
    env = {k: v for k, v in os.environ.items() if k not in KEEP_FREED_MEMORY and k != "TINYTORCH_MALLOC"}
    out = subprocess.run([sys.executable, "-c", SHOW], env={**env, **extra}, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_importing_tito_passes_the_allocator_setting_to_every_later_process():
    assert _seen_after_import() == KEEP_FREED_MEMORY


def test_a_users_own_value_wins_and_default_leaves_glibc_alone():
    assert _seen_after_import(MALLOC_TRIM_THRESHOLD_="0")["MALLOC_TRIM_THRESHOLD_"] == "0"
    assert _seen_after_import(TINYTORCH_MALLOC="default") == dict.fromkeys(KEEP_FREED_MEMORY)
