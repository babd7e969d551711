"""A model as data: what the student process hands back, and how the course's own tinytorch rebuilds it.

The judge does not trust what a student's model *does*: it trusts only what it *is*. After training,
the student process describes the model (twice: as build_model returned it, and trained):

- every object in it is an instance of a class defined in the `tinytorch` package (a layer such as
  Linear, Conv2d or GPT, or a plain configuration object such as GPTConfig), named by its module
  and class name; a class defined in the build_model cell, or a layer whose method was replaced on
  the instance, is refused with the reason;
- its attributes: numbers, strings, booleans, None, lists / tuples / dicts of them, tensors and
  arrays (parameters and buffers such as batch norm's running statistics, as raw arrays), and
  further objects. Anything else (a random generator, a function, a tensor a forward pass computed
  and a layer kept) is left out: the course's code never needs it.

The description is JSON (`describe`) plus one blob of array bytes. On the grader's side, `rebuild`
makes the same objects from the *reference* tinytorch's classes, looked up by (module, name), with
`cls.__new__(cls)` and their attributes set from the description: an allow-listed unpickler, without
pickle. So the layers' forward passes that judge the weights are always the course's own code.
"""

import keyword
import sys

import numpy as np

# The array types a description may hold: little-endian numbers and booleans, never objects.
DTYPES = {np.dtype(t).str for t in ["<f2", "<f4", "<f8", "<i1", "<i2", "<i4", "<i8", "<u1", "<u2", "<u4", "<u8", "|b1"]}
MAX_DEPTH = 64  # nested objects and lists: a real model is a few levels deep
MAX_NODES = 100_000  # objects, lists and values in one description
MAX_TEXT = 10_000  # characters of one string attribute


class ModelRefused(Exception):
    """The model cannot be graded as it is: the message says why, in the student's terms."""


# ------------------------------------------------------------------------------------ student side
def _tinytorch_class(cls):
    """(module, name) when cls is defined at the top level of a module of the tinytorch package."""
    module, name = getattr(cls, "__module__", None), getattr(cls, "__qualname__", "")
    if not isinstance(module, str) or not (module == "tinytorch" or module.startswith("tinytorch.")):
        return None
    if not isinstance(name, str) or not name.isidentifier() or getattr(sys.modules.get(module), name, None) is not cls:
        return None
    return module, name


def _where(path):
    return path or "the model"


class _Describer:
    def __init__(self, tinytorch):
        self.tensor_type = getattr(tinytorch, "Tensor", None)
        self.module_type = getattr(tinytorch, "Module", None)
        self.parameter_type = getattr(tinytorch, "Parameter", None)
        self.arrays, self.blobs, self.offset, self.numbers = [], [], 0, 0
        self.memo, self.nodes = {}, 0

    def array(self, value, path):
        a = np.asarray(value)
        if a.dtype.kind == "f" and a.dtype.str not in DTYPES:
            a = a.astype(np.float32)
        a = np.ascontiguousarray(a.astype(a.dtype.newbyteorder("<")) if a.dtype.byteorder == ">" else a)
        if a.dtype.str not in DTYPES:
            raise ModelRefused(f"{_where(path)} holds an array of dtype {a.dtype}: a graded model holds numbers only.")
        self.numbers += a.size
        self.arrays.append({"dtype": a.dtype.str, "shape": list(a.shape), "offset": self.offset})
        self.blobs.append(a.tobytes())
        self.offset += a.nbytes
        return len(self.arrays) - 1

    def node(self, value, path, depth=0):
        self.nodes += 1
        if depth > MAX_DEPTH or self.nodes > MAX_NODES:
            raise ModelRefused(f"the model is nested too deeply or holds too many objects (at {_where(path)}).")
        if value is None or isinstance(value, (bool, int, float)):
            return value if not isinstance(value, int) or abs(value) < 2**63 else float(np.sign(value)) * 2.0**63
        if isinstance(value, str):
            return value[:MAX_TEXT]
        if isinstance(value, np.generic) and value.dtype.kind in "fiub":
            return value.item()
        if id(value) in self.memo:
            return {"kind": "ref", "id": self.memo[id(value)]}
        if isinstance(value, (list, tuple)):
            items = [self.node(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
            return {"kind": type(value).__name__ if type(value) in (list, tuple) else "list", "items": items}
        if isinstance(value, dict):
            items = [
                [k, self.node(v, f"{path}[{k!r}]", depth + 1)]
                for k, v in value.items()
                if isinstance(k, (str, int)) and not isinstance(k, bool)
            ]
            return {"kind": "dict", "items": items}
        if isinstance(value, np.ndarray):
            return {"kind": "array", "array": self.array(value, path)}
        cls = type(value)
        named = _tinytorch_class(cls)
        is_module = self.module_type is not None and isinstance(value, self.module_type)
        if self.tensor_type is not None and isinstance(value, self.tensor_type):
            computed = getattr(value, "_parents", None)
            if not isinstance(value, self.parameter_type or ()) and isinstance(computed, tuple) and computed:
                return {"kind": "skipped", "type": "a tensor computed by a forward pass (a cache)"}
            if named is None:
                raise ModelRefused(_not_tinytorch(cls, path, "tensor"))
            self.memo[id(value)] = len(self.memo)
            index = self.array(getattr(value, "data", None), path)
            return {"kind": "tensor", "id": self.memo[id(value)], "class": list(named), "array": index}
        if named is None:
            if is_module or getattr(cls, "__module__", None) == "__milestone__":
                raise ModelRefused(_not_tinytorch(cls, path, "layer"))
            return {"kind": "skipped", "type": f"{getattr(cls, '__module__', '?')}.{cls.__name__}"}
        if not hasattr(value, "__dict__"):
            return {"kind": "skipped", "type": f"{named[0]}.{named[1]}"}
        self.memo[id(value)] = len(self.memo)
        attrs = {}
        for key, item in vars(value).items():
            if not isinstance(key, str) or not key.isidentifier() or key.startswith("__"):
                continue
            if callable(item) and not isinstance(item, type) and callable(getattr(cls, key, None)):
                raise ModelRefused(
                    f"{_where(path)} ({cls.__name__}) has its method {key}() replaced on the instance "
                    f"({path or 'model'}.{key} = ...). The judge evaluates the trained weights with the course's own "
                    f"{cls.__name__}: a graded model is made of tinytorch's layers as your modules define them."
                )
            if callable(item) and not isinstance(item, (type, self.module_type or type)):
                continue  # a function kept on a layer: the course's code never needs it
            attrs[key] = self.node(item, f"{path}.{key}" if path else key, depth + 1)
        return {"kind": "object", "id": self.memo[id(value)], "class": list(named), "attrs": attrs}


def _not_tinytorch(cls, path, what):
    name = getattr(cls, "__qualname__", cls.__name__)
    origin = getattr(cls, "__module__", "?")
    where = "the build_model cell" if origin == "__milestone__" else f"{origin}, not in your tinytorch package"
    return (
        f"{_where(path)} is an instance of {name}, a {what} class defined in {where}. A graded model is made only of "
        "tinytorch's own layers (Linear, Sequential, Conv2d, GPT, ...): the judge evaluates the trained "
        "weights with the course's code for those layers, so a class of your own (or a subclass of one "
        "of them) cannot be graded. Build the model from tinytorch's layers."
    )


def _too_big(numbers, limit):
    return (
        f"the model stores {numbers:,} numbers (parameters and buffers); this milestone allows at most "
        f"{limit:,}, several times what its default model needs. Make the model smaller."
    )


def describe(model, tinytorch, max_numbers=None):
    """(description, arrays, blob): the JSON-able description of model, the list of array entries
    it refers to, and their bytes. Raises ModelRefused with the reason."""
    module_type = getattr(tinytorch, "Module", None)
    if module_type is None or not isinstance(model, module_type):
        raise ModelRefused(
            f"build_model returned a {type(model).__name__}, not a tinytorch Module: a graded model is made of "
            "tinytorch's layers."
        )
    d = _Describer(tinytorch)
    root = d.node(model, "")
    if max_numbers is not None and d.numbers > max_numbers:
        raise ModelRefused(_too_big(d.numbers, max_numbers))
    return {"root": root, "numbers": d.numbers}, d.arrays, b"".join(d.blobs)


def combine(parts):
    """One file's worth of several described models: {name: (description, arrays, blob)} ->
    ({name: description}, arrays, blob), the array entries of all of them in one list and one blob."""
    described, arrays, blobs, offset = {}, [], [], 0
    for name, (one, entries, blob) in parts.items():
        first = len(arrays)
        arrays += [{**e, "offset": e["offset"] + offset} for e in entries]
        described[name] = {**one, "root": _shift(one["root"], first)}
        blobs.append(blob)
        offset += len(blob)
    return described, arrays, b"".join(blobs)


def _shift(node, first):
    if isinstance(node, list):
        return [_shift(n, first) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _shift(v, first) for k, v in node.items()}
    if node.get("kind") in ("tensor", "array"):
        out["array"] = node["array"] + first
    return out


# ------------------------------------------------------------------------------------ grader side
def load_arrays(entries, blob):
    """The arrays of a description, read from blob (bytes) with dtypes from DTYPES only: no pickle."""
    if not isinstance(entries, list):
        raise ModelRefused("the model's description has no list of arrays.")
    arrays = []
    for e in entries:
        try:
            dtype, shape, offset = np.dtype(e["dtype"]), tuple(e["shape"]), e["offset"]
        except (KeyError, TypeError, ValueError):
            raise ModelRefused("the model's description has a malformed array entry.") from None
        if e["dtype"] not in DTYPES or not all(type(n) is int and n >= 0 for n in (*shape, offset)):
            raise ModelRefused(f"the model's description has an array of dtype {e['dtype']!r}, shape {shape}.")
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if count > len(blob) or offset + count * dtype.itemsize > len(blob):
            raise ModelRefused("the model's description refers to more array bytes than it holds.")
        arrays.append(np.frombuffer(blob, dtype, count, offset).reshape(shape).copy())
    return arrays


class _Rebuilder:
    def __init__(self, tinytorch, arrays):
        self.tinytorch = tinytorch
        self.module_type = tinytorch.Module
        self.tensor_type = tinytorch.Tensor
        self.parameter_type = getattr(tinytorch, "Parameter", None)
        self.arrays, self.memo, self.nodes = arrays, {}, 0

    def lookup(self, named, kinds):
        """The reference class named (module, name): defined there, and a layer, a tensor or a dataclass."""
        if not (isinstance(named, list) and len(named) == 2 and all(isinstance(s, str) for s in named)):
            raise ModelRefused("the model's description names a class badly.")
        module, name = named
        if not (module == "tinytorch" or module.startswith("tinytorch.")) or not name.isidentifier():
            raise ModelRefused(f"{module}.{name} is not a class of tinytorch.")
        cls = getattr(sys.modules.get(module), name, None)
        if not isinstance(cls, type) or cls.__module__ != module or cls.__qualname__ != name:
            raise ModelRefused(
                f"the course's tinytorch has no class {name} in {module}: a graded model is made of the layers "
                "the course's modules define (a class you added to your own modules cannot be graded)."
            )
        ok = {
            "layer": issubclass(cls, self.module_type) or "__dataclass_fields__" in vars(cls),
            "tensor": issubclass(cls, self.tensor_type),
        }
        if not any(ok[k] for k in kinds):
            raise ModelRefused(f"{name} is not a tinytorch layer or configuration, so it cannot be part of a model.")
        return cls

    def array(self, index):
        if type(index) is not int or not 0 <= index < len(self.arrays):
            raise ModelRefused("the model's description refers to an array it does not hold.")
        return self.arrays[index]

    def build(self, node, depth=0):
        self.nodes += 1
        if depth > MAX_DEPTH or self.nodes > MAX_NODES:
            raise ModelRefused("the model's description is nested too deeply or too large.")
        if node is None or isinstance(node, (bool, int, float)):
            return node
        if isinstance(node, str):
            return node[:MAX_TEXT]
        if not isinstance(node, dict):
            raise ModelRefused("the model's description holds a value of an unknown form.")
        kind = node.get("kind")
        if kind == "ref":
            if node.get("id") not in self.memo:
                raise ModelRefused("the model's description refers to an object before it was described.")
            return self.memo[node["id"]]
        if kind in ("list", "tuple"):
            items = [self.build(n, depth + 1) for n in _as_list(node.get("items"))]
            return items if kind == "list" else tuple(items)
        if kind == "dict":
            out = {}
            for pair in _as_list(node.get("items")):
                if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], (str, int))):
                    raise ModelRefused("the model's description holds a malformed dict.")
                out[pair[0]] = self.build(pair[1], depth + 1)
            return out
        if kind == "array":
            return self.array(node.get("array"))
        if kind == "skipped":
            return None
        if kind == "tensor":
            cls = self.lookup(node.get("class"), ["tensor"])
            data = self.array(node.get("array"))
            if self.parameter_type is not None and issubclass(cls, self.parameter_type):
                tensor = cls(data)
            else:
                tensor = self.tensor_type(data if data.dtype.kind in "fb" else data.astype(np.float32))
            self._remember(node, tensor)
            return tensor
        if kind == "object":
            cls = self.lookup(node.get("class"), ["layer"])
            obj = cls.__new__(cls)
            self._remember(node, obj)
            attrs = node.get("attrs")
            if not isinstance(attrs, dict):
                raise ModelRefused("the model's description holds a malformed object.")
            for key, value in attrs.items():
                if not key.isidentifier() or keyword.iskeyword(key) or key.startswith("__"):
                    raise ModelRefused(f"the model's description has an attribute named {key!r}.")
                obj.__dict__[key] = self.build(value, depth + 1)
            return obj
        raise ModelRefused(f"the model's description holds a value of unknown kind {kind!r}.")

    def _remember(self, node, obj):
        key = node.get("id")
        if type(key) is not int or key in self.memo:
            raise ModelRefused("the model's description numbers its objects badly.")
        self.memo[key] = obj


def _as_list(items):
    if not isinstance(items, list):
        raise ModelRefused("the model's description holds a malformed list.")
    return items


def count_numbers(node, arrays):
    """How many numbers the arrays reachable from node hold (each array once)."""
    seen, total, stack = set(), 0, [node]
    while stack:
        n = stack.pop()
        if isinstance(n, list):
            stack.extend(n)
        elif isinstance(n, dict):
            i = n.get("array")
            if n.get("kind") in ("tensor", "array") and type(i) is int and 0 <= i < len(arrays) and i not in seen:
                seen.add(i)
                total += arrays[i].size
            if isinstance(n.get("items"), list):
                stack.append(n["items"])
            if isinstance(n.get("attrs"), dict):
                stack.extend(n["attrs"].values())
    return total


def rebuild(description, arrays, tinytorch, max_numbers=None):
    """The model a description (one entry of describe_many) describes, made of tinytorch's classes
    (the reference package's when grading). Raises ModelRefused with the reason."""
    if not isinstance(description, dict) or "root" not in description:
        raise ModelRefused("the model's description is missing.")
    numbers = count_numbers(description["root"], arrays)
    if max_numbers is not None and numbers > max_numbers:
        raise ModelRefused(_too_big(numbers, max_numbers))
    model = _Rebuilder(tinytorch, arrays).build(description["root"])
    if not isinstance(model, tinytorch.Module):
        raise ModelRefused("the model's description does not describe a tinytorch Module.")
    return model
