"""Crashes: SIGKILL a `diziner refine` at named points, run the same command again.

The kill comes from ``diziner.testing.faults.maybe_kill`` (``DIZINER_TEST_KILL_AT=point[:N]``).
For every point: the killed process really died by SIGKILL; every JSON/JSONL/YAML file it
left parses; the resumed run ends with the same final guideline and annotations as an
uninterrupted run; and no finished call is repeated — requests counted at the server:
killed + resumed <= uninterrupted + the calls that can be in flight at the kill.
All scenarios run as parallel subprocesses; each is told apart at the server by its own
API key (the Authorization header).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from diziner.testing.faults import (
    annotator_responder,
    server_pool,
    supervisor_responder,
    synthetic_documents,
)
from diziner.testing.server import TestServer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
KEY_ENV = "DIZINER_CRASH_KEY"
LABELS = ["PER", "ORG", "LOC", "PRODUCT"]
MAX_INFLIGHT = 4  # the pool's global concurrency: at most this many calls are lost with a kill

# point[:N] -> where it is in the run
KILL_POINTS = {
    "annotate_doc:7": "iteration 0, during annotation",
    "analysis": "iteration 0, after the analysis was written",
    "supervise_phase1": "LLM supervisor, after phase 1",
    "supervise_phase3": "LLM supervisor, after phase 3",
    "supervisor": "after the supervisor outputs were written, before done.json",
    "annotate_doc:45": "final annotation of the corpus, during annotation",
    "final_write": "between final/guideline.yaml and final/guideline.md",
    "final_annotations": "after final/annotations.jsonl, before final/done.json",
}


def _all_files_parse(run: Path) -> int:
    n = 0
    for p in run.rglob("*"):
        if not p.is_file():
            continue
        text = p.read_text(encoding="utf-8")
        if p.suffix == ".json":
            json.loads(text)
        elif p.suffix == ".jsonl":
            for line in text.splitlines():
                if line.strip():
                    json.loads(line)
        elif p.suffix == ".yaml":
            yaml.safe_load(text)
        else:
            continue
        n += 1
    return n


def _outputs(run: Path) -> dict[str, str]:
    files = ["final/guideline.yaml", "final/guideline.md", "final/annotations.jsonl"]
    files += [str(p.relative_to(run)) for p in sorted((run / "final" / "by_annotator").glob("*.jsonl"))]
    files += [str(p.relative_to(run)) for p in sorted(run.glob("iterations/*/guideline.yaml"))]
    return {f: (run / f).read_text(encoding="utf-8") for f in files}


# Forks one child per job after importing the heavy modules once (a `python -m diziner`
# per job costs seconds of imports on a small machine); each child runs the CLI's main()
# with the job's argv and environment, its stderr going to the job's log file.
DRIVER = r"""
import json, os, sys
jobs = json.loads(sys.argv[1])
import diziner.cli, diziner.loop, diziner.analysis, diziner.sampling, diziner.supervise.llm
import diziner.supervise.consensus, diziner.llm.factory, diziner.llm.openai_compat, diziner.annotate.runner
import diziner.guideline_render, openai, httpx
try:
    import aiohttp
except ImportError:
    pass
pids = {}
for job in jobs:
    pid = os.fork()
    if pid == 0:
        fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 2)
        os.environ.update(job["env"])
        sys.argv = ["diziner", *job["argv"]]
        rc = 1
        try:
            rc = diziner.cli.main(job["argv"])
        finally:
            sys.stderr.flush()
            os._exit(rc)
    pids[pid] = job["name"]
rcs = {}
while pids:
    pid, status = os.wait()
    rcs[pids.pop(pid)] = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
print(json.dumps(rcs))
"""


@pytest.fixture(scope="module")
def crash_runs(tmp_path_factory):
    """Run the baseline and every kill scenario (killed, then resumed) against one server."""
    tmp = tmp_path_factory.mktemp("crash")
    texts = tmp / "texts.jsonl"
    texts.write_text("".join(json.dumps(d) + "\n" for d in synthetic_documents(20, seed=9)), encoding="utf-8")
    responder = annotator_responder(LABELS, supervisor=supervisor_responder)
    results: dict = {"scenarios": {}}
    with TestServer(responder) as srv:
        pool = server_pool(srv.base_url, ["m-alpha", "m-beta", "m-gamma"], key_env=KEY_ENV, timeout_s=5,
                           max_retries=0, supervisor_model="m-super", max_concurrency=MAX_INFLIGHT)
        pool_path = tmp / "pool.yaml"
        pool_path.write_text(yaml.safe_dump(pool), encoding="utf-8")

        def cmd(name: str) -> list[str]:
            return [sys.executable, "-m", "diziner", "refine", "--schema", str(EXAMPLES / "schema.yaml"),
                    "--texts", str(texts), "--pool", str(pool_path), "--out", str(tmp / name / "run"),
                    "--iterations", "2", "--sample-size", "5", "--patience", "5",
                    "--cache", str(tmp / name / "cache.sqlite"), "--quiet"]

        def launch(names: list[str], kill: dict[str, str | None]) -> dict[str, tuple[int, str]]:
            """Run the command once per name, in parallel, in children forked from one driver."""
            jobs = []
            for n in names:
                env = {KEY_ENV: f"sk-crash-{n}"}
                if kill.get(n):
                    env["DIZINER_TEST_KILL_AT"] = kill[n]
                (tmp / n).mkdir(exist_ok=True)
                jobs.append({"name": n, "argv": cmd(n)[3:], "env": env, "log": str(tmp / n / f"stderr-{len(list((tmp / n).glob('stderr-*')))}.txt")})
            env = {k: v for k, v in os.environ.items() if k != "DIZINER_TEST_KILL_AT"}
            p = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(jobs)], env=env, capture_output=True,
                               text=True, timeout=240, check=False)
            assert p.returncode == 0, p.stderr[-3000:]
            rcs = json.loads(p.stdout.strip().splitlines()[-1])
            return {j["name"]: (rcs[j["name"]], Path(j["log"]).read_text(errors="replace")) for j in jobs}

        def requests_by_key() -> Counter:
            return Counter(r["headers"].get("authorization", "").removeprefix("Bearer sk-crash-") for r in srv.requests)

        names = {f"k{i}": point for i, point in enumerate(KILL_POINTS)}
        # the baseline through the real command line, in its own process
        base = subprocess.run(cmd("base"), env={**{k: v for k, v in os.environ.items() if k != "DIZINER_TEST_KILL_AT"},
                                                KEY_ENV: "sk-crash-base"}, capture_output=True, text=True, timeout=240, check=False)
        assert base.returncode == 0, base.stderr
        killed = launch(list(names), names)
        calls_killed = requests_by_key()
        resumed = launch(list(names), {})
        calls_all = requests_by_key()
        # a finished run, re-run: no network call; a new run dir with the same cache: none either
        srv.reset()
        (tmp / "fresh").mkdir()
        for f in (tmp / "base").glob("cache.sqlite*"):
            shutil.copy(f, tmp / "fresh" / f.name)
        again = launch(["base", "fresh"], {})
        results["rerun_calls"] = requests_by_key()
        results["rerun_rc"] = {n: rc for n, (rc, _) in again.items()}
        results["base_calls"] = calls_all["base"]
        results["base_outputs"] = _outputs(tmp / "base" / "run")
        for n, point in names.items():
            results["scenarios"][point] = {
                "killed_rc": killed[n][0], "killed_stderr": killed[n][1],
                "killed_calls": calls_killed[n], "resumed_calls": calls_all[n] - calls_killed[n],
                "resumed_rc": resumed[n][0], "resumed_stderr": resumed[n][1],
                "run": tmp / n / "run",
            }
    return results


def test_uninterrupted_run_then_rerun_makes_no_calls(crash_runs):
    assert crash_runs["base_calls"] > 50
    # the finished run again, and a new run directory with the same cache (a copy): no network call
    assert crash_runs["rerun_rc"] == {"base": 0, "fresh": 0}
    assert sum(crash_runs["rerun_calls"].values()) == 0


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_kill_and_resume(crash_runs, point):
    sc = crash_runs["scenarios"][point]
    assert sc["killed_rc"] == -signal.SIGKILL, f"the kill at {point!r} did not happen: {sc['killed_stderr'][-500:]}"
    assert sc["resumed_rc"] == 0, sc["resumed_stderr"][-2000:]
    # nothing half-written, after the kill and after the resume
    assert _all_files_parse(sc["run"]) > 5
    # the same outputs as the uninterrupted run
    assert _outputs(sc["run"]) == crash_runs["base_outputs"]
    # no finished call repeated: only calls in flight at the kill may be made twice
    # (a request sent just before the kill may never reach the server: the kernel drops it
    # with the socket, so the sum may also fall short by at most the calls in flight)
    total = sc["killed_calls"] + sc["resumed_calls"]
    base = crash_runs["base_calls"]
    assert base - MAX_INFLIGHT <= total <= base + MAX_INFLIGHT, (sc["killed_calls"], sc["resumed_calls"], base)
    assert sc["killed_calls"] > 0
