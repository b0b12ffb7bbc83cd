"""WordPiece tokenizers: training a lower-cased vocabulary, loading ours or any BERT/ELECTRA vocab.txt/tokenizer.json.

A tokenizer directory holds ``tokenizer.json`` (HF tokenizers), ``vocab.txt`` and ``tokenizer_config.json``, so
``transformers.AutoTokenizer`` and ``pipeline(...)`` load it as an ELECTRA tokenizer.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from electra.errors import UserError

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _bert_normalization(tokenizer, lowercase: bool = True):
    from tokenizers import normalizers, pre_tokenizers

    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=None, clean_text=True,
                                                      handle_chinese_chars=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return tokenizer


def _bert_pipeline(tokenizer, lowercase: bool = True):
    """BERT's normalisation and pre-tokenisation, WordPiece decoding, [CLS] A [SEP] (B [SEP]) templates."""
    from tokenizers import decoders, processors

    _bert_normalization(tokenizer, lowercase)
    tokenizer.add_special_tokens(SPECIAL_TOKENS)   # "[MASK]" in a text is one token, never split or lower-cased
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return tokenizer


def check_special_tokens(tokenizer, source) -> None:
    missing = [t for t in SPECIAL_TOKENS if tokenizer.token_to_id(t) is None]
    if missing:
        raise UserError(f"tokenizer {source} lacks the special tokens {', '.join(missing)}; "
                        f"train one with 'electra text tokenizer'")


def save_tokenizer(tokenizer, out: Path, lowercase: bool = True) -> Path:
    """Write tokenizer.json, vocab.txt (ids in order) and the transformers config files."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out / "tokenizer.json"))
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    (out / "vocab.txt").write_text("".join(tok + "\n" for tok, _ in vocab), encoding="utf-8")
    config = {"tokenizer_class": "ElectraTokenizer", "do_lower_case": lowercase, "model_max_length": 512,
              "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
              "mask_token": "[MASK]"}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (out / "special_tokens_map.json").write_text(json.dumps(
        {k: v for k, v in config.items() if k.endswith("_token")}, indent=2) + "\n", encoding="utf-8")
    return out


def train_tokenizer(files: list[str], vocab_size: int, out: str | Path, lowercase: bool = True,
                    min_frequency: int = 2, encoding: str = "utf-8", errors: str = "strict") -> Path:
    """Train a WordPiece vocabulary on text files, plain or compressed (special tokens first, so [PAD] = 0; then
    the rest sorted, since WordPiece matching depends on which tokens exist, not on their ids).  The same files
    and settings give the same bytes: see :mod:`electra.text.wordpiece`."""
    from tokenizers import Tokenizer, models

    from electra.text.corpus import check_text_files
    from electra.text.text_files import TextFiles
    from electra.text.wordpiece import count_words, learn_vocabulary

    paths = check_text_files(files, encoding, errors)
    if vocab_size < len(SPECIAL_TOKENS) + 10:
        raise UserError(f"--vocab-size {vocab_size} is too small; use at least {len(SPECIAL_TOKENS) + 10}")
    words = _bert_normalization(Tokenizer(models.WordPiece(unk_token="[UNK]")), lowercase)
    counts = count_words(TextFiles(paths, encoding, errors).lines(), words.normalizer, words.pre_tokenizer)
    learned = learn_vocabulary(counts, vocab_size, SPECIAL_TOKENS, min_frequency)
    ordered = SPECIAL_TOKENS + sorted(t for t in learned if t not in SPECIAL_TOKENS)
    tokenizer = Tokenizer(models.WordPiece({t: i for i, t in enumerate(ordered)}, unk_token="[UNK]",
                                           continuing_subword_prefix="##"))
    _bert_pipeline(tokenizer, lowercase)
    return save_tokenizer(tokenizer, out, lowercase)


def load_tokenizer(path: str | Path):
    """A tokenizers.Tokenizer from a directory (tokenizer.json or vocab.txt) or either file directly."""
    from tokenizers import Tokenizer, models

    path = Path(path)
    if path.is_dir():
        candidates = [path / "tokenizer.json", path / "vocab.txt"]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise UserError(f"no tokenizer.json or vocab.txt in {candidates[0].parent}")
    if not path.is_file():
        raise UserError(f"tokenizer {path} does not exist")
    try:
        if path.suffix == ".json":
            tokenizer = Tokenizer.from_file(str(path))
        else:
            lines = path.read_text(encoding="utf-8").splitlines()
            if not lines or len(set(lines)) != len(lines):
                raise ValueError("empty file or repeated entries")
            tokenizer = Tokenizer(models.WordPiece({tok: i for i, tok in enumerate(lines)}, unk_token="[UNK]"))
            lower = (path.parent / "tokenizer_config.json")
            lowercase = json.loads(lower.read_text()).get("do_lower_case", True) if lower.is_file() else True
            check_special_tokens(tokenizer, path)
            _bert_pipeline(tokenizer, lowercase)
    except UserError:
        raise
    except Exception as exc:  # tokenizers raises a bare Exception on malformed JSON
        raise UserError(f"tokenizer {path} is malformed ({str(exc).splitlines()[0][:120]})") from None
    check_special_tokens(tokenizer, path)
    return tokenizer


def tokenizer_hash(tokenizer) -> str:
    """Identity of a vocabulary: shards made with another vocabulary are refused."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    return hashlib.sha256("\n".join(t for t, _ in vocab).encode()).hexdigest()[:16]


def special_ids(tokenizer) -> dict[str, int]:
    return {t.strip("[]").lower(): tokenizer.token_to_id(t) for t in SPECIAL_TOKENS}
