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

from milestones.generation.test_chatgpt_milestone import (
    CONFIG,
    STOP,
    corpus,
    next_token,
    read_function,
    tokenize,
    train,
)
from milestones.judge import build_model_from

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


def highlighted(code):
    """Python source as syntax-highlighted HTML (pygments, inline styles: no stylesheet needed)."""
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    return highlight(code, PythonLexer(), HtmlFormatter(noclasses=True, nobackground=True))


def trained_tokenizer(tinytorch):
    """The CharTokenizer the milestone trains with: built by your tinytorch from the training text."""
    return tokenize(tinytorch, corpus().train_text)[0]


def generation_demo(tinytorch, model, tokenizer):
    """A prompt box, temperature and top-k, Generate and Stop: the code appears as it is written,
    highlighted, then marked by whether it parses. Generation runs in a thread, so the cell returns
    at once and Stop stays responsive. Returns the widget (its .run(prompt, ...) writes synchronously)."""
    import threading

    import ipywidgets as widgets

    prompt = widgets.Text(value="def ", description="prompt")
    wide = {"description_width": "initial"}  # the labels in full, not cut to ipywidgets' default width
    temperature = widgets.FloatSlider(value=0.5, min=0.1, max=1.5, step=0.05, description="temperature", style=wide)
    top_k = widgets.IntSlider(value=0, min=0, max=20, description="top-k (0: off)", style=wide)
    go, stop = widgets.Button(description="Generate", icon="play"), widgets.Button(description="Stop", icon="stop")
    code, mark = widgets.HTML(), widgets.HTML()
    stopping = threading.Event()

    class Sink:  # write() receives each character as it is chosen
        text = ""

        def write(self, char):
            if stopping.is_set():
                raise KeyboardInterrupt  # leaves write() at once; caught below
            self.text += char
            code.value = highlighted(self.text)

        def flush(self):
            pass

    def run(text, temp, k, seed=None):
        stopping.clear()
        sink, mark.value = Sink(), "writing..."
        try:
            written = write(tinytorch, model, tokenizer, text, temp, k or None, np.random.default_rng(seed), out=sink)
        except KeyboardInterrupt:
            mark.value = "stopped"
            return sink.text
        verdict = read_function(written.rstrip("\n")) if written.endswith(STOP) else "unfinished"
        ok = verdict == "compiles" or verdict.startswith("parses")
        mark.value = f'<span class="tinytorch-parse-mark">{"✅" if ok else "❌"} {verdict}</span>'
        return written

    def start(_button):
        threading.Thread(target=run, args=(prompt.value, temperature.value, top_k.value), daemon=True).start()

    go.on_click(start)
    stop.on_click(lambda _button: stopping.set())
    demo = widgets.VBox([widgets.HBox([prompt, go, stop]), widgets.HBox([temperature, top_k]), code, mark])
    demo.run = run
    return demo


def main(tinytorch=None, steps=None, model=None, tokenizer=None, samples=6, temperature=0.5, top_k=None, seed=None):
    """Train with the judge's recipe (or use a trained model and its tokenizer), then write functions."""
    if tinytorch is None:
        import tinytorch  # your exported package
    recipe = {**CONFIG["judge"], **({"steps": steps} if steps else {})}
    data = corpus()
    if model is None:
        print(f"Training the judge's TinyGPT with your tinytorch for {recipe['steps']} steps...")
        build_model = build_model_from(CONFIG["model"]["default_source"])
        model, tokenizer, report, _ = train(tinytorch, build_model, data.train_text, recipe)
        print(f"Done in {report['train_seconds']:.0f} s.")
    tokenizer = tokenizer or trained_tokenizer(tinytorch)
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
