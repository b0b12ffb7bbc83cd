"""GLUE tasks: where each task's files are, which columns hold the text and label, the label set and the scorer.

Modelled on the official ``finetune/`` package's task registry.  Readers check every row's column count and
name the file and line of a malformed one.
"""

from __future__ import annotations

import csv
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from electra.errors import UserError

csv.field_size_limit(sys.maxsize)


# --- scorers -------------------------------------------------------------------------------------------------------

def accuracy(pred, gold) -> float:
    pred, gold = np.asarray(pred), np.asarray(gold)
    return float((pred == gold).mean())


def f1_binary(pred, gold) -> float:
    pred, gold = np.asarray(pred), np.asarray(gold)
    tp = float(((pred == 1) & (gold == 1)).sum())
    fp = float(((pred == 1) & (gold == 0)).sum())
    fn = float(((pred == 0) & (gold == 1)).sum())
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def matthews(pred, gold) -> float:
    pred, gold = np.asarray(pred), np.asarray(gold)
    tp = float(((pred == 1) & (gold == 1)).sum())
    tn = float(((pred == 0) & (gold == 0)).sum())
    fp = float(((pred == 1) & (gold == 0)).sum())
    fn = float(((pred == 0) & (gold == 1)).sum())
    denom = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return 0.0 if denom == 0 else (tp * tn - fp * fn) / denom


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean rank), as Spearman needs."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def pearson(pred, gold) -> float:
    pred, gold = np.asarray(pred, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    if pred.std() == 0 or gold.std() == 0:
        return 0.0
    return float(np.corrcoef(pred, gold)[0, 1])


def spearman(pred, gold) -> float:
    return pearson(_ranks(np.asarray(pred, dtype=np.float64)), _ranks(np.asarray(gold, dtype=np.float64)))


# --- the registry ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Task:
    name: str
    folder: str
    text_columns: tuple[int, ...]            # one or two text columns (train/dev layout)
    label_column: int | None                 # None: regression score column given by score_column
    labels: tuple[str, ...] = ("0", "1")     # empty for regression
    header: bool = True
    columns: int | None = None               # expected column count in train/dev (None: at least max index + 1)
    test_text_columns: tuple[int, ...] = ()
    test_id_column: int = 0
    dev_files: tuple[str, ...] = ("dev.tsv",)
    metrics: tuple[str, ...] = ("accuracy",)
    main_metric: str = "accuracy"
    epochs: int = 3
    test_files: tuple[str, ...] = ("test.tsv",)
    label_from_end: bool = False             # MNLI: the gold label is the last column

    @property
    def is_regression(self) -> bool:
        return not self.labels

    @property
    def num_labels(self) -> int:
        return 1 if self.is_regression else len(self.labels)


TASKS = {t.name: t for t in [
    Task("cola", "CoLA", (3,), 1, header=False, columns=4, test_text_columns=(1,), metrics=("mcc",),
         main_metric="mcc"),
    Task("sst-2", "SST-2", (0,), 1, columns=2, test_text_columns=(1,)),
    Task("mrpc", "MRPC", (3, 4), 0, columns=5, test_text_columns=(3, 4), metrics=("accuracy", "f1"),
         main_metric="f1"),
    Task("sts-b", "STS-B", (7, 8), 9, labels=(), columns=10, test_text_columns=(7, 8),
         metrics=("pearson", "spearman"), main_metric="spearman", epochs=10),
    Task("qqp", "QQP", (3, 4), 5, columns=6, test_text_columns=(1, 2), metrics=("accuracy", "f1"), main_metric="f1"),
    Task("mnli", "MNLI", (8, 9), -1, labels=("contradiction", "entailment", "neutral"), test_text_columns=(8, 9),
         dev_files=("dev_matched.tsv", "dev_mismatched.tsv"), label_from_end=True,
         test_files=("test_matched.tsv", "test_mismatched.tsv")),
    Task("qnli", "QNLI", (1, 2), 3, labels=("entailment", "not_entailment"), columns=4, test_text_columns=(1, 2)),
    Task("rte", "RTE", (1, 2), 3, labels=("entailment", "not_entailment"), columns=4, test_text_columns=(1, 2),
         epochs=10),
    Task("wnli", "WNLI", (1, 2), 3, columns=4, test_text_columns=(1, 2)),
]}
ALIASES = {"sst2": "sst-2", "stsb": "sts-b", "sts": "sts-b", "mnli-m": "mnli", "mnli-mm": "mnli"}


def get_task(name: str) -> Task:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in TASKS:
        raise UserError(f"unknown task '{name}'; choose one of {', '.join(TASKS)}")
    return TASKS[key]


@dataclass
class Examples:
    texts: list[tuple[str, ...]]
    labels: list = field(default_factory=list)   # int class ids or float scores; empty for the test split
    ids: list[str] = field(default_factory=list)


def _read_rows(path: Path, header: bool) -> list[tuple[int, list[str]]]:
    if not path.is_file():
        raise UserError(f"missing file {path}; the task folder must hold the standard GLUE files")
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            rows = [(i, row) for i, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), start=1)]
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not UTF-8 text (byte offset {exc.start})") from None
    return [(i, r) for i, r in rows[1 if header else 0:] if r and any(c.strip() for c in r)]


def read_split(task: Task, data_dir: str | Path, split_file: str, test: bool = False) -> Examples:
    folder = Path(data_dir)
    if (folder / task.folder).is_dir():
        folder = folder / task.folder
    path = folder / split_file
    rows = _read_rows(path, header=task.header if not test else True)
    text_cols = task.test_text_columns if test else task.text_columns
    need = max(text_cols + ((task.label_column,) if not test and task.label_column not in (None, -1) else ())) + 1
    out = Examples([], [], [])
    for line, row in rows:
        expected = task.columns if (task.columns and not test) else None
        if (expected and len(row) != expected) or len(row) < need:
            raise UserError(f"{path} line {line} has {len(row)} columns, expected "
                            f"{expected if expected else f'at least {need}'}")
        out.texts.append(tuple(row[c] for c in text_cols))
        if test:
            out.ids.append(row[task.test_id_column])
            continue
        raw = row[-1] if task.label_from_end else row[task.label_column]
        if task.is_regression:
            try:
                out.labels.append(float(raw))
            except ValueError:
                raise UserError(f"{path} line {line}: score {raw!r} is not a number") from None
        else:
            if raw not in task.labels:
                raise UserError(f"{path} line {line}: label {raw!r} is not one of {', '.join(task.labels)}")
            out.labels.append(task.labels.index(raw))
    if not out.texts:
        raise UserError(f"{path} holds no examples")
    return out


def score(task: Task, predictions, gold) -> dict[str, float]:
    fns = {"accuracy": accuracy, "f1": f1_binary, "mcc": matthews, "pearson": pearson, "spearman": spearman}
    return {m: fns[m](predictions, gold) for m in task.metrics}
