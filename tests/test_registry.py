"""The registry: names to checkpoint folders, roles and display order; the one-call loader."""

import json

import pytest

import musiccap
from musiccap.hub import local_folder
from musiccap.registry import CHECKPOINTS, REGISTRY, captioner_names, component_folder, reference
from musiccap.studio import Studio

EXAMPLE = CHECKPOINTS.parent / "examples" / "real-parrotte-desert.ogg"


def test_every_shipped_checkpoint_folder_is_registered():
    shipped = {p.name for p in CHECKPOINTS.iterdir() if (p / "config.json").is_file()}
    assert shipped == {entry.source for entry in REGISTRY.values()}
    assert captioner_names() == ["random", "nearest", "muscaps", "alcap", "rgmc", "blap", "csa"]


def test_a_component_is_named_by_registry_name_beside_its_checkpoint_first(tmp_path):
    assert local_folder("clap") == CHECKPOINTS / "clap"
    (tmp_path / "clap").mkdir()
    (tmp_path / "clap" / "config.json").write_text(json.dumps({"architecture": "clap"}))
    (tmp_path / "nearest").mkdir()
    assert component_folder("clap", tmp_path / "nearest") == tmp_path / "clap"  # a copied checkpoints folder
    assert reference(tmp_path / "clap", tmp_path / "nearest") == "clap"
    (tmp_path / "elsewhere").mkdir()
    assert reference(tmp_path / "elsewhere", tmp_path / "nearest") == "../elsewhere"


def test_load_by_name_captions_a_file_in_clean_text():
    if not (CHECKPOINTS / "csa" / "config.json").is_file():
        pytest.skip("no shipped csa checkpoint")
    assert musiccap.load("csa").name == "csa"
    with pytest.raises(ValueError, match="component"):
        musiccap.load("clap")
    with pytest.raises(ValueError, match="no checkpoint named"):
        Studio(models=["nonesuch"])
    (result,) = musiccap.caption(EXAMPLE, "csa")
    assert result.text[0].isupper() and result.text.endswith(".")
    assert result.decoded_text and result.decoded_text != result.text
