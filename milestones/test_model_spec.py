"""A model as data: described by the student process, rebuilt by the course's tinytorch, refused when it
is anything but tinytorch's own layers and arrays of numbers."""

import json

import numpy as np
import pytest

from milestones.judge import build_model_from
from milestones.model_spec import ModelRefused, combine, describe, load_arrays, rebuild

CNN = """
def build_model():
    return Sequential(Conv2d(3, 8, 3, padding=1), MaxPool2d(2), BatchNorm2d(8), ReLU(), Flatten(), Linear(16 * 16 * 8, 10))
"""


def through_a_file(tinytorch, models):
    """What the grader gets: JSON and bytes, read back."""
    described, arrays, blob = combine({name: describe(m, tinytorch) for name, m in models.items()})
    return json.loads(json.dumps(described)), load_arrays(json.loads(json.dumps(arrays)), bytes(blob))


def test_a_rebuilt_model_computes_what_the_trained_one_did(reference_tinytorch):
    tt = reference_tinytorch
    np.random.seed(0)
    cnn = build_model_from(CNN)()
    x = np.random.default_rng(0).normal(size=(8, 32, 32, 3)).astype(np.float32)
    cnn(tt.Tensor(x))  # training mode: moves batch norm's running statistics
    gpt = tt.GPT(tt.GPTConfig(vocab_size=11, context=16, n_layers=2, d_model=16, n_heads=2))
    gpt.head.weight = gpt.tokens.weight  # one Parameter in two places stays one
    gpt.head.weight = tt.Parameter(np.ascontiguousarray(gpt.tokens.weight.data.T))
    gpt.ln_f.bias = gpt.blocks[0].ln1.bias  # shared
    described, arrays = through_a_file(tt, {"cnn": cnn, "gpt": gpt})
    ids = np.random.default_rng(1).integers(0, 11, size=(3, 16))
    for name, model, inputs in [("cnn", cnn, tt.Tensor(x)), ("gpt", gpt, ids)]:
        rebuilt = rebuild(described[name], arrays, tt)
        model.eval()
        rebuilt.eval()
        with tt.no_grad():
            np.testing.assert_array_equal(rebuilt(inputs).data, model(inputs).data)
        assert type(rebuilt) is type(model) and not rebuilt.training
    assert rebuilt.ln_f.bias is rebuilt.blocks[0].ln1.bias
    assert described["gpt"]["numbers"] == sum(p.size for p in gpt.parameters())


def test_a_description_names_only_classes_of_the_course_s_tinytorch(reference_tinytorch):
    tt = reference_tinytorch
    described, arrays = through_a_file(tt, {"m": tt.Sequential(tt.Linear(4, 2))})
    root = described["m"]["root"]

    def refused(match, node):
        with pytest.raises(ModelRefused, match=match):
            rebuild({"root": node}, arrays, tt)

    def linear(**changes):
        return {**root["attrs"]["layers"]["items"][0], **changes}

    refused("no class LookupGPT in tinytorch.gpt", linear(**{"class": ["tinytorch.gpt", "LookupGPT"]}))
    refused("is not a class of tinytorch", linear(**{"class": ["os", "system"]}))
    refused("is not a class of tinytorch", linear(**{"class": ["builtins", "eval"]}))
    refused("no class MLP", linear(**{"class": ["tinytorch.dense", "MLP"]}))  # a function
    refused("no class Tensor in tinytorch.layers", linear(**{"class": ["tinytorch.layers", "Tensor"]}))  # imported
    refused("not a tinytorch layer", linear(**{"class": ["tinytorch.dense", "SGD"]}))  # not a layer
    refused("attribute named '__class__'", linear(attrs={"__class__": 1}))
    refused("unknown kind 'pickle'", {"kind": "pickle", "data": "gASVAAAA"})
    refused("does not describe a tinytorch Module", {"kind": "list", "items": [1, 2]})
    refused("a value of an unknown form", [1, 2])
    weight = linear()["attrs"]["weight"]
    refused("not a tinytorch layer", linear(attrs={"weight": {**weight, "class": ["tinytorch.layers", "Linear"]}}))
    with pytest.raises(ModelRefused, match="allows at most 5"):
        rebuild(described["m"], arrays, tt, max_numbers=5)


def test_arrays_are_numbers_read_from_bytes_never_unpickled():
    blob = np.arange(6, dtype=np.float32).tobytes()
    ok = load_arrays([{"dtype": "<f4", "shape": [2, 3], "offset": 0}], blob)[0]
    np.testing.assert_array_equal(ok, np.arange(6).reshape(2, 3))
    for entry in [
        {"dtype": "|O", "shape": [1], "offset": 0},
        {"dtype": "<f4", "shape": [4], "offset": 16},  # past the end
        {"dtype": "<f4", "shape": [-1], "offset": 0},
        {"dtype": "<f4", "shape": [10**12, 10**12], "offset": 0},
        {"dtype": "[('a', 'O')]", "shape": [1], "offset": 0},
    ]:
        with pytest.raises(ModelRefused):
            load_arrays([entry], blob)


def test_the_student_side_refuses_classes_of_the_cell_and_patched_methods(reference_tinytorch):
    tt = reference_tinytorch
    own = build_model_from("class Mine(Linear):\n    pass\n\ndef build_model():\n    return Sequential(Mine(3, 2))\n")
    own.__globals__["Mine"].__module__ = "__milestone__"  # as in the judge's build_model cell
    with pytest.raises(
        ModelRefused, match=r"layers\[0\] is an instance of Mine, a layer class defined in the build_model cell"
    ):
        describe(own(), tt)
    spoofed = type("Linear", (tt.Linear,), {"__module__": "tinytorch.layers"})  # claims to be tinytorch's
    with pytest.raises(ModelRefused, match="an instance of Linear, a layer class defined in tinytorch.layers, not in"):
        describe(tt.Sequential(spoofed(3, 2)), tt)
    patched = tt.Sequential(tt.Linear(3, 2))
    patched.layers[0].forward = lambda x: x
    with pytest.raises(
        ModelRefused, match=r"layers\[0\] \(Linear\) has its method forward\(\) replaced on the instance"
    ):
        describe(patched, tt)
    with pytest.raises(ModelRefused, match="not a tinytorch Module"):
        describe(lambda x: x, tt)
    kept = tt.Sequential(tt.Linear(3, 2))
    kept.rng, kept.hook = np.random.default_rng(0), print  # left out: the course's layers never need them
    kept.cache = kept(tt.Tensor(np.ones((64, 3), np.float32)))  # an activation kept by a forward pass
    described = describe(kept, tt)[0]
    assert set(described["root"]["attrs"]) == {"layers", "rng", "cache"} and described["numbers"] == 8
    assert described["root"]["attrs"]["cache"]["kind"] == described["root"]["attrs"]["rng"]["kind"] == "skipped"
