"""The shipped Kubernetes example (examples/k8s/indexed-job.yaml) parses, and its Job runs one shard per index
with a kill delay above tgbatch's drain, its credentials from the Secret and its output on an object store."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from tgbatch.cli.run import DEFAULT_DRAIN_S

MANIFEST = Path(__file__).resolve().parents[1] / "examples" / "k8s" / "indexed-job.yaml"


def _docs() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    by_kind = {d["kind"]: d for d in docs}
    assert len(by_kind) == len(docs) and set(by_kind) == {"Secret", "ConfigMap", "Job"}, [d["kind"] for d in docs]
    return by_kind


def test_indexed_job_runs_one_shard_per_index() -> None:
    spec = _docs()["Job"]["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["backoffLimitPerIndex"] >= 1 and "backoffLimit" not in spec  # per-shard retries, not a shared pool
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"  # required by backoffLimitPerIndex: a retry is a new pod that resumes
    [container] = pod["containers"]
    script = " ".join([*container.get("command", []), *container.get("args", [])])
    # exec: tgbatch is PID 1, gets the SIGTERM and its exit code is the pod's
    assert re.search(r"\bexec tgbatch run\b", script), script
    words = shlex.split(script.split("exec ", 1)[1])
    shard = words[words.index("--shard") + 1]
    assert shard == f"${{JOB_COMPLETION_INDEX}}/{spec['completions']}", shard  # N = the number of indexes


def test_kill_delay_exceeds_the_drain_and_disruptions_are_retried() -> None:
    spec = _docs()["Job"]["spec"]
    # SIGTERM, drain, commit, exit 130, all before SIGKILL
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] >= DEFAULT_DRAIN_S + 10
    assert spec["podReplacementPolicy"] == "Failed"  # a shard's next pod waits for the last one to stop
    rules = spec["podFailurePolicy"]["rules"]
    ignored = [r for r in rules if r["action"] == "Ignore"]
    assert ignored and ignored[0]["onPodConditions"] == [{"type": "DisruptionTarget"}]
    [fail] = [r for r in rules if r["action"] == "FailIndex"]
    assert fail["onExitCodes"]["operator"] == "In" and 2 in fail["onExitCodes"]["values"]  # bad spec: no retry
    assert 130 not in fail["onExitCodes"]["values"]  # an interrupted shard resumes


def test_output_goes_to_an_object_store_with_credentials_from_the_secret() -> None:
    docs = _docs()
    pod = docs["Job"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    secret = docs["Secret"]
    assert {"secretRef": {"name": secret["metadata"]["name"]}} in container["envFrom"]
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(secret["stringData"])
    # the job file comes from the ConfigMap, mounted where the command reads it
    config = docs["ConfigMap"]
    [volume] = [v for v in pod["volumes"] if v.get("configMap", {}).get("name") == config["metadata"]["name"]]
    [mount] = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert f"tgbatch run {mount['mountPath']}/job.yaml" in " ".join(container["args"])
    job = yaml.safe_load(config["data"]["job.yaml"])
    assert job["output"]["dir"].startswith("s3://") and job["dataset"]["id_column"]
    assert set(job) <= {"name", "dataset", "template", "parameters", "seed", "endpoint", "output"}
