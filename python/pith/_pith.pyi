# SPDX-License-Identifier: MIT
# Types of the C++ extension pith._pith (the docstrings are the extension's own: help(pith.Reader)).
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

Ids = Union[Sequence[int], npt.NDArray[np.integer]]
TextOrIds = Union[str, Ids]
Policy = Union[str, Callable[..., Union[Sequence[int], npt.NDArray[np.integer]]]]

__version__: str

class Error(RuntimeError): ...
class IoError(Error, OSError): ...
class FormatError(Error, ValueError): ...
class ConfigError(Error, ValueError): ...
class ShapeError(Error, ValueError): ...
class ArgumentError(Error, ValueError): ...

class Tokenizer:
    vocab_size: int
    bos_id: int
    eos_id: int
    def encode(self, text: str, add_special: bool = False, parse_special: bool = True) -> List[int]: ...
    def decode(self, ids: Ids) -> str: ...
    def token_text(self, id: int) -> str: ...
    def token_id(self, text: str) -> Optional[int]: ...

class Model:
    path: str
    tokenizer: Optional[Tokenizer]
    chat_template_name: Optional[str]
    config: object  # pith.ModelConfig, set by the package
    def chat_template(self, messages: Sequence[Union[Tuple[str, str], Dict[str, str]]], add_generation_prompt: bool = True,
                      enable_thinking: Optional[bool] = None) -> str: ...

def load_model(path: str, quantize: Optional[str] = None, weights_type: Optional[str] = None,
               tokenizer: Optional[str] = None) -> Model: ...

class Sampler:
    temperature: float
    top_p: float
    seed: int
    def __init__(self, temperature: float = 0.0, top_p: float = 1.0, seed: int = 1,
                 allow_nonfinite: bool = False) -> None: ...
    def sample(self, logits: npt.NDArray[np.float32]) -> int: ...

class Generation(Iterator[int]):
    def __next__(self) -> int: ...

class Session:
    position: int
    def __init__(self, model: Model, max_context: int = 0, threads: Optional[int] = None, max_chunk: int = 512,
                 kv_type: str = "f32") -> None: ...
    def forward(self, ids: Ids, all_logits: bool = False) -> npt.NDArray[np.float32]: ...
    def generate(self, prompt: TextOrIds, steps: int, sampler: Optional[Sampler] = None,
                 stop: Optional[Sequence[int]] = None) -> Generation: ...
    def reset(self) -> None: ...
    def memory_report(self) -> List[Dict[str, object]]: ...

class ReaderStats:
    tokens_read: int
    chunks: int
    reading_seconds: float
    eviction_seconds: float
    instruction_seconds: float
    state_bytes: int

class Likelihood:
    sum: float
    tokens: int
    perplexity: float

class Reader:
    answer_ids: List[int]
    answer_logits: npt.NDArray[np.float32]
    instruction_ids: List[int]
    chat: bool
    stats: ReaderStats
    def __init__(self, model: Model, *, policy: Policy = "citrus-shared", budget: int = 768, chunk: int = 256,
                 positions: str = "reindexed", instruction: Optional[TextOrIds] = None,
                 question: Optional[TextOrIds] = None, max_answer_tokens: int = 256, sink: int = 4,
                 snapkv_window: int = 32, snapkv_kernel: int = 7, snapkv_pool: str = "avg", chunkkv_size: int = 20,
                 pyramid_beta: int = 20, random_seed: int = 0, citrus_pool: int = 1, max_context: int = 0,
                 threads: Optional[int] = None, kv_type: str = "f32", protocol: str = "chunked",
                 ratio: Optional[float] = None, question_in_cut: bool = False, policy_scores: str = "chunk",
                 policy_per_head: bool = False, chat: Optional[bool] = None,
                 system: Optional[str] = None, head_adaptive: bool = False,
                 adakv_alpha: float = 0.2) -> None: ...
    def feed(self, document: TextOrIds, progress: Optional[Callable[[int], object]] = None) -> None: ...
    def answer(self, max_tokens: int = 64, sampler: Optional[Sampler] = None, stop: Optional[int] = None) -> str: ...
    def log_likelihood(self, continuation: TextOrIds) -> Likelihood: ...
    def memory_report(self) -> List[Dict[str, object]]: ...
    def kept_positions(self, layer: int, head: int = 0, instruction_cache: bool = False) -> npt.NDArray[np.int64]: ...

class ToyDocument:
    ids: npt.NDArray[np.int32]
    instruction: List[int]
    answer: List[int]
    fact_offsets: List[int]

class RulerDocument:
    task: str
    length: int
    seed: int
    tokens: int
    haystack: int
    depth: Optional[float]
    document: str
    question: str
    answer_prefix: str
    gold: List[str]
    instruction: str

def toy_document(task: str, length: int, seed: int, facts: int = 8) -> ToyDocument: ...
def toy_vocabulary() -> List[str]: ...
def ruler_document(task: str, length: int, seed: int, model: Optional[Model] = None, depth: Optional[float] = None,
                   vt_chains: int = 1) -> RulerDocument: ...
def ruler_score(prediction: str, gold: Sequence[str]) -> float: ...
def ruler_tasks() -> List[str]: ...
def policy_names() -> List[str]: ...
def ratio_budget(n: int, ratio: float) -> int: ...
def peak_resident_bytes() -> int: ...
def set_num_threads(threads: int) -> None: ...
def num_threads() -> int: ...
