"""Checkpoints of other libraries as a Transformer, and back: HF folders of the GPT-2, GPT-NeoX
(Pythia's) and Llama families, and our .npz.

An HF folder holds `config.json` and the weights in safetensors: one `model.safetensors`, or
shards that `model.safetensors.index.json`'s `weight_map` names (each tensor in the shard the
index says, every shard present, nothing left over). Keys are read as `save_pretrained` writes
them (`transformer.h.0.attn.c_attn.weight`, `gpt_neox.layers.0...`, `model.layers.0...`) or
without the base model's prefix (the hub's original `gpt2` files); the attention-mask and
rotary buffers of old checkpoints (`attn.bias`, `attention.masked_bias`, `rotary_emb.inv_freq`,
...) are ignored, and nothing else is. Weights may be float16, bfloat16 (read from the raw
bytes: safetensors' NumPy reader has no bfloat16) or float32/float64; they load as float32
unless `dtype` says otherwise. Nothing is ever downloaded, and nothing read can run code
(safetensors and JSON only: a folder with only `pytorch_model.bin`, a pickle, is refused).

model/hf_families.py holds the families: how config.json becomes our TransformerConfig (every
option honoured or refused, never ignored) and where each of our parameters lies in HF's
tensors, TransformerLens's names as its converters lay them out.

Everything is read and checked before a model exists: a bad file is a one-line ValueError
naming the file and the tensor or key, never a half-loaded model.

`save` writes the way back: config.json and model.safetensors of the family that expresses the
model's config (a ValueError naming the field where none does), atomically.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from mechclaims.model import hf_families
from mechclaims.model.config import TransformerConfig
from mechclaims.model.hf_families import Family
from mechclaims.model.transformer import Transformer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
PICKLE_FILE = "pytorch_model.bin"
MODEL_TYPES = tuple(hf_families.FAMILIES)
SAVE_DTYPES = ("float32", "float64")
# safetensors dtypes its NumPy reader reads (integers and booleans to be refused by name later)
NUMPY_DTYPES = ("F16", "F32", "F64", "I8", "I16", "I32", "I64", "U8", "U16", "U32", "U64", "BOOL")


def load(path: str | os.PathLike, dtype: str | None = None) -> Transformer:
    """A model from an HF folder (float32 unless `dtype` says otherwise), or from our own
    `.npz` (in its saved dtype unless `dtype` says otherwise)."""
    path = Path(path)
    if path.is_dir():
        raw = _read_json(path / CONFIG_FILE)
        family = hf_families.family_of_json(raw, path / CONFIG_FILE)
        cfg = hf_families.read_config(family, raw, path / CONFIG_FILE, dtype or "float32")
        tied = hf_families.read_tied(family, raw, path / CONFIG_FILE)
        return Transformer.from_params(cfg, hf_params(read_weights(path, family), cfg, tied))
    if path.suffix == ".npz" and path.is_file():
        model = Transformer.load(path)
        return (
            model
            if dtype is None
            else Transformer.from_params(model.cfg.replace(dtype=dtype), model.params)
        )
    raise ValueError(
        f"{path}: not a checkpoint (expected a directory with {CONFIG_FILE} and {WEIGHTS_FILE}, "
        f"or a .npz file written by Transformer.save)"
    )


def _read_json(path: Path) -> dict:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file (an HF model directory needs one)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not readable JSON ({error})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    return raw


# ---------------------------------------------------------------- the weights


def hf_params(tensors: _WeightFile, cfg: TransformerConfig, tied: bool) -> dict[str, np.ndarray]:
    """TransformerLens-named parameters from the family's tensors, every one checked and used;
    `tied`: the unembedding is the token embedding's transpose (tie_word_embeddings)."""
    family = tensors.family
    params: dict[str, np.ndarray] = {}
    for tensor in family.tensors(cfg):
        params.update(tensor.read(tensors.take(tensor.name, tensor.shape)))
    params["unembed.W_U"] = _unembedding(tensors, params["embed.W_E"], tied)  # [d,V]
    for layer in range(cfg.n_layers):
        tensors.drop(*(buffer.format(layer=layer) for buffer in family.buffers))
    tensors.check_all_used()
    return params


def _unembedding(tensors: _WeightFile, W_E: np.ndarray, tied: bool) -> np.ndarray:
    """The head [V,d] transposed; the embedding's transpose when tied, where a head stored
    anyway must equal the embedding."""
    family = tensors.family
    stored = [name for name in family.heads if tensors.has(name)]
    if len(stored) > 1:
        raise ValueError(f"{tensors.path}: tensors {stored[0]!r} and {stored[1]!r}: two heads")
    if not tied:
        return tensors.take(stored[0] if stored else family.heads[0], W_E.shape).T
    if stored and not np.array_equal(tensors.take(stored[0], W_E.shape), W_E):
        raise ValueError(
            f"{tensors.path}: tensor {stored[0]!r} differs from {family.embedding!r}, but "
            f"config.json ties them (tie_word_embeddings)"
        )
    return W_E.T


def read_weights(folder: Path, family: Family) -> _WeightFile:
    """The folder's tensors: model.safetensors, or the shards its index names."""
    single, index = folder / WEIGHTS_FILE, folder / INDEX_FILE
    if single.exists() and index.exists():
        raise ValueError(f"{folder}: both {WEIGHTS_FILE} and {INDEX_FILE}; which is the model?")
    if index.exists():
        return _WeightFile(index, family, read_shards(index))
    if not single.exists() and (folder / PICKLE_FILE).exists():
        raise ValueError(
            f"{single}: no such file; {PICKLE_FILE} is a pickle, which can run code when read: "
            f"convert it to safetensors first"
        )
    tensors = read_tensors(single)
    return _WeightFile(single, family, {name: (value, single) for name, value in tensors.items()})


def read_shards(index: Path) -> dict[str, tuple[np.ndarray, Path]]:
    """Every tensor of the shards `index`'s weight_map names, with the file it came from; each
    listed tensor must be in the shard the index says, and each shard's tensors listed there."""
    weight_map = _read_json(index).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(f"{index}: key 'weight_map' missing or not an object of tensor: file")
    for shard in weight_map.values():
        if not isinstance(shard, str) or Path(shard).name != shard:
            raise ValueError(f"{index}: weight_map names {shard!r}, not a file of this folder")
    tensors: dict[str, tuple[np.ndarray, Path]] = {}
    for shard in sorted(set(weight_map.values())):
        path = index.parent / shard
        for name, value in read_tensors(path).items():
            if weight_map.get(name) != shard:
                where = "not in" if name not in weight_map else f"in {weight_map[name]!r} by"
                raise ValueError(f"{path}: tensor {name!r} is {where} the index {index.name}")
            tensors[name] = (value, path)
    missing = sorted(set(weight_map) - set(tensors))
    if missing:
        raise ValueError(
            f"{index.parent / weight_map[missing[0]]}: tensor {missing[0]!r} missing (the index "
            f"{index.name} puts it there)"
        )
    return tensors


def read_tensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file as a NumPy array (bfloat16 as float32, exactly), or a
    ValueError naming the file (and the tensor a truncated file cuts off)."""
    if not path.is_file():
        raise ValueError(f"{path}: no such file (an HF model directory needs one)")
    try:
        with safe_open(path, framework="np") as handle:
            header, start = _header(path)
            keys = list(handle.keys())
            return {key: _read_tensor(handle, key, path, header[key], start) for key in keys}
    except SafetensorError as error:
        cut = _cut_tensor(path)
        where = f"tensor {cut!r} runs past the end of the file; " if cut else ""
        raise ValueError(f"{path}: truncated or not a safetensors file ({where}{error})") from None


def _read_tensor(handle, key: str, path: Path, spec: dict, start: int) -> np.ndarray:
    if spec["dtype"] == "BF16":
        return _bfloat16(path, start + spec["data_offsets"][0], spec["shape"])
    if spec["dtype"] not in NUMPY_DTYPES:
        raise ValueError(
            f"{path}: tensor {key!r} cannot be read (dtype {spec['dtype']}; readable: BF16, "
            f"{', '.join(NUMPY_DTYPES)})"
        )
    try:
        return handle.get_tensor(key)
    except (SafetensorError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: tensor {key!r} cannot be read ({error})") from None


def _bfloat16(path: Path, offset: int, shape: list[int]) -> np.ndarray:
    """A bfloat16 tensor as float32: bfloat16 is the top 16 bits of a float32."""
    count = int(np.prod(shape, dtype=np.int64))
    with open(path, "rb") as handle:
        handle.seek(offset)
        top = np.frombuffer(handle.read(2 * count), "<u2")  # checked by safe_open: complete
    return (top.astype("<u4") << 16).view("<f4").reshape(shape)


def _header(path: Path) -> tuple[dict, int]:
    """A safetensors file's JSON header {name: {dtype, shape, data_offsets}} and where its data
    starts: the format is an 8-byte little-endian header length, the header, the data."""
    with open(path, "rb") as handle:
        header_length = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(header_length))
    return header, 8 + header_length


def _cut_tensor(path: Path) -> str | None:
    """The first tensor whose bytes lie past the end of a truncated safetensors file."""
    try:
        header, start = _header(path)
        data_bytes = path.stat().st_size - start
        ends = [(spec["data_offsets"][1], name) for name, spec in header.items()
                if name != "__metadata__" and spec["data_offsets"][1] > data_bytes]  # fmt: skip
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None
    return min(ends)[1] if ends else None


class _WeightFile:
    """A folder's tensors by HF name (the family's prefix removed): taken one by one with their
    shape, dtype and values checked, each error naming the file that holds the tensor; what is
    left over at the end is an error. `path` is the weights file, or the shards' index."""

    def __init__(self, path: Path, family: Family, tensors: dict[str, tuple[np.ndarray, Path]]):
        self.path, self.family = path, family
        self.names, self.tensors, self.files = {}, {}, {}
        for key, (value, file) in tensors.items():
            name = key.removeprefix(family.prefix)
            if name in self.names:
                both = sorted((self.names[name], key))
                raise ValueError(f"{file}: tensors {both[0]!r} and {both[1]!r}: the same")
            self.names[name], self.tensors[name], self.files[name] = key, value, file

    def has(self, name: str) -> bool:
        return name in self.tensors

    def take(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name not in self.tensors:
            raise ValueError(f"{self.path}: tensor {name!r} missing (expected shape {shape})")
        value, where = self.tensors.pop(name), f"{self.files[name]}: tensor {self.names[name]!r}"
        if value.shape != shape:
            raise ValueError(f"{where} has shape {value.shape}, expected {shape}")
        if not np.issubdtype(value.dtype, np.floating):
            raise ValueError(f"{where} has dtype {value.dtype}, expected floats")
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{where} has non-finite values (NaN or inf)")
        return value

    def drop(self, *names: str) -> None:
        for name in names:
            self.tensors.pop(name, None)

    def check_all_used(self) -> None:
        if self.tensors:
            unknown = sorted(self.tensors, key=self.names.get)
            raise ValueError(
                f"{self.files[unknown[0]]}: unexpected tensor {self.names[unknown[0]]!r} "
                f"({len(unknown)} unexpected in all): not part of a {self.family.model_type} "
                f"language model"
            )


# ---------------------------------------------------------------- the way back


def save(model: Transformer, directory: str | os.PathLike, dtype: str = "float32") -> None:
    """Write `model` as an HF folder of its family: config.json and model.safetensors, weights
    in `dtype` (float32 by default, as HF's checkpoints are; "float64" keeps a float64 model
    exact). The unembedding is tied (no head tensor, tie_word_embeddings true) iff it equals the
    embedding's transpose exactly. The folder appears whole or not at all: it is written beside
    its place and renamed there; an existing folder must be empty."""
    directory = Path(directory)
    if dtype not in SAVE_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(SAVE_DTYPES)}; got {dtype!r}")
    try:
        family = hf_families.family_of(model.cfg)
        config = hf_families.config_json(family, model.cfg, _is_tied(model), dtype)
    except ValueError as error:
        raise ValueError(f"{directory}: cannot save as an HF model: {error}") from None
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ValueError(f"{directory}: exists and is not an empty folder")
    tensors = hf_tensors(model, family, config["tie_word_embeddings"], dtype)
    _write_atomically(directory, config, tensors)


def _is_tied(model: Transformer) -> bool:
    return np.array_equal(model.params["unembed.W_U"], model.params["embed.W_E"].T)


def hf_tensors(model: Transformer, family: Family, tied: bool, dtype: str) -> dict:
    """The family's tensors of `model`, under the names save_pretrained writes."""
    tensors = {family.prefix + tensor.name: tensor.write(model.params)
               for tensor in family.tensors(model.cfg)}  # fmt: skip
    if not tied:
        tensors[family.heads[0]] = model.params["unembed.W_U"].T  # [V,d]
    return {name: np.ascontiguousarray(value, dtype=dtype) for name, value in tensors.items()}


def _write_atomically(directory: Path, config: dict, tensors: dict) -> None:
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
