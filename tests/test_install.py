"""``python -m train.install``: a retrain is served only whole (every captioner shipped, one corpus), and each
folder is replaced, not merged."""

from __future__ import annotations

import json
from pathlib import Path

from train import install
from train.pipeline import CAPTIONERS


def write_checkpoint(folder: Path, corpus: str | None, shipped: dict | None = None, **files: str) -> None:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"architecture": folder.name}))
    if corpus is not None:
        (folder / "training.json").write_text(json.dumps({"corpus": corpus}))
    if shipped is not None:
        (folder / "shipped.json").write_text(json.dumps(shipped))
    for name, text in files.items():
        (folder / name).write_text(text)


def staged_retrain(root: Path, corpus: str) -> Path:
    staged = root / "staged"
    for name in install.COMPONENTS:
        write_checkpoint(staged / name, corpus if name in ("clap", "random") else None)
    for name in CAPTIONERS:
        write_checkpoint(staged / name, corpus, {"ships": name}, **{"model.safetensors": f"{name} v2"})
    return staged


def test_a_whole_retrain_replaces_the_served_folders_and_leaves_the_rest(tmp_path, capsys):
    staged = staged_retrain(tmp_path, str(tmp_path / "corpus_v2"))
    served = tmp_path / "checkpoints"
    write_checkpoint(
        served / "blap", "/data/corpus", None, **{"prompt_use.json": "{}", "model.safetensors": "v1"}
    )
    (served / "blap" / "stage1").mkdir()
    write_checkpoint(served / "analysis", None, None, **{"probes.safetensors": "probes"})

    assert install.main([str(staged), "--into", str(served), "--dry-run"]) == 0
    assert (served / "blap" / "prompt_use.json").is_file()  # a dry run changes nothing

    assert install.main([str(staged), "--into", str(served)]) == 0
    assert "served from" in capsys.readouterr().out
    assert sorted(path.name for path in (served / "blap").iterdir()) == sorted(
        path.name for path in (staged / "blap").iterdir()
    )  # the old model's other files went with it
    assert (served / "blap" / "model.safetensors").read_text() == "blap v2"
    assert (served / "analysis" / "probes.safetensors").read_text() == "probes"  # not the retrain's
    assert not list(served.glob(".*installing"))


def test_a_retrain_not_yet_shipped_or_from_two_corpora_is_refused(tmp_path, capsys):
    staged = staged_retrain(tmp_path, "/data/corpus_v2")
    (staged / "rgmc" / "shipped.json").unlink()
    (staged / "blap" / "shipped.json").write_text(json.dumps({"ships": "blap_analysis", "installing": True}))
    (staged / "alcap" / "training.json").write_text(json.dumps({"corpus": "/data/corpus"}))
    served = tmp_path / "checkpoints"
    write_checkpoint(served / "rgmc", "/data/corpus", {"ships": "rgmc"})

    assert install.main([str(staged), "--into", str(served)]) == 1
    out = capsys.readouterr().out
    assert "rgmc: not shipped yet" in out and "blap: train.ship was cut off" in out
    assert "trained on different corpora" in out and "alcap: /data/corpus," in out
    assert (
        json.loads((served / "rgmc" / "training.json").read_text())["corpus"] == "/data/corpus"
    )  # untouched
    (staged / "muscaps" / "config.json").unlink()
    assert "muscaps: no checkpoint" in "\n".join(install.problems(staged))
