"""The Ray a sync embeds: stopped whole, without waiting a second on its autoscaler monitor."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# A child process (so that Ray's start and end are its own): an embedded Ray started and stopped as a sync does,
# recording which of its processes were still running when ray.shutdown came to stop them.
CHILD = """
import json
import ray
from ray._private import node
from hugflow_ray.executors import ray_runner

reached = {}
kill = node.Node._kill_process_type

def recording(self, process_type, *args, **kwargs):
    reached[process_type] = [info.process.poll() is None for info in self.all_processes.get(process_type, [])]
    return kill(self, process_type, *args, **kwargs)

node.Node._kill_process_type = recording
ray_runner.ensure_ray(None, "hugflow_storage")
processes = {kind: [info.process for info in infos]
             for kind, infos in ray._private.worker._global_node.all_processes.items()}
ray_runner.shutdown()
print(json.dumps({"reached": reached,
                  "running_after": sorted(kind for kind, ps in processes.items() if any(p.poll() is None for p in ps))}))
"""


@pytest.mark.ray
def test_an_embedded_rays_autoscaler_monitor_is_stopped_before_ray_shutdown_waits_on_it() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    # ray.shutdown stops the raylet and the GCS first, then the rest: the monitor it would wait a second on is gone
    assert {"raylet", "gcs_server"} <= set(result["reached"]), result
    assert result["reached"].get("monitor", [False]) == [False], result
    assert result["running_after"] == [], "every process of the embedded Ray is stopped"
