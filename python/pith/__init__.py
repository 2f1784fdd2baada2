# SPDX-License-Identifier: MIT
"""pith: long-context transformer inference on the CPU with KV-cache eviction.

    import pith
    model = pith.load_model("examples/models/toy-standard")
    reader = pith.Reader(model, policy="citrus-shared", budget=64, chunk=64,
                         instruction="what is the code of zoe ?", max_answer_tokens=8)
    reader.feed(open("document.txt").read())
    print(reader.answer(8), reader.stats)

The classes come from the C++ core (pith._pith): Model, Tokenizer, Session, Sampler, Reader and
the task generators. Every computing call releases the GIL. Errors are pith.Error and its
subclasses IoError, FormatError, ConfigError, ShapeError and ArgumentError (the C++ classes of
pith::error, with the same messages). pith.bench sweeps policies as pith-evict-bench does.
"""
from __future__ import annotations

import dataclasses
from typing import List, Tuple

from ._pith import (  # noqa: F401  (re-exported)
    ArgumentError,
    ConfigError,
    Error,
    FormatError,
    Generation,
    IoError,
    Likelihood,
    Model,
    Reader,
    ReaderStats,
    RulerDocument,
    Sampler,
    Session,
    ShapeError,
    Tokenizer,
    ToyDocument,
    __version__,
    load_model,
    peak_resident_bytes,
    policy_names,
    ratio_budget,
    ruler_document,
    ruler_score,
    ruler_tasks,
    num_threads,
    set_num_threads,
    toy_document,
    toy_vocabulary,
)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A model's configuration (a copy of pith::model_config's main fields)."""

    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    rms_norm_eps: float
    rope_theta: float
    tie_word_embeddings: bool
    max_position_embeddings: int
    bos_token_id: int
    eos_token_id: int
    eos_token_ids: List[int]
    residual: str
    attn_res_block_size: int
    mixers: List[str]
    sliding_windows: List[int]
    family: str
    source: str


def _config(self: Model) -> ModelConfig:
    return ModelConfig(**self._config_dict())


Model.config = property(_config, doc="The model's configuration: a frozen ModelConfig dataclass (a copy).")

__all__: Tuple[str, ...] = (
    "ArgumentError", "ConfigError", "Error", "FormatError", "Generation", "IoError", "Likelihood", "Model", "ModelConfig",
    "Reader", "ReaderStats", "RulerDocument", "Sampler", "Session", "ShapeError", "Tokenizer", "ToyDocument",
    "load_model", "peak_resident_bytes", "policy_names", "ratio_budget", "ruler_document", "ruler_score", "ruler_tasks",
    "num_threads", "set_num_threads", "toy_document", "toy_vocabulary", "bench",
)

from . import bench  # noqa: E402  (needs the names above)
