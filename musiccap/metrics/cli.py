"""`musiccap eval --pred P.jsonl --ref R.jsonl [--train T.jsonl] [--compat lpmc] [--json]`.

Input files hold one JSON object per line:

- P (predictions): `{"id", "caption"}`, optionally `"candidate"` (the caption a retrieval-augmented
  model conditioned on: adds copy_rate / copy_bleu4 / copy_rouge_l) and per-caption `"clap_at"`,
  `"clap_tt"` scores computed by the project's CLAP (their means are reported).
- R (references): `{"id", "caption"}` or `{"id", "captions": [...]}`; when every line also has the
  corpus `"attributes"`, attribute accuracy is added.
- T (training captions, optional): `{"caption"}` or `{"captions": [...]}`; gives novel_v / novel_c.

Every prediction id must have references. Output: the Markdown tables, or with `--json` one JSON
object of the metric keys. Bad input: one message on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_BAD_INPUT = 2


class BadInput(ValueError):
    pass


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise BadInput(f"{path}: no such file")
    rows = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise BadInput(f"{path}:{number}: not JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise BadInput(f"{path}:{number}: expected a JSON object")
            rows.append(row)
    if not rows:
        raise BadInput(f"{path}: no lines")
    return rows


def _captions(row: dict, where: str) -> list[str]:
    captions = row.get("captions", [row["caption"]] if "caption" in row else None)
    if not isinstance(captions, list) or not captions or not all(isinstance(c, str) for c in captions):
        raise BadInput(f'{where}: needs "caption" (string) or "captions" (non-empty list of strings)')
    return captions


def load_eval_inputs(pred_path: Path, ref_path: Path, train_path: Path | None) -> dict:
    """The keyword arguments of `compute_metrics` read from the three files."""
    predictions = read_jsonl(pred_path)
    references_by_id: dict[str, dict] = {}
    for number, row in enumerate(read_jsonl(ref_path), 1):
        if "id" not in row:
            raise BadInput(f'{ref_path}:{number}: missing "id"')
        references_by_id[str(row["id"])] = row

    captions, references, attributes = [], [], []
    candidates, clap_at, clap_tt = [], [], []
    for number, row in enumerate(predictions, 1):
        where = f"{pred_path}:{number}"
        if "id" not in row or not isinstance(row.get("caption"), str):
            raise BadInput(f'{where}: needs "id" and "caption" (string)')
        reference = references_by_id.get(str(row["id"]))
        if reference is None:
            raise BadInput(f"{where}: id {row['id']!r} has no reference in {ref_path}")
        captions.append(row["caption"])
        references.append(_captions(reference, f"{ref_path} id {row['id']!r}"))
        attributes.append(reference.get("attributes"))
        candidates.append(row.get("candidate"))
        clap_at.append(row.get("clap_at"))
        clap_tt.append(row.get("clap_tt"))

    def all_or_none(values: list) -> list | None:
        # A column counts only when every line has it: a mean over some captions is not the metric.
        return values if all(v is not None for v in values) else None

    train_captions = None
    if train_path is not None:
        train_captions = [
            c for i, row in enumerate(read_jsonl(train_path), 1) for c in _captions(row, f"{train_path}:{i}")
        ]
    return {
        "predictions": captions,
        "references": references,
        "train_captions": train_captions,
        "attributes": all_or_none(attributes),
        "candidates": all_or_none(candidates),
        "clap_at": all_or_none(clap_at),
        "clap_tt": all_or_none(clap_tt),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="musiccap eval", description="Score captions against references.")
    parser.add_argument("--pred", type=Path, required=True, help="predictions JSONL: {id, caption}")
    parser.add_argument("--ref", type=Path, required=True, help="references JSONL: {id, caption | captions}")
    parser.add_argument("--train", type=Path, help="training captions JSONL (for novel_v / novel_c)")
    parser.add_argument(
        "--compat", choices=["lpmc"], help="lpmc: LP-MusicCaps-compatible BLEU/METEOR/ROUGE-L"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object of metric keys")
    parser.add_argument("--name", default="system", help="row name in the Markdown tables")
    parser.add_argument("--no-semantic", action="store_true", help="skip the MiniLM metrics (slowest on CPU)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from musiccap.metrics import compute_metrics
    from musiccap.metrics.tables import markdown_tables

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return EXIT_BAD_INPUT if exit_.code else 0
    try:
        inputs = load_eval_inputs(args.pred, args.ref, args.train)
        metrics = compute_metrics(**inputs, compat=args.compat, semantic=not args.no_semantic)
    except (BadInput, ValueError, KeyError) as error:
        print(f"musiccap eval: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps(metrics))
    else:
        print(markdown_tables({args.name: metrics}, compat=args.compat), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
