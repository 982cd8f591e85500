"""The difficulty signal: how likely is the local model to answer this request wrongly?

`DifficultyClassifier.score(messages)` returns a probability in [0, 1] that the local
model (SmolLM2-135M-Instruct, the default) gets the request WRONG; higher is harder.
The policy compares it with `routing.difficulty_threshold`; this module only computes it.

How, per call (all on CPU, with onnxruntime):

1. Take the LAST USER MESSAGE (a system prompt or earlier turns are ignored: the
   question being asked now is what the small model may fail at).
2. Tokenize it with all-MiniLM-L6-v2's WordPiece tokenizer, padding OFF (the
   shipped tokenizer.json pads to 128; a 30-token prompt would then cost a
   128-token encoder pass) and truncation at MAX_TOKENS = 128 tokens.
3. Run the MiniLM encoder (by default the "dynq" variant: the pulled int8 ONNX
   re-quantized once by `edge.catalog.ensure_derived_encoder` so its MatMuls run in
   int8, about twice as fast; the pulled file itself, variant "int8", is the
   fallback when derivation fails), mean-pool its last hidden state over the
   attention mask and L2-normalise: a 384-d unit vector (the sentence-transformers
   recipe for this model).
4. Append EXTRA_FEATURES cheap features (see `extra_features`) and run the head
   (a logistic regression exported to ONNX: MatMul + Add + Sigmoid) on the 386 numbers.

The head is trained by models/router/train_difficulty.py on labelled tasks
(models/router/README.md has the data and the held-out metrics). It ships in the
repository (models/router/difficulty_head.onnx) and in the wheel
(edge/_data/router/difficulty_head.onnx). The encoder and tokenizer are manifest
models: `edge models pull minilm-l6-v2-int8` and `edge models pull minilm-l6-v2-tokenizer`.
The two encoder variants give different embeddings (cosine ~0.97), so a head records
the variant it was trained for (ONNX metadata `edge.encoder_variant`, "int8" when
absent) and is refused with the other; the shipped heads are difficulty_head.onnx
("dynq") and difficulty_head.int8.onnx ("int8", used only by the fallback).

onnxruntime, tokenizers and numpy are imported when a classifier is loaded, never
when `edge` is imported. Sessions are created once and reused; `score` is safe to
call from several threads (an onnxruntime session's `run` and a tokenizer's
`encode` are both thread-safe).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from edge.errors import ModelCorrupt, ModelError, ModelNotFound
from edge.shipped import shipped_file

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DifficultyClassifier",
    "SentenceEncoder",
    "default_head_path",
    "extra_features",
    "last_user_message",
    "EMBED_DIM",
    "MAX_TOKENS",
    "FEATURE_SET",
    "N_FEATURES",
    "ENCODER_VARIANTS",
]

log = logging.getLogger(__name__)

MAX_TOKENS = 128          # encoder input cap, in WordPiece tokens (MiniLM was trained at 128)
EMBED_DIM = 384           # all-MiniLM-L6-v2's hidden size
EXTRA_FEATURES = ("log_tokens", "digit_run")
N_FEATURES = EMBED_DIM + len(EXTRA_FEATURES)
# Stamped into the head's ONNX metadata by the training script; a head made for
# other features is refused instead of returning nonsense scores.
FEATURE_SET = "minilm-l6-v2/mean/l2+log_tokens+digit_run/v1"
# "dynq": the derived, dynamically quantized encoder (default); "int8": the pulled file.
DYNQ, INT8 = "dynq", "int8"
ENCODER_VARIANTS = (DYNQ, INT8)
_VARIANT_KEY = "edge.encoder_variant"  # == edge.catalog.ENCODER_VARIANT_KEY
_HEAD_FILES = {DYNQ: "difficulty_head.onnx", INT8: "difficulty_head.int8.onnx"}
HEAD_INPUT = "features"
HEAD_OUTPUT = "p_wrong"
_DIGIT_RUN_CAP = 8
_DIGITS = re.compile(r"\d+")

# A message as the daemon and its callers hold one: a str (the user's text), a
# (role, content) pair, a {"role", "content"} mapping, or an object with .role/.content.
MessageLike = Union[str, tuple[str, str], Mapping[str, str], Any]


def default_head_path(variant: str = DYNQ) -> Path:
    """The shipped head for an encoder variant: edge/_data/router/ in an installed wheel,
    models/router/ in a checkout."""
    name = _HEAD_FILES[variant]
    path = shipped_file(f"router/{name}")
    if path is not None:
        return path
    raise ModelNotFound(f"difficulty head not found (expected edge/_data/router/{name} or "
                        f"models/router/{name}; models/router/train_difficulty.py makes it)")


def last_user_message(messages: str | Sequence[MessageLike]) -> str:
    """The text the classifier judges: `messages` itself when it is a str, else the
    content of the last message whose role is "user" (the last message of any role
    when there is no user message; "" for an empty list)."""
    if isinstance(messages, str):
        return messages
    pairs = [_role_content(m) for m in messages]
    for role, content in reversed(pairs):
        if role == "user":
            return content
    return pairs[-1][1] if pairs else ""


def _role_content(m: MessageLike) -> tuple[str, str]:
    if isinstance(m, str):
        return "user", m
    if isinstance(m, tuple):
        return str(m[0]), str(m[1])
    if isinstance(m, Mapping):
        return str(m.get("role", "")), str(m.get("content", ""))
    return str(getattr(m, "role", "")), str(getattr(m, "content", ""))


def extra_features(text: str, n_tokens: int) -> list[float]:
    """The cheap features appended to the embedding, each scaled to [0, 1]:

    * log_tokens: log(1 + n_tokens) / log(1 + MAX_TOKENS), where n_tokens counts the
      WordPiece tokens the encoder saw ([CLS] and [SEP] included, after truncation).
      Longer requests ask more of a small model.
    * digit_run: the longest run of digits in the text, capped at 8, divided by 8.
      Multi-digit arithmetic is what a 135M model reliably gets wrong, and mean-pooled
      WordPiece embeddings blur "7" and "7341" (numbers split into pieces).
    """
    run = max((len(m) for m in _DIGITS.findall(text)), default=0)
    return [math.log1p(n_tokens) / math.log1p(MAX_TOKENS), min(run, _DIGIT_RUN_CAP) / _DIGIT_RUN_CAP]


def _session(path: Path, threads: int, what: str) -> Any:
    """An onnxruntime CPU session with all graph optimisations, `threads` intra-op threads."""
    if not path.is_file():
        raise ModelNotFound(f"{what}: {path} does not exist")
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # The classifier shares the cores with llama.cpp: worker threads that spin-wait
    # after a run would take cycles from generation between requests.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3  # errors only: no optimiser chatter on stderr
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own pybind types (InvalidProtobuf, Fail, ...)
        raise ModelCorrupt(f"{what}: onnxruntime cannot load {path}: {exc}") from exc


class SentenceEncoder:
    """all-MiniLM-L6-v2: text -> 384-d unit vector (mean pooling over the mask, L2 norm)."""

    def __init__(self, session: Any, tokenizer: Any) -> None:
        """Use `SentenceEncoder.load`; this takes an onnxruntime session and a configured tokenizer."""
        import numpy as np

        self._np = np
        self._session = session
        self._tokenizer = tokenizer
        self._inputs = {i.name for i in session.get_inputs()}
        missing = {"input_ids", "attention_mask"} - self._inputs
        if missing:
            raise ModelCorrupt(f"the encoder has no input(s) {sorted(missing)}; is it a BERT-style ONNX export?")
        self._output = session.get_outputs()[0].name
        # The derived file is stamped "dynq" by edge.catalog; anything else is the pulled int8 model.
        self.variant: str = session.get_modelmeta().custom_metadata_map.get(_VARIANT_KEY, INT8)

    @classmethod
    def load(cls, encoder_onnx: Path, tokenizer_json: Path, *, threads: int = 1, variant: str = DYNQ,
             source_sha256: str | None = None) -> SentenceEncoder:
        """Raises ModelNotFound for a missing file, ModelCorrupt for one that does not load.

        `encoder_onnx` is the pulled model. With variant "dynq" (the default) its derived,
        dynamically quantized copy is used, made next to it on first use; if that fails
        the pulled model is used and a warning says why (`.variant` tells which ran).
        `source_sha256`: the pulled model's verified digest, to spare hashing it again.
        """
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if variant not in ENCODER_VARIANTS:
            raise ValueError(f"variant must be one of {ENCODER_VARIANTS}, got {variant!r}")
        if variant == DYNQ and encoder_onnx.is_file() and not encoder_onnx.name.endswith(f".{DYNQ}.onnx"):
            from edge.catalog import ensure_derived_encoder

            try:
                encoder_onnx = ensure_derived_encoder(encoder_onnx, source_sha256=source_sha256, log=log.info)
            except (ModelError, ImportError, OSError) as exc:
                log.warning("using the pulled int8 encoder %s (slower): %s", encoder_onnx, exc)
        if not tokenizer_json.is_file():
            raise ModelNotFound(f"encoder tokenizer: {tokenizer_json} does not exist")
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_json))
        except Exception as exc:  # tokenizers raises a bare Exception on a bad file
            raise ModelCorrupt(f"encoder tokenizer: cannot load {tokenizer_json}: {exc}") from exc
        # The shipped tokenizer.json pads every input to 128 tokens; a single prompt needs none.
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        return cls(_session(encoder_onnx, threads, "encoder"), tokenizer)

    @classmethod
    def from_models_dir(cls, models_dir: Path, *, threads: int = 1) -> SentenceEncoder:
        """The installed encoder (verified; see `edge.catalog.ensure_router_models`)."""
        from edge.catalog import ROUTER_ENCODER, ensure_router_models, load_manifest

        encoder_onnx, tokenizer_json = ensure_router_models(models_dir)
        return cls.load(encoder_onnx, tokenizer_json, threads=threads,
                        source_sha256=load_manifest().get(ROUTER_ENCODER).sha256)

    def tokenize(self, text: str) -> list[int]:
        """The token ids the encoder sees for `text` ([CLS] ... [SEP], at most MAX_TOKENS)."""
        return list(self._tokenizer.encode(text).ids)

    def embed_with_count(self, text: str) -> tuple[np.ndarray, int]:
        """(384-d float32 unit vector, number of tokens encoded)."""
        np = self._np
        enc = self._tokenizer.encode(text)
        ids = np.asarray([enc.ids], dtype=np.int64)
        mask = np.asarray([enc.attention_mask], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.asarray([enc.type_ids], dtype=np.int64)
        try:
            (hidden,) = self._session.run([self._output], feeds)
        except Exception as exc:
            raise ModelError(f"the difficulty encoder failed: {exc}") from exc
        m = mask[0].astype(np.float32)[:, None]
        # Mean over real tokens only: with padding off every mask entry is 1, but a
        # caller-padded batch must not average in [PAD] positions.
        pooled = (hidden[0] * m).sum(axis=0) / max(float(m.sum()), 1.0)
        norm = float(np.linalg.norm(pooled))
        return (pooled / norm if norm > 0 else pooled).astype(np.float32), len(enc.ids)

    def embed(self, text: str) -> np.ndarray:
        """A 384-d float32 unit vector for `text`."""
        return self.embed_with_count(text)[0]

    def features(self, text: str) -> np.ndarray:
        """The head's input for `text`: embedding followed by `extra_features`, float32, shape (N_FEATURES,)."""
        vec, n = self.embed_with_count(text)
        return self._np.concatenate([vec, self._np.asarray(extra_features(text, n), dtype=self._np.float32)])


class DifficultyClassifier:
    """Estimated probability that the local model answers a request wrongly."""

    def __init__(self, encoder: SentenceEncoder, head_session: Any) -> None:
        """Use `DifficultyClassifier.load`; this checks the head fits the features."""
        import numpy as np

        self._np = np
        self.encoder = encoder
        self._head = head_session
        meta = head_session.get_modelmeta().custom_metadata_map
        if meta.get("edge.feature_set") != FEATURE_SET:
            raise ModelCorrupt(f"difficulty head was made for features {meta.get('edge.feature_set')!r}, "
                               f"this edge computes {FEATURE_SET!r}; retrain it (models/router/train_difficulty.py)")
        head_variant = meta.get(_VARIANT_KEY, INT8)
        if head_variant != encoder.variant:
            raise ModelCorrupt(f"difficulty head was trained for encoder variant {head_variant!r}, but the encoder "
                               f"is {encoder.variant!r} (their embeddings differ); use the head made for "
                               f"{encoder.variant!r} ({_HEAD_FILES[encoder.variant]}) or retrain it "
                               f"(models/router/train_difficulty.py --encoder {encoder.variant})")
        shape = head_session.get_inputs()[0].shape
        if shape[-1] != N_FEATURES:
            raise ModelCorrupt(f"difficulty head takes {shape[-1]} features, expected {N_FEATURES}")
        self.metadata: dict[str, str] = dict(meta)

    @classmethod
    def load(cls, encoder_onnx: Path, tokenizer_json: Path, head_onnx: Path | None = None, *,
             threads: int = 1, variant: str = DYNQ, source_sha256: str | None = None) -> DifficultyClassifier:
        """Load the encoder (see `SentenceEncoder.load` for `variant`), its tokenizer and the
        head (default: the shipped head for the encoder variant that loaded).

        `threads`: onnxruntime intra-op threads per session (1 keeps the other core free
        for llama.cpp). Raises ModelNotFound / ModelCorrupt naming the file at fault.
        """
        encoder = SentenceEncoder.load(encoder_onnx, tokenizer_json, threads=threads, variant=variant,
                                       source_sha256=source_sha256)
        head = head_onnx or default_head_path(encoder.variant)
        return cls(encoder, _session(head, threads, "difficulty head"))

    @classmethod
    def from_models_dir(cls, models_dir: Path, *, head_onnx: Path | None = None,
                        threads: int = 1) -> DifficultyClassifier:
        """Load from the installed manifest models (verified by sha256; see `edge.catalog.ensure_router_models`).
        Raises ModelNotFound naming `edge models pull NAME` when one is missing."""
        encoder = SentenceEncoder.from_models_dir(models_dir, threads=threads)
        return cls(encoder, _session(head_onnx or default_head_path(encoder.variant), threads, "difficulty head"))

    def score_features(self, features: np.ndarray) -> np.ndarray:
        """Head probabilities for a (n, N_FEATURES) float32 batch, shape (n,)."""
        x = self._np.asarray(features, dtype=self._np.float32).reshape(-1, N_FEATURES)
        try:
            (p,) = self._head.run([HEAD_OUTPUT], {HEAD_INPUT: x})
        except Exception as exc:
            raise ModelError(f"the difficulty head failed: {exc}") from exc
        return p.reshape(-1)

    def score(self, messages: str | Sequence[MessageLike]) -> float:
        """Probability in [0, 1] that the local model answers wrongly (higher = harder),
        judged from the last user message (see `last_user_message`)."""
        text = last_user_message(messages)
        return self.score_embedding(text, *self.encoder.embed_with_count(text))

    def score_embedding(self, text: str, vector: np.ndarray, n_tokens: int) -> float:
        """`score` for a text whose embedding and token count (`SentenceEncoder.embed_with_count`)
        are known already: the head alone, about 0.1 ms (the answer cache shares its embedding)."""
        features = self._np.concatenate([vector, self._np.asarray(extra_features(text, n_tokens),
                                                                  dtype=self._np.float32)])
        p = float(self.score_features(features)[0])
        return min(1.0, max(0.0, p))
