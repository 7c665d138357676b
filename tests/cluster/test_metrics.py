"""hugflow's metrics on real servers on loopback: a `ray start --head` with a metrics export port, a real Prometheus
(the Debian package) with cluster/monitoring's config and rules, and the embedded Ray's dashboard.

Ray reports metrics every RAY_metrics_report_interval_ms: 1 s here (head and driver), so the figures appear in
about a second; the tests poll for a condition, never sleep a fixed time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from hugflow_ray.copies.ledger import Ledger
from tests import datasets_fixtures as fx
from tests.ray_nodes import MEMORY, TOKEN, Node, answers, free_port

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "cluster" / "monitoring"
FAST_METRICS = {"RAY_metrics_report_interval_ms": "1000"}
HUGFLOW_METRICS = (
    "ray_hugflow_rows_converted_total", "ray_hugflow_audio_seconds_total", "ray_hugflow_row_errors_total",
    "ray_hugflow_mp3_written_bytes_total", "ray_hugflow_output_busy_seconds_total", "ray_hugflow_source_bytes_total",
    "ray_hugflow_rows_pending", "ray_hugflow_audio_seconds_per_second",
)
DEADLINE_SECONDS = 60
SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)")


def scrape(port: int) -> list[tuple[str, dict[str, str], float]]:
    """The samples of a Prometheus text endpoint: (name, labels, value)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    samples = []
    for line in text.splitlines():
        if line.startswith("#") or not (match := SAMPLE.match(line)):
            continue
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group("labels") or ""))
        samples.append((match.group("name"), labels, float(match.group("value"))))
    return samples


def total(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(v for n, ls, v in samples if n == name and all(ls.get(k) == x for k, x in labels.items()))


@pytest.fixture(scope="module")
def head() -> Iterator[Node]:
    port = free_port()
    # With its dashboard: the dashboard writes the scrape targets' service-discovery file Prometheus reads.
    node = Node(["--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2", *MEMORY,
                 "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={free_port()}",
                 '--resources={"hugflow_storage": 1}'], env=FAST_METRICS)
    discovery = Path(node.temp_dir) / "prom_metrics_service_discovery.json"
    node.wait_until(lambda: answers(port) and answers(node.metrics_port) and discovery.is_file(), "the head")
    node.gcs = f"127.0.0.1:{port}"  # type: ignore[attr-defined]
    try:
        yield node
    finally:
        node.kill()


def prometheus_config(head: Node, work: Path) -> Path:
    """cluster/monitoring's Prometheus config as the head's operator would run it, for this test's head: its
    service-discovery file, and a 1 s scrape and evaluation interval."""
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    (sd_config,) = config["scrape_configs"][0]["file_sd_configs"]
    sd_config.update(files=[str(Path(head.temp_dir) / "prom_metrics_service_discovery.json")], refresh_interval="1s")
    shutil.copy(MONITORING / "hugflow.rules.yml", work / "hugflow.rules.yml")
    path = work / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def query(prometheus: str, promql: str) -> dict:
    """Prometheus' HTTP API answer to an instant query (its status and data, or its error)."""
    url = f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return json.load(answer)
    except urllib.error.HTTPError as e:
        return json.load(e)


@pytest.fixture(scope="module")
def prometheus(head: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus (the Debian package: .ci/run installs it) scraping the head with cluster/monitoring's
    config and recording rules."""
    work = tmp_path_factory.mktemp("prometheus")
    config = prometheus_config(head, work)
    port = free_port()
    process = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={work / 'data'}",
                                f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not _ready(url):
        assert process.poll() is None and time.monotonic() < deadline, "prometheus did not start"
        time.sleep(0.2)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=5) as answer:
            return answer.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def synced(head: Node, prometheus: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One dataset with good rows and row errors of several codes, synced on the head while Prometheus scrapes it:
    the driver pauses after its first block until Prometheus holds a sample (so it sees the counters rise), and
    after its last block, so every process that recorded a metric is still alive when the tests scrape."""
    root = tmp_path_factory.mktemp("metrics")
    shards = [fx.parquet_bytes(fx.speech_records(12), fx.speech_features(), row_group_size=3),
              fx.parquet_bytes(fx.mixed_records(), fx.mixed_features(), row_group_size=3)]
    source = fx.write_local_dataset(root / "source", shards)
    request = root / "requests" / "add" / "metrics.yaml"
    request.parent.mkdir(parents=True)
    request.write_text(f"path: {source}\ndescription: metrics test\naudio_column: audio\n")
    first, release = root / "first", root / "release"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")}, **FAST_METRICS,
           "RAY_ADDRESS": head.gcs, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN,  # type: ignore[attr-defined]
           "STORAGE_ROOT": str(root / "out"), "STATE_DIR": str(root / "state"), "MAX_ROW_ERROR_RATE": "1",
           "PROCESSED_ROOT": str(root / "processed"), "PROGRESS_INTERVAL": "1",
           "HUGFLOW_FAILPOINT": f"pause:rows-written:{first},pause:all-written:{release}"}
    sync = subprocess.Popen([sys.executable, "-m", "hugflow_ray", "local-sync", str(request)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _wait(lambda: Path(f"{first}.reached").exists(), sync)
    (dataset,) = (root / "out").iterdir()
    _wait(lambda: bool(query(prometheus, f'ray_hugflow_rows_converted_total{{dataset="{dataset.name}"}}')["data"]
                       ["result"]), sync)
    first.touch()
    _wait(lambda: Path(f"{release}.reached").exists(), sync)
    yield {"dataset": dataset, "records": Ledger(dataset).records(), "env": env}
    release.touch()
    output = sync.communicate(timeout=300)[0]
    assert sync.returncode == 0, output


def _wait(condition: Callable[[], bool], sync: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        if sync.poll() is not None:  # it ended: its whole output can be read
            pytest.fail(sync.stdout.read() if sync.stdout else f"the sync ended with {sync.returncode}")
        assert time.monotonic() < deadline, f"the sync did not reach the expected point in {DEADLINE_SECONDS} s"
        time.sleep(0.2)


def test_the_metrics_port_shows_every_hugflow_metric_equal_to_the_ledger(head: Node, synced: dict) -> None:
    dataset: Path = synced["dataset"]  # type: ignore[assignment]
    records = synced["records"]
    ok = [r for r in records if r.status.value == "ok"]
    errors: dict[str, int] = {}
    for r in records:
        if r.status.value != "ok":
            errors[r.error_code] = errors.get(r.error_code, 0) + 1
    assert len(ok) > 0 and len(errors) >= 2, "the dataset must have rows and row errors of several codes"
    mp3_bytes = sum((dataset / r.audio_file).stat().st_size for r in ok if r.audio_file)
    name = dataset.name

    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:  # Ray reports each process's metrics every second: wait until the last report has arrived
        samples = scrape(head.metrics_port)
        seen = {n for n, ls, _ in samples if ls.get("dataset") == name}
        if set(HUGFLOW_METRICS) <= seen and total(samples, "ray_hugflow_rows_converted_total", dataset=name) == len(
                ok) and total(samples, "ray_hugflow_mp3_written_bytes_total", dataset=name) == mp3_bytes and total(
                samples, "ray_hugflow_rows_pending", dataset=name) == 0 and total(
                samples, "ray_hugflow_row_errors_total", dataset=name) == sum(errors.values()):
            break  # (the last block may hold only row errors: its rows converted are already counted)
        assert time.monotonic() < deadline, f"after {DEADLINE_SECONDS} s: {sorted(seen)}"
        time.sleep(0.5)
    mine = sorted((n, ls.get("node", ""), ls.get("code", ""), v) for n, ls, v in samples if ls.get("dataset") == name)
    print("scrape excerpt:", *(f"{n} node={node} code={code} {v:g}" for n, node, code, v in mine), sep="\n  ")
    for code, count in errors.items():
        assert total(samples, "ray_hugflow_row_errors_total", dataset=name, code=code) == count, code
    assert total(samples, "ray_hugflow_row_errors_total", dataset=name) == sum(errors.values())
    audio = sum(r.duration or 0.0 for r in ok)
    assert total(samples, "ray_hugflow_audio_seconds_total", dataset=name) == pytest.approx(audio, rel=1e-6)
    assert total(samples, "ray_hugflow_rows_pending", dataset=name) == 0
    assert total(samples, "ray_hugflow_audio_seconds_per_second", dataset=name) > 0
    assert total(samples, "ray_hugflow_output_busy_seconds_total", dataset=name) > 0
    sources = sum(p.stat().st_size for p in (dataset.parent.parent / "source").rglob("*.parquet"))
    assert total(samples, "ray_hugflow_source_bytes_total", dataset=name) == sources
    nodes = {ls["node"] for n, ls, _ in samples
             if n == "ray_hugflow_rows_converted_total" and ls.get("dataset") == name}
    assert len(nodes) == 1 and len(next(iter(nodes))) == 12


def test_prometheus_records_hugflow_throughput_with_clusters_config_and_rules(prometheus: str, synced: dict) -> None:
    name = synced["dataset"].name  # type: ignore[attr-defined]
    for rule in ("hugflow:audio_hours_per_hour:rate5m", "hugflow:rows_per_second:rate5m"):
        deadline = time.monotonic() + DEADLINE_SECONDS
        while not (result := query(prometheus, f'{rule}{{dataset="{name}"}}')["data"]["result"]) or float(
                result[0]["value"][1]) <= 0:
            assert time.monotonic() < deadline, f"{rule}: {result}"
            time.sleep(0.5)
    print("prometheus:", rule, result)
    # The error series may appear with all its rows at once (no increase inside the window): the ratio is then 0.
    ratio = query(prometheus, f'hugflow:row_error_ratio:rate5m{{dataset="{name}"}}')["data"]["result"]
    assert ratio and 0 <= float(ratio[0]["value"][1]) < 1


def test_promtool_accepts_the_config_and_rules_and_prometheus_every_grafana_query(head: Node, prometheus: str,
                                                                                  tmp_path: Path) -> None:
    config = prometheus_config(head, tmp_path)
    checked = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True)
    assert checked.returncode == 0 and "SUCCESS" in checked.stdout, checked.stdout + checked.stderr
    rules = subprocess.run(["promtool", "check", "rules", str(MONITORING / "hugflow.rules.yml")],
                           capture_output=True, text=True)
    assert rules.returncode == 0 and "SUCCESS: 5 rules found" in rules.stdout, rules.stdout + rules.stderr
    dashboard = json.loads((MONITORING / "grafana-hugflow.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    variable = dashboard["templating"]["list"][1]["definition"]
    metric, label = re.fullmatch(r"label_values\((.+), (\w+)\)", variable).groups()
    exprs.append(f"count by ({label}) ({metric})")  # what Grafana asks Prometheus for the variable's values
    assert len(exprs) == len(dashboard["panels"]) + 1
    for expr in exprs:
        answer = query(prometheus, expr.replace("$dataset", ".*"))
        assert answer["status"] == "success", (expr, answer)
    broken = query(prometheus, 'sum by (dataset (rate(ray_hugflow_rows_converted_total[5m]))')
    assert broken["status"] == "error", "a broken expression must be refused: the check above can fail"


def test_status_states_the_rate_and_eta_the_progress_file_holds(synced: dict) -> None:
    """Mid-sync (paused after the last block), `hugflow status` reads the same rate and ETA as the progress file,
    which the PR comment shows too (hugflow_ray/core/throughput.py defines them once)."""
    dataset: Path = synced["dataset"]  # type: ignore[assignment]
    env = {k: v for k, v in synced["env"].items() if k != "HUGFLOW_FAILPOINT"}  # type: ignore[union-attr]
    progress = json.loads((Path(env["STATE_DIR"]) / "progress" / f"{dataset.name}.json").read_text())
    assert progress["rows_per_second"] > 0 and progress["eta_seconds"] == 0
    shown = subprocess.run([sys.executable, "-m", "hugflow_ray", "status"], env=env, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert f"{dataset.name}: {progress['rows_per_second']:,.1f} rows/s, about 0:00:00 left" in shown.stdout


def test_local_sync_dashboard_serves_the_dashboard_while_it_runs_then_exits_on_enter(tmp_path: Path) -> None:
    source = fx.write_local_dataset(tmp_path / "source", [fx.parquet_bytes(
        fx.speech_records(8), fx.speech_features(), row_group_size=2)])
    request = tmp_path / "requests" / "add" / "watch.yaml"
    request.parent.mkdir(parents=True)
    request.write_text(f"path: {source}\ndescription: dashboard test\n")
    release, port = tmp_path / "release", free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")}, "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": TOKEN, "STORAGE_ROOT": str(tmp_path / "out"), "STATE_DIR": str(tmp_path / "state"),
           "PROCESSED_ROOT": str(tmp_path / "processed"), "HUGFLOW_FAILPOINT": f"pause:rows-written:{release}"}
    sync = subprocess.Popen([sys.executable, "-m", "hugflow_ray", "local-sync", str(request), "--dashboard",
                             "--dashboard-port", str(port), "--dashboard-wait", "120"], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait(lambda: Path(f"{release}.reached").exists(), sync)
    api = urllib.request.Request(f"http://127.0.0.1:{port}/api/version",
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(api, timeout=30) as answer:
        assert answer.status == 200 and "ray_version" in json.load(answer)
    release.touch()
    out, err = sync.communicate("\n", timeout=300)  # Enter, as an operator at the terminal would press it
    assert sync.returncode == 0, out + err
    assert f"Ray dashboard: http://127.0.0.1:{port}" in err and "until you press Enter" in err
    assert "completed (8 rows" in out


def test_the_printed_dashboard_url_opens_in_a_browser_with_the_token_the_hint_names_and_waits_without_a_terminal(
        tmp_path: Path) -> None:
    """`local-sync --dashboard < /dev/null` (a script, nohup): the sync is done, the dashboard stays for its wait; a
    person follows the printed hint to Ray's token, opens the printed URL in a browser and finds the sync's job."""
    from tests.browser import RAY_TOKEN_COOKIE, page_text

    source = fx.write_local_dataset(tmp_path / "source", [fx.parquet_bytes(
        fx.speech_records(4), fx.speech_features(), row_group_size=2)])
    request = tmp_path / "requests" / "add" / "browsed.yaml"
    request.parent.mkdir(parents=True)
    request.write_text(f"path: {source}\ndescription: dashboard test\n")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")}, "HOME": str(tmp_path / "home"),
           "STORAGE_ROOT": str(tmp_path / "out"), "STATE_DIR": str(tmp_path / "state"),
           "PROCESSED_ROOT": str(tmp_path / "processed")}  # Ray makes its own token, in HOME as it does by default
    sync = subprocess.Popen([sys.executable, "-m", "hugflow_ray", "local-sync", str(request), "--dashboard",
                             "--dashboard-port", str(free_port()), "--dashboard-wait", "600"], env=env, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert sync.stderr is not None
        lines = []
        for line in sync.stderr:
            lines.append(line)
            if "the dashboard stays at" in line:
                break
        announced = next(line for line in lines if line.startswith("Ray dashboard: "))
        url = re.search(r"http://127\.0\.0\.1:\d+", announced)
        assert url is not None and "`ray get-auth-token`" in announced, announced
        token = subprocess.run([str(Path(sys.executable).with_name("ray")), "get-auth-token"], env=env,
                               capture_output=True, text=True, timeout=120, check=True).stdout.strip()
        assert token and token not in "".join(lines)
        jobs = page_text(f"{url.group(0)}/#/jobs", cookies={RAY_TOKEN_COOKIE: token},
                         until=lambda text: "browsed.yaml" in text)
        assert "browsed.yaml" in jobs and "Authentication Token Required" not in jobs, jobs[:2000]
        assert sync.poll() is None, "the dashboard's wait ended without a terminal, before its timeout"
    finally:
        # SIGTERM, as a script or a service manager stops it, ends the wait (the sync itself is done). Not SIGINT: a
        # suite run as a background job starts its children with SIGINT ignored (the shell's rule, see test_faults).
        sync.send_signal(signal.SIGTERM)
        try:
            out, err = sync.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            sync.kill()
            out, err = sync.communicate()
            pytest.fail(f"local-sync did not end within 120 s of SIGTERM after its dashboard wait: {err[-3000:]}")
    assert sync.returncode == 0, out + err
    assert "completed (4 rows" in out
