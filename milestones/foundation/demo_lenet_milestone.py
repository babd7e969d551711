"""Milestone 1 demo: watch the network you built read handwritten digits, right in the terminal.

    tito milestone demo 1                                  # with your exported tinytorch
    python -m milestones.foundation.demo_lenet_milestone   # the same, if tinytorch is importable

It trains the judge's MLP with your package (a few seconds per epoch), then shows test digits it
has never seen as ASCII art with its guess and confidence, and a confusion matrix of all 10,000.
"""

import argparse
import shutil

import numpy as np

from milestones.foundation.test_lenet_milestone import CONFIG, mnist, predict, train

SHADES = " .:-=+*#%@"  # dark to bright; one character per pixel pair


def ascii_digit(image):
    """28x28 pixels in [0, 1] -> 14 lines of 28 characters (terminal cells are about twice as tall as wide)."""
    pixels = np.asarray(image, dtype=np.float32).reshape(28, 28)
    rows = pixels.reshape(14, 2, 28).mean(axis=1)  # average each pair of rows
    levels = np.minimum((rows * len(SHADES)).astype(int), len(SHADES) - 1)
    return ["".join(SHADES[v] for v in line) for line in levels]


def mnist_like(ink, box=20, size=28):
    """A drawing as MNIST digits were made: ink (H, W) in [0, 1] (1 = ink) -> (size, size) float32.

    The ink's bounding box is scaled, keeping its aspect ratio, so that its longer side is `box`
    pixels, with area averaging (so thin strokes become grey levels, as in MNIST); the result is then
    placed in a size x size image so that its centre of mass lands on the centre. No ink -> zeros.
    """
    from PIL import Image

    ink = np.clip(np.asarray(ink, dtype=np.float32), 0.0, 1.0)
    rows, cols = np.flatnonzero(ink.max(axis=1) > 0.05), np.flatnonzero(ink.max(axis=0) > 0.05)
    out = np.zeros((size, size), dtype=np.float32)
    if not len(rows):
        return out
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    scale = box / max(crop.shape)
    h, w = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
    small = np.asarray(Image.fromarray(crop).resize((w, h), Image.Resampling.BOX), dtype=np.float32)
    total = small.sum()
    cy = (small.sum(axis=1) @ np.arange(h)) / total  # centre of mass, in small's pixels
    cx = (small.sum(axis=0) @ np.arange(w)) / total
    top = int(np.clip(round(size / 2 - cy), 0, size - h))  # MNIST puts the centre of mass at (14, 14)
    left = int(np.clip(round(size / 2 - cx), 0, size - w))
    out[top : top + h, left : left + w] = np.clip(small / max(small.max(), 1e-6), 0.0, 1.0)
    return out


DIGIT_CANVAS_ESM = """
export default {
  render({ model, el }) {
    const size = 280;
    const canvas = Object.assign(document.createElement("canvas"), { width: size, height: size });
    canvas.className = "tinytorch-digit-canvas";
    canvas.style.cssText = "border: 1px solid #888; border-radius: 4px; touch-action: none; cursor: crosshair;";
    el.append(canvas);
    const ctx = canvas.getContext("2d");
    const blank = () => { ctx.fillStyle = "white"; ctx.fillRect(0, 0, size, size); };
    blank();
    ctx.strokeStyle = "black"; ctx.lineWidth = 22; ctx.lineCap = "round"; ctx.lineJoin = "round";
    let drawing = false;
    const at = (e) => {
      const r = canvas.getBoundingClientRect();
      return [(e.clientX - r.left) * size / r.width, (e.clientY - r.top) * size / r.height];
    };
    canvas.addEventListener("pointerdown", (e) => {
      drawing = true;
      try { canvas.setPointerCapture(e.pointerId); } catch {}
      const [x, y] = at(e);
      ctx.beginPath(); ctx.moveTo(x, y); ctx.lineTo(x + 0.01, y); ctx.stroke();
      e.preventDefault();
    });
    canvas.addEventListener("pointermove", (e) => {
      if (!drawing) return;
      const [x, y] = at(e);
      ctx.lineTo(x, y); ctx.stroke();
    });
    const end = async () => {  // one message per stroke, not per mouse move
      if (!drawing) return;
      drawing = false;
      const blob = await new Promise((done) => canvas.toBlob(done, "image/png"));
      model.send({ type: "stroke" }, undefined, [await blob.arrayBuffer()]);
    };
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);
    model.on("msg:custom", (msg) => { if (msg.type === "clear") blank(); });
  },
};
"""


def ink_from_png(png):
    """The canvas's PNG (black strokes on white) as ink in [0, 1], (H, W) float32: 1 where it is black."""
    import io

    from PIL import Image

    grey = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32)
    return 1.0 - grey / 255.0


def digit_demo(tinytorch, model):
    """Draw a digit with the mouse, a pen or a finger; your MLP reads it when each stroke ends.
    Shows the 28x28 image the network actually saw and its ten probabilities. Returns the widget."""
    import anywidget
    import ipywidgets as widgets

    class DigitCanvas(anywidget.AnyWidget):
        _esm = DIGIT_CANVAS_ESM

    canvas = DigitCanvas()
    seen = widgets.Image(format="png", width=112, height=112, layout={"border": "1px solid #888"})
    bars = widgets.HTML()
    clear = widgets.Button(description="Clear", icon="eraser")

    def show(image):
        probs = softmax(predict(tinytorch, model, image.reshape(1, 784)).astype(np.float64))[0]
        seen.value = _png(image)
        best = int(probs.argmax())
        rows = "".join(
            f'<div style="display:flex;align-items:center;gap:6px;font-family:monospace">'
            f"<b style='width:1em'>{d}</b>"
            f'<div style="background:{"#2a7" if d == best else "#9bd"};height:12px;width:{probs[d] * 160:.0f}px"></div>'
            f"{probs[d]:.0%}</div>"
            for d in range(10)
        )
        bars.value = f'<div class="tinytorch-digit-guess">Your network reads: <b>{best}</b></div>{rows}'

    def on_message(_widget, content, buffers):
        if content.get("type") == "stroke" and buffers:
            show(mnist_like(ink_from_png(bytes(buffers[0]))))

    def on_clear(_button):
        canvas.send({"type": "clear"})
        seen.value, bars.value = _png(np.zeros((28, 28), np.float32)), "Draw a digit."

    canvas.on_msg(on_message)
    clear.on_click(on_clear)
    on_clear(None)
    apart = {"margin": "0 0 0 24px"}
    what_it_saw = widgets.VBox([widgets.HTML("<small>what the network saw<br>(28 × 28 pixels)</small>"), seen])
    what_it_saw.layout, bars.layout = widgets.Layout(**apart), widgets.Layout(**apart)
    return widgets.HBox([widgets.VBox([canvas, clear]), what_it_saw, bars])


def _png(image):
    """A (28, 28) image in [0, 1] as PNG bytes (white ink on black, as MNIST)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).resize((112, 112), Image.Resampling.NEAREST).save(
        buffer, format="PNG"
    )
    return buffer.getvalue()


def softmax(logits):
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def show_digits(images, labels, probs, indices):
    """Print digits side by side, as many per row as the terminal is wide."""
    width = 28 + 4
    per_row = max(1, min(len(indices), shutil.get_terminal_size((124, 40)).columns // width))
    for start in range(0, len(indices), per_row):
        chunk = indices[start : start + per_row]
        arts = [ascii_digit(images[i]) for i in chunk]
        print()
        for line in range(14):
            print("".join(f"|{art[line]}|  " for art in arts))
        guesses = [int(probs[i].argmax()) for i in chunk]
        print("".join(f" guess {g}  {probs[i, g]:4.0%} sure".ljust(width) for i, g in zip(chunk, guesses)))
        print(
            "".join(
                (" right" if g == labels[i] else f" WRONG: it is a {labels[i]}").ljust(width)
                for i, g in zip(chunk, guesses)
            )
        )


def show_confusion(labels, guesses):
    """10x10 counts: row = true digit, column = the network's guess; the diagonal is what it got right."""
    matrix = np.zeros((10, 10), dtype=int)
    np.add.at(matrix, (labels, guesses), 1)
    print("\nConfusion matrix on the 10,000 test digits (rows: true digit, columns: guess)")
    print("       " + "".join(f"{c:>6}" for c in range(10)) + "   correct")
    for r in range(10):
        cells = "".join((f"[{matrix[r, c]:>4}]" if r == c else f"{matrix[r, c] or '.':>6}") for c in range(10))
        print(f"  {r:>3}  {cells}   {matrix[r, r] / matrix[r].sum():6.1%}")
    off = matrix - np.diag(np.diag(matrix))
    r, c = np.unravel_index(off.argmax(), off.shape)
    print(f"\nIts most common mistake: reading a {r} as a {c} ({off[r, c]} times).")
    return matrix


def main(tinytorch=None, epochs=1, model=None, samples=8, seed=None):
    """Train with the judge's recipe (or show an already trained model), then show what it sees."""
    if tinytorch is None:
        import tinytorch  # your exported package
    (X_train, y_train), (X_test, y_test) = mnist()
    if model is None:
        print(f"Training MLP 784-256-128-10 with your tinytorch for {epochs} epoch(s) on 60,000 digits...")
        model, report = train(
            tinytorch,
            lambda: tinytorch.MLP([784, 256, 128, 10]),
            X_train,
            y_train,
            {**CONFIG["judge"], "epochs": epochs},
        )
        print(f"Done in {report['train_seconds']:.1f} s.")

    probs = softmax(predict(tinytorch, model, X_test).astype(np.float64))
    guesses = probs.argmax(axis=1)
    print(f"{np.mean(guesses == y_test):.2%} of the 10,000 test digits right.")
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(X_test), size=samples, replace=False)
    wrong = np.flatnonzero(guesses != y_test)
    if len(wrong):  # one of its mistakes is more instructive than one more right answer
        picks[-1] = rng.choice(wrong)
    print(f"\n{samples} test digits your network has never seen:")
    show_digits(X_test, y_test, probs, list(picks))
    show_confusion(y_test, guesses)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--seed", type=int, default=None, help="fix which digits are shown")
    args = parser.parse_args()
    main(epochs=args.epochs, samples=args.samples, seed=args.seed)
