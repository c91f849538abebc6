"""Runs on a Dask cluster (loopback only): same results as the local pool, faults, routing, versions."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

distributed = pytest.importorskip("distributed", reason="Dask distributed is not installed (extra 'cluster')")
from distributed import LocalCluster  # noqa: E402

from bench.adapters import discover, select  # noqa: E402
from bench.cli import main  # noqa: E402
from bench.datasets import resolve_dataset  # noqa: E402
from bench.execution.cluster import DaskExecutor, batch_size  # noqa: E402
from bench.model import Job  # noqa: E402
from bench.pipeline.planning import plan_run  # noqa: E402
from bench.pipeline.runner import run_benchmark  # noqa: E402
from bench.store import DB_NAME  # noqa: E402

from .conftest import REPO  # noqa: E402
from .test_trust import _alive  # noqa: E402

pytestmark = pytest.mark.slow  # Dask clusters and worker processes start in every test

VALUES = ["image", "codec", "quality", "bytes", "bpp", "psnr-rgb", "ms-ssim-rgb"]
FAKE = """import os, time
import numpy as np
NAME = {name!r}
FAMILY = 'learned'
VERSION = os.environ.get('FAKE_VERSION', '1')
DESCRIPTION = 'test adapter: raw pixels; checks where it runs'
OPTIONS = {{'device': 'cpu'}}
QUALITIES = [1, 2, 3]
def encode(rgb, quality, device='cpu'):
    role = os.environ.get('BENCH_TEST_ROLE', 'cpu')
    if device.startswith('cuda') != (role == 'gpu'):
        raise RuntimeError(f'{{device}} job on a {{role}} worker')
    if os.environ.get('FAKE_VERSION', '1') != '1':
        raise RuntimeError('ran on a worker with another version')
    if quality == {crash_quality}:
        os._exit(3)
    time.sleep({sleep})
    return bytes(rgb) + rgb.shape[0].to_bytes(4, 'big') + rgb.shape[1].to_bytes(4, 'big')
def decode(data, device='cpu'):
    h, w = int.from_bytes(data[-8:-4], 'big'), int.from_bytes(data[-4:], 'big')
    return np.frombuffer(data[:-8], np.uint8).reshape(h, w, 3)
"""


def fake_adapter(folder: Path, name: str = "fake", crash_quality: int = 0, sleep: float = 0.0) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(FAKE.format(name=name, crash_quality=crash_quality, sleep=sleep))
    return folder


@pytest.fixture
def cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, resources={"CPU": 1}) as started, Client(started) as client:
        yield started, client


def dask_worker(address: str, resources: str, cwd: Path = REPO, **env) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", "--nworkers", "1",
           "--resources", resources, "--no-dashboard"]
    return subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def values(out: Path) -> pd.DataFrame:
    frame = pd.read_csv(out / "per_image.csv")[VALUES]
    return frame.sort_values(VALUES[:3]).reset_index(drop=True)


def rows(out: Path, table: str) -> pd.DataFrame:
    with sqlite3.connect(out / DB_NAME) as conn:
        return pd.read_sql(f"SELECT * FROM {table}", conn)


def stored(out: Path) -> int:
    """Measurements stored so far by a running run: 0 before its store and table exist (no race)."""
    if not (out / DB_NAME).exists():
        return 0
    with sqlite3.connect(out / DB_NAME) as conn:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'measurements'").fetchone():
            return 0
        return conn.execute("SELECT COUNT(*) FROM measurements").fetchone()[0]


def test_cluster_run_equals_the_local_pool(cluster, image_folder, tmp_path):
    started, client = cluster
    args = ["--dataset", str(image_folder), "--codecs", "jpeg,webp", "--qualities", "20,60", "--quiet",
            "--metrics", "psnr-rgb,ms-ssim-rgb"]
    assert main(["run", *args, "--jobs", "2", "--out", str(tmp_path / "pool")]) == 0
    with distributed.get_task_stream(client) as stream:
        assert main(["run", *args, "--scheduler", started.scheduler_address, "--out", str(tmp_path / "dask")]) == 0
    assert values(tmp_path / "dask").equals(values(tmp_path / "pool")), "bytes, bpp and metrics identical"
    keys = {task["key"] for task in stream.data}
    assert any("-batch-" in key for key in keys), "the short jobs of one codec and image share Dask tasks"
    assert len([k for k in keys if k.startswith("bench-run-task")]) < 12, "fewer Dask tasks than the 12 jobs"
    dry = subprocess.run([sys.executable, "-m", "bench", "run", *args, "--out", str(tmp_path / "dask"),
                          "--qualities", "20,60,90", "--dry-run"], cwd=REPO, capture_output=True, text=True)
    assert "18 measurements: 12 cached, 6 to run" in dry.stdout
    assert main(["run", *args, "--qualities", "20,60,90", "--scheduler", started.scheduler_address,
                 "--out", str(tmp_path / "dask")]) == 0
    assert len(rows(tmp_path / "dask", "measurements")) == 18


def test_batch_size_groups_short_jobs_and_leaves_work_for_every_slot():
    def job(seconds):
        return Job(print, None, expected_s=seconds)

    assert batch_size(job(0.05), pending=1000, slots=2) == 32, "at most MAX_BATCH jobs"
    assert batch_size(job(0.5), pending=1000, slots=2) == 10, "about BATCH_S = 5 s of expected work"
    assert batch_size(job(120.0), pending=1000, slots=2) == 1, "a long job is a task of its own"
    assert batch_size(job(None), pending=1000, slots=2) == 1, "unknown duration: alone"
    assert batch_size(job(0.05), pending=10, slots=2) == 3, "10 jobs left for 2 slots x 2 in flight"
    assert batch_size(job(0.05), pending=1, slots=8) == 1


def test_dry_run_counts_match_the_run(image_folder, tmp_path, capsys):
    configs = select(discover(), ["jpeg", "webp"])[0]
    ds = resolve_dataset(str(image_folder))
    run_benchmark(ds, configs[:1], tmp_path, qualities=[30], jobs=1, progress=False, metrics=("psnr-rgb",))
    plan = plan_run(ds, configs, tmp_path, qualities=[30, 70], metrics=("psnr-rgb",))
    assert plan.counts == {"jpeg": [6, 3, 3], "webp": [6, 0, 6]}
    report = run_benchmark(ds, configs, tmp_path, qualities=[30, 70], jobs=2, progress=False, metrics=("psnr-rgb",))
    assert (report.cached_jobs, report.done) == (3, 9)
    text = "\n".join(plan.lines(workers=4))
    assert "CPU-hours" in text and "on 4 CPU worker(s)" in text


def test_sigkill_of_a_worker_loses_and_duplicates_nothing(cluster, image_folder, tmp_path):
    _started, client = cluster
    plugins = fake_adapter(tmp_path / "p", sleep=0.4)
    configs = select(discover([plugins]), ["fake"])[0]
    out = tmp_path / "out"
    result: dict = {}

    def run() -> None:
        try:
            result["report"] = run_benchmark(resolve_dataset(str(image_folder)), configs, out, jobs=2, progress=False,
                                             metrics=("psnr-rgb",), make_executor=lambda: DaskExecutor(client))
        except BaseException as exc:  # shown by the assertion below
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.time() + 60
    while stored(out) < 2:
        assert time.time() < deadline
        time.sleep(0.1)
    pids = client.run(os.getpid)
    os.kill(next(iter(pids.values())), signal.SIGKILL)
    thread.join(180)
    assert not thread.is_alive() and "error" not in result, result.get("error")
    measured = rows(out, "measurements")
    assert len(measured) == 9 and not measured.duplicated(["image_hash", "quality"]).any()
    assert rows(out, "failures").empty
    assert result["report"].complete


def test_crashing_codec_on_a_cluster_is_one_crash_row_each(cluster, image_folder, tmp_path):
    started, _client = cluster
    plugins = fake_adapter(tmp_path / "p", crash_quality=2)
    code = main(["run", "--dataset", str(image_folder), "--codecs", "fake,jpeg", "--codecs-dir", str(plugins),
                 "--qualities", "1,2", "--scheduler", started.scheduler_address, "--out", str(tmp_path / "out"),
                 "--quiet", "--metrics", "psnr-rgb"])
    assert code == 1
    fails = rows(tmp_path / "out", "failures")
    assert len(fails) == 3 and set(fails["stage"]) == {"crash"} and set(fails["codec"]) == {"fake"}
    assert "exited with code 3" in fails["error"][0]
    assert len(rows(tmp_path / "out", "measurements")) == 3 + 6, "fake at quality 1 and jpeg at both qualities"


@contextlib.contextmanager
def cluster_with_extra_worker(resources: str, cwd: Path = REPO, **env):
    """A LocalCluster with one CPU worker, plus one `dask worker` process with ``resources`` and ``env``,
    started in ``cwd``."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                      resources={"CPU": 1}) as started, Client(started) as client:
        extra = dask_worker(started.scheduler_address, resources, cwd, **env)
        try:
            client.wait_for_workers(2, timeout=60)
            yield started, client
        finally:
            os.killpg(extra.pid, signal.SIGKILL)
            extra.wait()


def test_gpu_jobs_go_to_gpu_workers_only(image_folder, tmp_path):
    plugins = fake_adapter(tmp_path / "p")
    with cluster_with_extra_worker("GPU=1", BENCH_TEST_ROLE="gpu") as (started, _):
        code = main(["run", "--dataset", str(image_folder), "--codecs", "fake:device=cuda,fake:device=cpu",
                     "--codecs-dir", str(plugins), "--scheduler", started.scheduler_address,
                     "--out", str(tmp_path / "out"), "--quiet", "--metrics", "psnr-rgb", "--decode-check", "off"])
    assert rows(tmp_path / "out", "failures").empty, "no CUDA job on a CPU worker, no CPU job on the GPU worker"
    assert code == 0 and len(rows(tmp_path / "out", "measurements")) == 2 * 9


def _run_fake(image_folder: Path, plugins: Path, scheduler: str, out: Path) -> int:
    return main(["run", "--dataset", str(image_folder), "--codecs", "fake", "--codecs-dir", str(plugins),
                 "--scheduler", scheduler, "--out", str(out), "--quiet", "--metrics", "psnr-rgb"])


def test_late_worker_with_another_codec_version_refuses_its_jobs(image_folder, tmp_path, capsys, monkeypatch):
    """A worker that joins after the run started is checked too (per task): its jobs run elsewhere."""
    import bench.execution.cluster

    monkeypatch.setattr(bench.execution.cluster, "batch_size", lambda job, pending, slots: 1)  # one job per task, and
    monkeypatch.setattr(bench.execution.cluster, "IN_FLIGHT_PER_SLOT", 1)  # one task per worker: the late one gets some
    plugins = fake_adapter(tmp_path / "p", sleep=2.0)
    out = tmp_path / "out"
    late: list[subprocess.Popen] = []

    def join_late(address: str) -> None:
        while stored(out) < 1:
            time.sleep(0.1)
        late.append(dask_worker(address, "CPU=1", FAKE_VERSION="2"))

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                      resources={"CPU": 1}) as started:
        joiner = threading.Thread(target=join_late, args=(started.scheduler_address,), daemon=True)
        joiner.start()
        try:
            code = _run_fake(image_folder, plugins, started.scheduler_address, out)
        finally:
            joiner.join(60)
            for proc in late:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    printed = capsys.readouterr().out
    assert code == 0 and rows(out, "failures").empty
    measured = rows(out, "measurements")
    assert len(measured) == 9 and set(measured["version"]) == {measured["version"][0]}
    assert measured["version"][0].startswith("1; adapter ")
    assert "refused the fake jobs: its fake version is '2; adapter " in printed, "the late worker got a job and refused"
    assert "the client's '1; adapter " in printed and "they run on other workers" in printed


def test_jobs_wait_for_a_worker_to_join_and_end_the_run_when_none_does(image_folder, tmp_path, monkeypatch):
    """With no worker connected (a killed one restarting, a node not yet up), pending jobs wait
    ``WORKER_WAIT_S`` for one to join; when none does, the run ends with ``ClusterError``."""
    from distributed import Client

    import bench.execution.cluster

    configs = select(discover([fake_adapter(tmp_path / "p")]), ["fake"])[0]
    dataset = resolve_dataset(str(image_folder))
    with LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=None) as started, Client(started) as client:
        def run(out: Path):
            return run_benchmark(dataset, configs, out, jobs=1, progress=False, metrics=("psnr-rgb",),
                                 check_decode="off", make_executor=lambda: DaskExecutor(client))

        monkeypatch.setattr(bench.execution.cluster, "WORKER_WAIT_S", 1.0)
        needed = r"the CPU resource needed by 9 job\(s\) \(waited 1 s\)"
        with pytest.raises(bench.execution.cluster.ClusterError, match=needed):
            run(tmp_path / "none")
        monkeypatch.setattr(bench.execution.cluster, "WORKER_WAIT_S", 120.0)
        late: list[subprocess.Popen] = []
        timer = threading.Timer(5.0, lambda: late.append(dask_worker(started.scheduler_address, "CPU=1")))
        timer.start()
        try:
            report = run(tmp_path / "late")
        finally:
            timer.join()
            for proc in late:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert report.failed == 0 and len(rows(tmp_path / "late", "measurements")) == 9


def _bench_copy(tmp_path: Path) -> Path:
    """A copy of the harness (the ``bench`` package) with one file edited, as on a worker that differs."""
    import shutil

    import bench

    root = tmp_path / "other-harness"
    shutil.copytree(Path(bench.__file__).parent, root / "bench", ignore=shutil.ignore_patterns("__pycache__"))
    with open(root / "bench" / "pipeline" / "measure.py", "a") as f:
        f.write("\n# edited on this worker only\n")
    return root


def test_worker_with_other_harness_code_refuses_and_alone_ends_the_run_with_1(image_folder, tmp_path, capsys):
    plugins = fake_adapter(tmp_path / "p")
    other = _bench_copy(tmp_path)
    with cluster_with_extra_worker("CPU=1", cwd=other, PYTHONPATH=str(other)) as (started, client):
        assert _run_fake(image_folder, plugins, started.scheduler_address, tmp_path / "mixed") == 0
        printed = capsys.readouterr().out
        assert "refused the fake jobs: its harness file(s) bench/pipeline/measure.py differ from the client's" \
            in printed
        assert len(rows(tmp_path / "mixed", "measurements")) == 9 and rows(tmp_path / "mixed", "failures").empty
        client.retire_workers([nanny.worker_address for nanny in started.workers.values()])  # the good one
        code = _run_fake(image_folder, plugins, started.scheduler_address, tmp_path / "other")
    message = capsys.readouterr().err
    assert code == 1, "no worker with the client's code: the run ends incomplete"
    assert "no connected worker has the client's code for fake: worker tcp://" in message
    assert "bench/pipeline/measure.py" in message
    assert stored(tmp_path / "other") == 0


def test_killed_client_resumes_from_the_store(cluster, image_folder, tmp_path):
    started, client = cluster
    plugins = fake_adapter(tmp_path / "p", sleep=0.5)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "bench", "run", "--dataset", str(image_folder), "--codecs", "fake",
           "--codecs-dir", str(plugins), "--scheduler", started.scheduler_address, "--out", str(out), "--quiet",
           "--metrics", "psnr-rgb"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    while stored(out) < 2:
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    before = rows(out, "measurements").set_index(["image_hash", "quality"])["created"]
    assert 2 <= len(before) < 9
    configs = select(discover([plugins]), ["fake"])[0]
    report = run_benchmark(resolve_dataset(str(image_folder)), configs, out, jobs=2, progress=False,
                           metrics=("psnr-rgb",), make_executor=lambda: DaskExecutor(client))
    assert (report.cached_jobs, report.done) == (len(before), 9 - len(before))
    after = rows(out, "measurements").set_index(["image_hash", "quality"])["created"]
    assert len(after) == 9 and after[before.index].equals(before), "finished rows were not recomputed"


def _worker_settings() -> tuple:
    import dask

    return os.environ.get("BENCH_THREADS"), dask.config.get("distributed.worker.profile.enabled")


def bench_worker(address: str) -> subprocess.Popen:
    """`python -m bench worker ADDRESS --jobs 1 --threads 1` in its own session."""
    return subprocess.Popen([sys.executable, "-m", "bench", "worker", address, "--jobs", "1", "--threads", "1"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def test_bench_worker_command_starts_configured_workers():
    """`python -m bench worker`: a Dask worker with the CPU resource, its threads and Dask settings."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=None) as started, Client(started) as client:
        proc = bench_worker(started.scheduler_address)
        try:
            client.wait_for_workers(1, timeout=60)
            [info] = client.scheduler_info(n_workers=-1)["workers"].values()
            assert info["resources"] == {"CPU": 1}
            assert list(client.run(_worker_settings).values()) == [("1", False)]
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


KILLER = """import os, signal
import numpy as np
NAME = 'killer'
FAMILY = 'conventional'
VERSION = '1'
DESCRIPTION = 'test adapter: raw pixels; at quality 2 it kills the Dask worker running it'
QUALITIES = [1, 2, 3, 4]
def encode(rgb, quality):
    if quality == 2:
        os.kill(os.getppid(), signal.SIGKILL)  # the job's process is a child of the Dask worker
    return bytes(rgb) + rgb.shape[0].to_bytes(4, 'big') + rgb.shape[1].to_bytes(4, 'big')
def decode(data):
    h, w = int.from_bytes(data[-8:-4], 'big'), int.from_bytes(data[-4:], 'big')
    return np.frombuffer(data[:-8], np.uint8).reshape(h, w, 3)
"""


def test_job_that_kills_its_worker_is_found_in_its_batch(image_folder, tmp_path, monkeypatch):
    """A batch that Dask gives up on is split; only the job that kills workers becomes a crash row."""
    import dask
    from distributed import Client, LocalCluster

    import bench.execution.cluster

    # all four jobs in one batch, one task in flight: no other task shares the worker that dies
    monkeypatch.setattr(bench.execution.cluster, "batch_size", lambda job, pending, slots: 4)
    monkeypatch.setattr(bench.execution.cluster, "IN_FLIGHT_PER_SLOT", 1)
    plugins = tmp_path / "p"
    plugins.mkdir()
    (plugins / "killer.py").write_text(KILLER)
    one = tmp_path / "one"
    one.mkdir()
    (one / "coffee.png").write_bytes((image_folder / "coffee.png").read_bytes())
    configs = select(discover([plugins]), ["killer"])[0]
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                         dashboard_address=None, resources={"CPU": 1}) as started, Client(started) as client:
        report = run_benchmark(resolve_dataset(str(one)), configs, tmp_path / "out", jobs=1, progress=False,
                               metrics=("psnr-rgb",), check_decode="off", make_executor=lambda: DaskExecutor(client))
    fails = rows(tmp_path / "out", "failures")
    assert list(fails["quality"]) == [2.0] and list(fails["stage"]) == ["crash"]
    assert "KilledWorker" in fails["error"][0]
    assert sorted(rows(tmp_path / "out", "measurements")["quality"]) == [1.0, 3.0, 4.0]
    assert report.failed == 1


def _descendants(pid: int) -> list[int]:
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(c) for c in children] + [d for c in children for d in _descendants(int(c))]


def test_sigterm_to_bench_worker_ends_its_dask_workers():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=None) as started, Client(started) as client:
        proc = bench_worker(started.scheduler_address)
        try:
            client.wait_for_workers(1, timeout=60)
            started_processes = _descendants(proc.pid)
            assert started_processes, "the Dask worker processes run under bench worker"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 143
            deadline = time.time() + 30
            while any(_alive(p) for p in started_processes) and time.time() < deadline:
                time.sleep(0.2)
            assert not [p for p in started_processes if _alive(p)], "no Dask worker outlives bench worker"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()



def test_lost_scheduler_is_one_line_and_exit_status_1(image_folder, tmp_path):
    scheduler_file = tmp_path / "scheduler.json"
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--scheduler-file",
                                  str(scheduler_file), "--port", "0", "--no-dashboard"], cwd=REPO,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    worker = None
    try:
        deadline = time.time() + 60
        while not scheduler_file.exists():
            assert time.time() < deadline, "the scheduler did not start"
            time.sleep(0.2)
        worker = bench_worker(json.loads(scheduler_file.read_text())["address"])
        out = tmp_path / "out"
        run = subprocess.Popen([sys.executable, "-m", "bench", "run", "--dataset", str(image_folder),
                                "--codecs", "fake", "--codecs-dir", str(fake_adapter(tmp_path / "p", sleep=0.5)),
                                "--scheduler-file", str(scheduler_file), "--out", str(out), "--quiet",
                                "--metrics", "psnr-rgb"],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "3s"})
        while stored(out) < 1:
            assert time.time() < deadline + 60 and run.poll() is None
            time.sleep(0.1)
        os.killpg(scheduler.pid, signal.SIGKILL)
        _, err = run.communicate(timeout=120)
    finally:
        for proc in (scheduler, worker):
            if proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert run.returncode == 1, f"the run did not measure everything; its stderr: {err}"
    assert err.splitlines() == ["error: lost the Dask scheduler; every finished measurement is saved: run the same "
                                "command again to continue"], "one line, no traceback first"
    assert 1 <= stored(out) < 9
