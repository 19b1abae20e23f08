"""The Label Studio export and labeling config, checked by Label Studio's own SDK.

label-studio-sdk pins numpy and OpenCV versions that would move this project's own, so it
lives in a venv of its own beside the test venv (``<venv>/consumers/label-studio-sdk``,
made on first use from PyPI); the export is checked there with the SDK's
``LabelInterface``: every task has the config's text field, every prediction validates
(0 errors), and a prediction with a label outside the config is refused — so the check
does look at the labels. Skips with a message where the venv cannot be made (no index).
"""
from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from test_report_fixtures import make_run

from diziner.export import export

SDK = "label-studio-sdk>=2.0,<3"

CHECK = r"""
import json, sys
from label_studio_sdk.label_interface import LabelInterface
li = LabelInterface(open(sys.argv[1], encoding="utf-8").read())
tasks = json.load(open(sys.argv[2], encoding="utf-8"))
missing = [t["id"] for t in tasks for o in li.objects if t["data"].get(o.value_name) is None]
errors = [e for t in tasks for p in t.get("predictions", []) for e in li.validate_prediction(p, return_errors=True)]
bad = json.loads(json.dumps(tasks[0]["predictions"][0]))
bad["result"][0]["value"]["labels"] = ["NOT_A_LABEL"]
print(json.dumps({"tasks": len(tasks), "predictions": sum(len(t.get("predictions", [])) for t in tasks),
                  "regions": sum(len(p["result"]) for t in tasks for p in t.get("predictions", [])),
                  "missing": missing, "errors": errors,
                  "bad_label_errors": li.validate_prediction(bad, return_errors=True)}))
"""


@pytest.fixture(scope="session")
def sdk_python() -> Path:
    home = Path(sys.prefix) / "consumers" / "label-studio-sdk"
    py = home / "bin" / "python"
    ok = home / ".installed"
    if not ok.exists():
        venv.create(home, with_pip=True, clear=True)
        r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", SDK],
                           capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            pytest.skip(f"label-studio-sdk could not be installed in its own venv: {r.stderr.strip()[-300:]}")
        ok.touch()
    return py


def test_label_studio_sdk_validates_the_export(sdk_python: Path, tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    export(run, "label-studio", tmp_path / "tasks.json")
    export(run, "label-studio-config", tmp_path / "config.xml")
    r = subprocess.run([str(sdk_python), "-c", CHECK, str(tmp_path / "config.xml"), str(tmp_path / "tasks.json")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    ours = json.loads((tmp_path / "tasks.json").read_text())
    assert got["tasks"] == len(ours) > 0 and got["predictions"] == len(ours)
    assert got["regions"] == sum(len(t["predictions"][0]["result"]) for t in ours) > 0
    assert got["missing"] == [] and got["errors"] == []
    assert got["bad_label_errors"] and "NOT_A_LABEL" in got["bad_label_errors"][0]
