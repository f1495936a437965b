"""``musiccap deploy``: the dry run lists the Space's files offline; the real run makes the right Hub calls."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from musiccap import deploy as deploy_module
from musiccap.cli import main
from musiccap.deploy import MUSICNN_IN_SPACE, deploy, space_files
from tests.conftest import REPO


def shipped_checkpoints() -> list[Path]:
    return sorted(p.parent for p in (REPO / "checkpoints").glob("*/config.json"))


class RecordingHfApi(HfApi):
    """Stands in for the Hub: records each call and what upload_folder would send, touches no network."""

    def __init__(self):
        super().__init__(token="hf_test")
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        return f"https://huggingface.co/spaces/{repo_id}"

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        folder = Path(folder_path)
        sent = {p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*") if p.is_file()}
        self.calls.append(("upload_folder", repo_id, {**kwargs, "sent": sent}))


def test_dry_run_lists_app_requirements_readme_every_checkpoint_offline(capsys, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the dry run opened a connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert main(["deploy", "--space", "example/musiccap", "--dry-run"]) == 0
    out = capsys.readouterr().out
    listed = {line.split()[0] for line in out.splitlines()[1:-1]}
    assert {"app.py", "requirements.txt", "README.md", MUSICNN_IN_SPACE} <= listed
    for checkpoint in shipped_checkpoints():
        folder = checkpoint.relative_to(REPO).as_posix()
        assert f"{folder}/config.json" in listed
        weights = [p for p in checkpoint.glob("*.safetensors")]
        assert all(p.relative_to(REPO).as_posix() in listed for p in weights)
    # nothing the Space must not get: training code, tests, pickles, the local arena database
    assert not any(path.startswith(("train/", "tests/", "data/", "scripts/")) for path in listed)
    assert not any(path.endswith((".pt", ".bin", ".pyc", ".sqlite")) for path in listed)
    total = sum(f.size for f in space_files())
    assert f"({total} bytes) in total" in out.splitlines()[-1]


def test_deploy_creates_a_gradio_space_and_uploads_the_staged_files_once():
    api = RecordingHfApi()
    files = deploy("someone/musiccap", private=True, hf_api=api, log=lambda text: None)
    (create, upload) = api.calls
    assert create == (
        "create_repo",
        "someone/musiccap",
        {"repo_type": "space", "space_sdk": "gradio", "private": True, "exist_ok": True},
    )
    assert upload[0:2] == ("upload_folder", "someone/musiccap")
    options = upload[2]
    assert options["repo_type"] == "space"
    assert options["allow_patterns"] == deploy_module.ALLOW_PATTERNS
    assert options["ignore_patterns"] == deploy_module.IGNORE_PATTERNS
    assert options["sent"] == {f.path_in_space: f.size for f in files}


@pytest.mark.parametrize("space", ["musiccap", "a/b/c", "bad--name/x", "owner/"])
def test_a_malformed_space_id_is_a_clean_error(space, capsys):
    assert main(["deploy", "--space", space, "--dry-run"]) == 2
    assert capsys.readouterr().err.startswith("musiccap: ")


def test_the_hub_refusing_is_a_clean_error(capsys, monkeypatch):
    import httpx
    from huggingface_hub.errors import HfHubHTTPError

    def refuse(self, repo_id, **kwargs):
        request = httpx.Request("POST", "https://huggingface.co/api/repos/create")
        response = httpx.Response(401, request=request)
        raise HfHubHTTPError("401 Unauthorized: invalid token", response=response)

    monkeypatch.setattr(HfApi, "create_repo", refuse)
    monkeypatch.setattr(deploy_module, "plan_text", lambda *args: "")
    assert main(["deploy", "--space", "someone/musiccap"]) == 2
    assert "401" in capsys.readouterr().err


def test_readme_front_matter_names_only_what_the_app_loads():
    front = (REPO / "README.md").read_text().split("---")[1]
    assert "app_file: app.py" in front and "sdk: gradio" in front
    for never_loaded in ("openai-community/gpt2", "facebook/bart-base", "google/flan-t5-base", "laion/"):
        assert never_loaded not in front


def test_the_space_entry_point_reads_vendored_musicnn_weights(tmp_path):
    # app.py sets MUSICCAP_CACHE to vendor/ when the deploy put musicnn's weights there
    (tmp_path / "vendor" / "musicnn").mkdir(parents=True)
    app = (REPO / "app.py").read_text().replace('if __name__ == "__main__":', "if True:", 1)
    app = app.replace("    from musiccap.ui.app import launch, server_address", "    import os, json")
    app = app.replace(
        "    host, port = server_address()\n    launch(host=host, port=port)",
        "    print(json.dumps(os.environ.get('MUSICCAP_CACHE')))",
    )
    (tmp_path / "app.py").write_text(app)
    out = subprocess.run([sys.executable, "app.py"], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == str(tmp_path / "vendor")
