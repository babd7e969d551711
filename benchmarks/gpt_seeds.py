"""Milestone 3 by chance: the judge's own measurements on many seeds, and how far the worst sits from
each threshold.

An honest tinytorch differs from the reference in float order, in the random draws its layers make and
in the Python whose standard library is the corpus, so its run is one draw from a distribution. This
script draws that distribution: for each seed it runs the Milestone 3 judge itself
(milestones/generation/test_chatgpt_milestone.py, full recipe: 600 steps, 128 samples) with that seed
for the model's initial weights and the batches (`seed`) and seed + 1 for the samples (`sample_seed`),
with the thresholds switched off so that every run reports its numbers. Each seed runs in its own
process, --jobs at a time (each uses one BLAS thread, as the judge does).

    python benchmarks/gpt_seeds.py                       # seeds 0-9, the reference tinytorch (source/)
    python benchmarks/gpt_seeds.py --seeds 0-3 --jobs 2
    python benchmarks/gpt_seeds.py --package path/to/tinytorch      # an exported package instead
    python benchmarks/gpt_seeds.py --model-source model.py          # a build_model cell of your own

Printed: per seed the share of samples that parse (judged) and that also compile, the share of parsing
ones that are new, the validation loss and the seconds; then the worst of each beside its threshold
(milestones/generation/milestone.yml), and the margins.
"""

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def seeds_from(text):
    """'0-9' or '0,3,7' -> a list of ints."""
    if "-" in text:
        first, last = text.split("-")
        return list(range(int(first), int(last) + 1))
    return [int(s) for s in text.split(",")]


def one_seed(seed, package, model_source):
    """Judge `package` with the recipe's seed replaced; print the measurements as one JSON line."""
    from milestones.generation import test_chatgpt_milestone as m3

    m3.THRESHOLD = 0.0  # report, do not fail: this script measures the distribution
    m3.LIMITS = {**m3.LIMITS, "validation_loss": math.inf, "novel": 0.0}
    started = time.perf_counter()
    result = m3.judge_package(package, model_source, log=lambda *a, **k: None, seed=seed, sample_seed=seed + 1)
    d = result.details
    print(
        json.dumps(
            {
                "seed": seed,
                "parse": result.accuracy,
                "compile": d["compiled"] / d["samples"],
                "new": d["novel_share"],
                "loss": d["validation_loss"],
                "train_s": result.train_seconds,
                "total_s": time.perf_counter() - started,
            }
        )
    )


def main():
    ap = argparse.ArgumentParser(description="Milestone 3's judge on many seeds: the distribution and its margins")
    ap.add_argument("--seeds", default="0-9", help="e.g. 0-9 or 0,3,7 (default 0-9)")
    ap.add_argument("--jobs", type=int, default=2, help="seeds judged at the same time (default 2)")
    ap.add_argument("--package", help="an exported tinytorch package folder (default: export source/)")
    ap.add_argument("--model-source", help="a file defining build_model(vocab_size) (default: the milestone's)")
    ap.add_argument("--one-seed", type=int, help=argparse.SUPPRESS)  # internal: one child process
    args = ap.parse_args()
    model_source = Path(args.model_source).read_text() if args.model_source else None
    if args.one_seed is not None:
        one_seed(args.one_seed, args.package, model_source)
        return

    from milestones.generation import test_chatgpt_milestone as m3
    from milestones.judge import reference_package
    from tito.course import milestone

    # the course's reference package (exported once, removed at exit) unless another was given
    package = args.package or str(reference_package(milestone(3).requires, judged=None))
    seeds = seeds_from(args.seeds)
    print(f"Milestone 3's judge on seeds {args.seeds}, {args.jobs} at a time, Python {sys.version.split()[0]}")
    print(f"{'seed':>4} {'parse':>6} {'compile':>8} {'new':>5} {'loss':>6} {'train s':>8} {'total s':>8}", flush=True)
    command = [sys.executable, __file__, "--package", package]
    if args.model_source:
        command += ["--model-source", args.model_source]
    waiting, running, rows = list(seeds), [], []
    while waiting or running:
        while waiting and len(running) < args.jobs:
            seed = waiting.pop(0)
            cmd = command + ["--one-seed", str(seed)]
            running.append((seed, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
        time.sleep(1)
        for seed, proc in [r for r in running if r[1].poll() is not None]:
            running.remove((seed, proc))
            out, err = proc.communicate()
            lines = out.strip().splitlines()
            if proc.returncode or not lines:
                print(f"{seed:>4} failed: {(err.strip().splitlines() or ['no output'])[-1]}", flush=True)
                continue
            r = json.loads(lines[-1])
            rows.append(r)
            print(
                f"{seed:>4} {r['parse']:>6.1%} {r['compile']:>8.1%} {r['new']:>5.0%} {r['loss']:>6.3f} "
                f"{r['train_s']:>8.0f} {r['total_s']:>8.0f}",
                flush=True,
            )
    if not rows:
        sys.exit("no seed finished")
    parse = np.array([r["parse"] for r in rows])
    loss = np.array([r["loss"] for r in rows])
    limit = m3.LIMITS["validation_loss"]
    print(
        f"\n{len(rows)} seeds: parse mean {parse.mean():.1%} (sd {parse.std(ddof=1) if len(rows) > 1 else 0:.1%}), "
        f"worst {parse.min():.1%}; validation loss mean {loss.mean():.3f}, worst {loss.max():.3f}"
    )
    print(
        f"parse threshold {m3.THRESHOLD:.0%}: the worst seed clears it by {100 * (parse.min() - m3.THRESHOLD):+.1f} points"
    )
    print(f"loss limit {limit}: the worst seed clears it by {limit - loss.max():+.3f} nats")


if __name__ == "__main__":
    main()
