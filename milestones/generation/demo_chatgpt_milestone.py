"""Milestone 3 demo: watch the GPT you built write Python functions, right in the terminal.

    tito milestone demo 3                                     # with your exported tinytorch
    python -m milestones.generation.demo_chatgpt_milestone    # the same, if tinytorch is importable

It trains the judge's TinyGPT with your package on the standard library's functions (about five
minutes, with a progress bar), then writes functions one character at a time as the model picks
them, and says for each whether it parses as Python (it is read with `ast`, never run).
"""

import argparse
import sys

import numpy as np

from milestones.generation.test_chatgpt_milestone import CONFIG, STOP, corpus, next_token, read_function, train

PROMPTS = ["def ", "def __init__(self", "def get_", "def is_", "def _", "def __repr__(self"]


def write(tinytorch, model, tokenizer, prompt, temperature, top_k, rng, max_new=600, out=sys.stdout):
    """Continue prompt one character at a time, printing each as it comes; return the text."""
    ids = list(np.asarray(tokenizer.encode(STOP + prompt)))  # functions start after a blank line
    context = CONFIG["judge"]["context"]
    out.write(prompt)
    with tinytorch.no_grad():
        for _ in range(max_new):
            logits = np.asarray(model(np.array([ids[-context:]])).data)[:, -1]
            ids.append(int(next_token(logits, temperature, top_k, rng)[0]))
            char = tokenizer.decode([ids[-1]])
            out.write(char)
            out.flush()
            if tokenizer.decode(ids[-len(STOP) :]) == STOP:
                break
    return tokenizer.decode(ids)[len(STOP) :]


def main(tinytorch=None, steps=None, model=None, tokenizer=None, samples=6, temperature=0.5, top_k=None, seed=None):
    """Train with the judge's recipe (or use a trained model and its tokenizer), then write functions."""
    if tinytorch is None:
        import tinytorch  # your exported package
    recipe = {**CONFIG["judge"], **({"steps": steps} if steps else {})}
    data = corpus()
    if model is None:
        print(f"Training the judge's TinyGPT with your tinytorch for {recipe['steps']} steps...")
        namespace = {}
        exec("from tinytorch import *", namespace)
        exec(CONFIG["model"]["default_source"], namespace)
        model, tokenizer, report, _ = train(tinytorch, namespace["build_model"], data.train_text, recipe)
        print(f"Done in {report['train_seconds']:.0f} s.")
    model.eval()
    rng = np.random.default_rng(seed)
    good = 0
    for i in range(samples):
        prompt = PROMPTS[i % len(PROMPTS)]
        print(f"\n--- {i + 1}/{samples}: temperature {temperature}, prompt {prompt!r} " + "-" * 30)
        text = write(tinytorch, model, tokenizer, prompt, temperature, top_k, rng)
        ended = text.endswith(STOP)
        verdict = read_function(text.rstrip("\n")) if ended else "unfinished"
        good += verdict == "compiles"
        new = "new" if text.rstrip("\n") not in data.train_text else "seen in the training text"
        mark = "parses and compiles" if verdict == "compiles" else verdict
        print(("\n" if not ended else "") + f"[{mark}; {new}]")
    print(f"\n{good} of {samples} functions parse and compile.")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="default: the judge's recipe")
    parser.add_argument("--samples", type=int, default=6)
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None, help="fix what it writes")
    args = parser.parse_args()
    main(steps=args.steps, samples=args.samples, temperature=args.temperature, top_k=args.top_k, seed=args.seed)
