"""Milestone 2 demo: watch the CNN you built recognise photographs, right in the terminal.

    tito milestone demo 2                                     # with your exported tinytorch
    python -m milestones.revolution.demo_alexnet_milestone    # the same, if tinytorch is importable

It trains the judge's CNN with your package (a few minutes, with a progress bar), then shows test
images it has never seen in colour (a terminal with 24-bit colour draws two pixels per character),
with its top-3 guesses, and a confusion matrix of all 10,000.
"""

import argparse
import shutil

import numpy as np

from milestones.judge import build_model_from
from milestones.revolution.test_alexnet_milestone import CONFIG, cifar10, predict, train
from tito.datasets import CIFAR10_CLASSES


def colour_image(image, scale=2):
    """(32, 32, 3) uint8 -> lines of text: '▀' with the upper pixel as foreground, the lower as background."""
    small = image[::scale, ::scale].astype(int)
    if len(small) % 2:
        small = small[:-1]
    lines = []
    for top, bottom in zip(small[0::2], small[1::2]):
        lines.append(
            "".join(f"\x1b[38;2;{a[0]};{a[1]};{a[2]}m\x1b[48;2;{b[0]};{b[1]};{b[2]}m▀" for a, b in zip(top, bottom))
            + "\x1b[0m"
        )
    return lines


def cifar_like(image, size=32):
    """Any picture -> (size, size, 3) uint8, as CIFAR-10's: the largest centred square, resized with
    area averaging. image: a PIL image, or an array (H, W), (H, W, 3) or (H, W, 4) of uint8."""
    from PIL import Image

    picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    picture = picture.convert("RGB")
    w, h = picture.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    square = picture.crop((left, top, left + side, top + side))
    return np.asarray(square.resize((size, size), Image.Resampling.BOX), dtype=np.uint8)


def softmax(logits):
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


PICTURE_UPLOAD_ESM = """
export default {
  render({ model, el }) {
    const input = Object.assign(document.createElement("input"), { type: "file", accept: "image/*" });
    input.className = "tinytorch-picture-upload";
    el.append(input);
    input.addEventListener("change", async () => {
      const file = input.files[0];
      if (!file) return;
      // the browser decodes whatever it can show; Python gets the centred square at 256 x 256
      const bitmap = await createImageBitmap(file);
      const side = Math.min(bitmap.width, bitmap.height);
      const canvas = Object.assign(document.createElement("canvas"), { width: 256, height: 256 });
      canvas.getContext("2d").drawImage(bitmap, (bitmap.width - side) / 2, (bitmap.height - side) / 2,
                                        side, side, 0, 0, 256, 256);
      const blob = await new Promise((done) => canvas.toBlob(done, "image/png"));
      model.send({ type: "picture", name: file.name }, undefined, [await blob.arrayBuffer()]);
    });
  },
};
"""


def image_demo(tinytorch, model, X_test, y_test, recipe=None, seed=None):
    """Shuffle through test photographs or upload your own; the CNN's three best guesses for each.
    Returns the widget (its .show(image, title) classifies one (32, 32, 3) uint8 image)."""
    import io

    import anywidget
    import ipywidgets as widgets
    from PIL import Image

    recipe = recipe or CONFIG["judge"]
    rng = np.random.default_rng(seed)

    class PictureUpload(anywidget.AnyWidget):
        _esm = PICTURE_UPLOAD_ESM

    upload = PictureUpload()
    shuffle = widgets.Button(description="Another test photo", icon="random", layout={"width": "auto"})
    picture = widgets.Image(format="png", width=128, height=128)
    guesses = widgets.HTML()

    def show(image, title):
        probs = softmax(predict(tinytorch, model, image[None], recipe).astype(np.float64))[0]
        buffer = io.BytesIO()
        Image.fromarray(image).resize((128, 128), Image.Resampling.NEAREST).save(buffer, format="PNG")
        picture.value = buffer.getvalue()
        top = np.argsort(probs)[::-1][:3]
        rows = "".join(f"<li>{CIFAR10_CLASSES[c]}: {probs[c]:.0%}</li>" for c in top)
        guesses.value = f'<div class="tinytorch-top3"><b>{title}</b><ol>{rows}</ol></div>'

    def another(_button=None):
        i = int(rng.integers(len(X_test)))
        show(np.asarray(X_test[i]), f"test photo {i}: a {CIFAR10_CLASSES[y_test[i]]}")

    def uploaded(_widget, content, buffers):
        if content.get("type") == "picture" and buffers:
            image = cifar_like(Image.open(io.BytesIO(bytes(buffers[0]))))
            show(image, f"your picture {content.get('name', '')}")

    shuffle.on_click(another)
    upload.on_msg(uploaded)
    another()
    demo = widgets.VBox(
        [widgets.HBox([shuffle, widgets.Label("or upload a picture:"), upload]), widgets.HBox([picture, guesses])]
    )
    demo.show = show
    return demo


def plot_confusion(matrix, names):
    """The confusion matrix as a picture: rows the true class, columns the guess, counts in each cell."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("the network's guess")
    ax.set_ylabel("true class")
    for (row, column), count in np.ndenumerate(matrix):
        dark = count > matrix.max() / 2
        ax.text(column, row, count, ha="center", va="center", fontsize=7, color="white" if dark else "black")
    ax.set_title(f"{np.trace(matrix) / matrix.sum():.1%} right; the diagonal is what it gets right", fontsize=9)
    fig.tight_layout()
    plt.show()
    return fig


def show_images(images, labels, probs, indices, scale=2):
    """Images side by side, each with the network's top-3 classes and whether the first is right."""
    width = 32 // scale + 22
    per_row = max(1, min(len(indices), shutil.get_terminal_size((120, 40)).columns // width))
    for start in range(0, len(indices), per_row):
        chunk = indices[start : start + per_row]
        arts = [colour_image(images[i], scale) for i in chunk]
        tops = [np.argsort(probs[i])[::-1][:3] for i in chunk]
        print()
        for line in range(len(arts[0])):
            row = ""
            for art, top, i in zip(arts, tops, chunk):
                text = ""
                if line < 3:
                    text = f" {CIFAR10_CLASSES[top[line]]:<10} {probs[i, top[line]]:4.0%}"
                elif line == 4:
                    text = " right" if top[0] == labels[i] else f" WRONG: {CIFAR10_CLASSES[labels[i]]}"
                row += art[line] + text.ljust(width - 32 // scale)
            print(row)


def show_confusion(labels, guesses):
    """10x10 counts: row = true class, column = the network's guess; the diagonal is what it got right."""
    matrix = np.bincount(labels * 10 + guesses, minlength=100).reshape(10, 10)
    names = [c[:5] for c in CIFAR10_CLASSES]
    print("\nConfusion matrix on the 10,000 test images (rows: true class, columns: guess)")
    print("             " + "".join(f"{n:>6}" for n in names) + "   correct")
    for r in range(10):
        cells = "".join((f"[{matrix[r, c]:>4}]" if r == c else f"{matrix[r, c] or '.':>6}") for c in range(10))
        print(f"  {CIFAR10_CLASSES[r]:<10} {cells}   {matrix[r, r] / matrix[r].sum():6.1%}")
    off = matrix - np.diag(np.diag(matrix))
    r, c = np.unravel_index(off.argmax(), off.shape)
    print(f"\nIts most common mistake: taking a {CIFAR10_CLASSES[r]} for a {CIFAR10_CLASSES[c]} ({off[r, c]} times).")
    return matrix


def main(tinytorch=None, epochs=None, model=None, samples=8, seed=None):
    """Train with the judge's recipe (or show an already trained model), then show what it sees."""
    if tinytorch is None:
        import tinytorch  # your exported package
    recipe = {**CONFIG["judge"], **({"epochs": epochs} if epochs else {})}
    (X_train, y_train), (X_test, y_test) = cifar10()
    if model is None:
        print(f"Training the judge's CNN with your tinytorch for {recipe['epochs']} epoch(s) on 50,000 images...")
        model, report = train(tinytorch, build_model_from(CONFIG["model"]["default_source"]), X_train, y_train, recipe)
        print(f"Done in {report['train_seconds']:.0f} s.")

    probs = softmax(predict(tinytorch, model, X_test, recipe).astype(np.float64))
    guesses = probs.argmax(axis=1)
    print(f"{np.mean(guesses == y_test):.2%} of the 10,000 test images right.")
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(X_test), size=samples, replace=False)
    wrong = np.flatnonzero(guesses != y_test)
    if len(wrong):  # one of its mistakes is more instructive than one more right answer
        picks[-1] = rng.choice(wrong)
    print(f"\n{samples} test images your network has never seen, with its three best guesses:")
    show_images(X_test, y_test, probs, list(picks))
    show_confusion(y_test, guesses)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=None, help="default: the judge's recipe")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--seed", type=int, default=None, help="fix which images are shown")
    args = parser.parse_args()
    main(epochs=args.epochs, samples=args.samples, seed=args.seed)
