"""Never a wrong, stale or half-written number: hostile adapters, killed processes, damaged stores."""

from __future__ import annotations

import os
import signal
import sqlite3
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.adapters import discover, select
from bench.cli import main
from bench.datasets import resolve_dataset
from bench.pipeline.inputs import TMP_PREFIX
from bench.pipeline.runner import run_benchmark
from bench.store import DB_NAME, Store, StoreError

from .conftest import REPO

HEADER = "import numpy as np\nNAME={name!r}\nFAMILY='conventional'\nVERSION='1'\nDESCRIPTION='hostile test adapter'\n"
# A lossless reference codec the hostile adapters start from: raw pixels plus the shape.
RAW = (
    "def _raw(rgb):\n"
    "    return bytes(rgb) + rgb.shape[0].to_bytes(4, 'big') + rgb.shape[1].to_bytes(4, 'big')\n"
    "def _unraw(data):\n"
    "    h, w = int.from_bytes(data[-8:-4], 'big'), int.from_bytes(data[-4:], 'big')\n"
    "    return np.frombuffer(data[:-8], np.uint8).reshape(h, w, 3).copy()\n"
)


def adapter(folder: Path, name: str, body: str, qualities=(1, 2)) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(HEADER.format(name=name) + f"QUALITIES={list(qualities)}\n" + RAW + body)
    return folder


def run(folder: Path, images: Path, out: Path, codecs: str, *extra: str) -> int:
    return main(["run", "--dataset", str(images), "--codecs", codecs, "--codecs-dir", str(folder), "--out", str(out),
                 "--quiet", *extra])


def stored(out: Path) -> pd.DataFrame:
    with sqlite3.connect(out / DB_NAME) as conn:
        return pd.read_sql("SELECT * FROM measurements", conn)


def failures(out: Path) -> pd.DataFrame:
    with sqlite3.connect(out / DB_NAME) as conn:
        return pd.read_sql("SELECT * FROM failures", conn)


@pytest.mark.slow
def test_adapter_writing_into_its_input_fails_alone(tmp_path, image_folder, capsys):
    """Finding 1: an in-place write used to corrupt the other codecs' stored results."""
    plugins = adapter(tmp_path / "p", "scribbler", "def encode(rgb, quality):\n    rgb += 1\n    return _raw(rgb)\n"
                      "def decode(data):\n    return _unraw(data)\n")
    out = tmp_path / "out"
    assert run(plugins, image_folder, out, "scribbler,jpeg", "--qualities", "50", "--jobs", "1") == 1
    text = capsys.readouterr().out
    assert "adapter 'scribbler' wrote into its input image, which is read-only" in text
    jpeg = stored(out)
    assert set(jpeg["codec"]) == {"jpeg"} and len(jpeg) == 3
    for row in jpeg.itertuples():  # each stored JPEG size equals an independent encode of the untouched file
        name = next(p for p in image_folder.iterdir() if Image.open(p).size == (row.width, row.height))
        independent = select(discover(), ["jpeg"])[0][0].encode(np.asarray(Image.open(name).convert("RGB")), 50)
        assert row.bytes == len(independent)


@pytest.mark.slow
def test_decoder_that_does_not_read_the_bytes_is_caught(tmp_path, image_folder, capsys):
    """Finding 5: a decoder returning the image from a module variable was stored as PSNR inf."""
    plugins = adapter(tmp_path / "p", "cheat",
                      "_LAST = None\n"
                      "def encode(rgb, quality):\n    global _LAST\n    _LAST = np.array(rgb)\n    return b'x'\n"
                      "def decode(data):\n    return _LAST if _LAST is not None else np.zeros((1, 1, 3), np.uint8)\n",
                      qualities=(1,))
    out = tmp_path / "out"
    assert run(plugins, image_folder, out, "cheat", "--jobs", "2", "--metrics", "psnr-rgb") == 1
    fails = failures(out)
    assert "decode-not-from-bytes" in set(fails["stage"])
    assert "decoding the bytes in a fresh process failed" in capsys.readouterr().out
    assert stored(out).empty, "one failed check discards the configuration's rows, also those measured before it"
    assert len(fails) == 3 and set(fails["stage"]) == {"decode-not-from-bytes"}
    assert run(plugins, image_folder, tmp_path / "all", "cheat", "--decode-check", "all", "--metrics", "psnr-rgb") == 1
    assert stored(tmp_path / "all").empty and len(failures(tmp_path / "all")) == 3


@pytest.mark.slow
def test_non_deterministic_encoder_is_noted(tmp_path, image_folder, capsys):
    plugins = adapter(tmp_path / "p", "noisy",
                      "import os\ndef encode(rgb, quality):\n    n = os.urandom(1)[0] % 200 + 1\n"
                      "    return _raw(rgb) + os.urandom(n) + bytes([n])\n"
                      "def decode(data):\n    return _unraw(data[:-1 - data[-1]])\n",
                      qualities=(1,))
    out = tmp_path / "out"
    run(plugins, image_folder, out, "noisy", "--jobs", "1", "--metrics", "psnr-rgb", "--decode-check", "off")
    assert "noisy is not deterministic" in capsys.readouterr().out
    with Store(out, writer=False) as store:
        info = {c.label: c.info for c in store.codecs()}
    assert "not deterministic" in info["noisy"]["notes"]


@pytest.mark.slow
def test_hanging_adapter_times_out_and_the_run_goes_on(tmp_path, image_folder, capsys):
    """Finding 6: a hang blocked the run forever."""
    plugins = adapter(tmp_path / "p", "hang", "import time\ndef encode(rgb, quality):\n"
                      "    if quality == 2:\n        time.sleep(3600)\n    return _raw(rgb)\n"
                      "def decode(data):\n    return _unraw(data)\n")
    out = tmp_path / "out"
    start = time.monotonic()
    assert run(plugins, image_folder, out, "hang", "--jobs", "2", "--timeout", "2", "--metrics", "psnr-rgb") == 1
    assert time.monotonic() - start < 120
    fails = failures(out)
    assert list(fails["stage"]) == ["timeout"] * 3 and set(fails["quality"]) == {2.0}
    assert len(stored(out)) == 3, "quality 1 measured on every image"
    assert "no result after 2 s" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_segfault_is_one_crash_row_and_innocent_jobs_are_kept(tmp_path, image_folder, jobs):
    """Finding 7: with --jobs 1 a segfault ended the command; in a pool, jobs beside it were stored as crash."""
    plugins = adapter(tmp_path / "p", "segv", "import os, signal, time\ndef encode(rgb, quality):\n"
                      "    if quality == 2 and rgb.shape[0] == 192:\n        os.kill(os.getpid(), signal.SIGSEGV)\n"
                      "    time.sleep(0.2)\n    return _raw(rgb)\n"
                      "def decode(data):\n    return _unraw(data)\n", qualities=(1, 2, 3))
    out = tmp_path / "out"
    assert run(plugins, image_folder, out, "segv", "--jobs", jobs, "--metrics", "psnr-rgb") == 1
    fails = failures(out)
    assert len(fails) == 1 and fails["stage"][0] == "crash" and fails["quality"][0] == 2.0
    assert "SIGSEGV" in fails["error"][0]
    assert len(stored(out)) == 8


@pytest.mark.slow
def test_failures_are_retried_unless_asked_not_to(tmp_path, image_folder):
    flag = tmp_path / "broken"
    flag.write_text("1")
    plugins = adapter(tmp_path / "p", "flaky", f"import os\ndef encode(rgb, quality):\n"
                      f"    if os.path.exists({str(flag)!r}):\n        raise OSError('transient')\n"
                      "    return _raw(rgb)\n"
                      "def decode(data):\n    return _unraw(data)\n", qualities=(1,))
    out = tmp_path / "out"
    assert run(plugins, image_folder, out, "flaky", "--metrics", "psnr-rgb") == 1
    flag.unlink()
    assert run(plugins, image_folder, out, "flaky", "--metrics", "psnr-rgb", "--no-retry-failures") == 1
    assert len(stored(out)) == 0 and len(failures(out)) == 3
    assert run(plugins, image_folder, out, "flaky", "--metrics", "psnr-rgb") == 0, "a transient fault heals"
    assert len(stored(out)) == 3 and len(failures(out)) == 0


@pytest.mark.slow
def test_exit_codes(tmp_path, image_folder, capsys):
    out = tmp_path / "out"
    assert run(tmp_path, image_folder, out, "jpeg", "--qualities", "50") == 0
    assert run(tmp_path, image_folder, out, "jpeg", "--qualities", "50") == 0, "fully cached: still complete"
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "broken.png").write_bytes(b"not an image")
    assert run(tmp_path, empty, tmp_path / "o2", "jpeg", "--qualities", "50") == 1
    assert "no image could be loaded" in capsys.readouterr().err
    plugins = adapter(tmp_path / "p", "missing", "raise ImportError('libfoo is not installed')\n")
    assert run(plugins, image_folder, out, "jpeg,missing", "--qualities", "50") == 1
    assert "a requested codec was skipped" in capsys.readouterr().err


def _png_claiming(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height but holds one row of data (a decompression-bomb stand-in)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100))
                     + chunk(b"IEND", b""))


@pytest.mark.slow
def test_decompression_bomb_is_skipped_by_name(tmp_path, image_folder, capsys):
    """Finding 8: one image claiming 15000x13000 aborted the run with a traceback."""
    _png_claiming(image_folder / "bomb.png", 15000, 13000)
    out = tmp_path / "out"
    assert run(tmp_path, image_folder, out, "jpeg", "--qualities", "50") == 0
    text = capsys.readouterr().out
    assert "bomb.png: header claims 15000x13000 = 195 MP, above the limit" in text
    assert len(stored(out)) == 3


def test_memory_bounds_concurrency():
    from bench.execution import LocalExecutor
    from bench.model import CodeIdentity, ImageRef, Job, Task

    image = ImageRef("big", "0" * 64, 4000, 3000, "/nonexistent.npy")
    task = Task(origin="", options={}, label="x", family="conventional", image=image, code=CodeIdentity((), (), ""))
    executor = LocalExecutor(cpu_workers=4, memory_budget=int(task.memory_bytes * 1.5))
    assert executor._fits(Job(len, task)), "one job always runs"
    executor.busy = [type("W", (), {"job": Job(len, task)})()]
    assert not executor._fits(Job(len, task)), "a second one does not fit in 1.5 jobs' memory"
    executor.busy = []


@pytest.mark.slow
def test_store_refuses_damage_and_other_datasets(tmp_path, image_folder, capsys):
    """Finding 4."""
    out = tmp_path / "out"
    out.mkdir()
    (out / DB_NAME).write_bytes(b"")
    (out / "per_image.csv").write_text("precious\n")
    assert run(tmp_path, image_folder, out, "jpeg", "--qualities", "50") == 2
    assert "is empty (0 bytes), not a result store: move it away" in capsys.readouterr().err
    assert (out / "per_image.csv").read_text() == "precious\n", "surviving files are not overwritten"
    (out / DB_NAME).write_bytes(b"SQLite format 3\0" + os.urandom(4000))
    assert run(tmp_path, image_folder, out, "jpeg", "--qualities", "50") == 2
    assert "is damaged" in capsys.readouterr().err
    assert main(["report", str(out)]) == 2
    assert "is damaged" in capsys.readouterr().err

    good = tmp_path / "good"
    assert run(tmp_path, image_folder, good, "jpeg", "--qualities", "50") == 0
    assert main(["run", "--dataset", "sample", "--codecs", "jpeg", "--qualities", "50", "--out", str(good),
                 "--quiet"]) == 2
    assert "holds results of dataset 'images'" in capsys.readouterr().err


def test_store_lock_and_snapshot(tmp_path):
    with Store(tmp_path) as writer:
        with pytest.raises(StoreError, match=f"another run \\(pid {os.getpid()}\\) is writing"):
            Store(tmp_path)
        writer.set_meta("x", 1)
        with Store(tmp_path, writer=False) as reader:
            assert reader.live_writer == os.getpid()
            assert reader.get_meta("x") == 1
            writer.set_meta("x", 2)
            assert reader.get_meta("x") == 1, "a reader sees one consistent snapshot"
    with Store(tmp_path, writer=False) as reader:
        assert reader.live_writer is None and reader.get_meta("x") == 2


def test_killed_writer_store_is_checked(tmp_path):
    """A store whose writer never closed it is integrity-checked; a damaged page is refused."""
    script = (f"import os\nfrom bench.store import Store\ns = Store({str(tmp_path)!r})\n"
              "s.conn.execute('CREATE TABLE big (x BLOB)')\n"
              "s.conn.executemany('INSERT INTO big VALUES (?)', [(os.urandom(3000),) for _ in range(200)])\n"
              "s.conn.commit()\nos._exit(0)\n")
    subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True)
    with Store(tmp_path) as store:  # checked and fine
        assert store.conn.execute("SELECT COUNT(*) FROM big").fetchone()[0] == 200
        store.conn.execute("INSERT OR REPLACE INTO meta VALUES ('writer', '1')")  # as if killed again
        store.conn.commit()
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    # a closed store has no writer mark: put it back, then damage a page in the middle of the table
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('writer', '1')")
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray((tmp_path / DB_NAME).read_bytes())
    page = 4096
    data[page * 60 + 8: page * 60 + 200] = os.urandom(192)
    (tmp_path / DB_NAME).write_bytes(bytes(data))
    with pytest.raises(StoreError, match="damaged"):
        Store(tmp_path)


@pytest.mark.slow
def test_failed_export_keeps_previous_files(tmp_path, image_folder, monkeypatch, capsys):
    """Finding 3: outputs were written in place; a kill or a full disk left them cut or empty."""
    out = tmp_path / "out"
    assert run(tmp_path, image_folder, out, "jpeg,webp", "--qualities", "50") == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.suffix in (".csv", ".json")}

    def disk_full(self, path, *args, **kwargs):
        Path(path).write_text("dataset,image\nhalf,")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", disk_full)
    assert run(tmp_path, image_folder, out, "jpeg,webp", "--qualities", "50,60") == 1
    assert "writing the result files failed ([Errno 28] No space left on device); the previous files are left " \
           "intact" in capsys.readouterr().err
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.suffix in (".csv", ".json")}
    assert after == before, "previous files intact, no temporary file left"
    assert not [p for p in out.iterdir() if ".tmp" in p.name], "no temporary file left"


def _workers_of(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[1].startswith("Z"))


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_killed_parent_takes_its_workers_and_temp_files(tmp_path, image_folder, sig):
    """Finding 6: SIGTERM or kill -9 left workers running and /tmp/bench-images-* behind (Ctrl-C: exit 130)."""
    plugins = adapter(tmp_path / "p", "slow", "import time\ndef encode(rgb, quality):\n    time.sleep(3600)\n"
                      "def decode(data):\n    return _unraw(data)\n", qualities=(1,))
    cmd = [sys.executable, "-m", "bench", "run", "--dataset", str(image_folder), "--codecs", "slow",
           "--codecs-dir", str(plugins), "--jobs", "2", "--out", str(tmp_path / "out"), "--quiet"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while len(_workers_of(proc.pid)) < 2 and time.time() < deadline:
        time.sleep(0.1)
    workers = _workers_of(proc.pid)
    assert len(workers) >= 2
    temp = [p for p in Path("/tmp").glob(f"{TMP_PREFIX}{proc.pid}-*")]
    assert temp
    proc.send_signal(sig)
    code = proc.wait(30)
    assert code == {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGKILL: -9}[sig]
    deadline = time.time() + 10
    while any(_alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers), "workers end with their parent"
    if sig == signal.SIGKILL:  # nothing can clean up after kill -9: the next run does
        run_benchmark(resolve_dataset(str(image_folder)), select(discover(), ["jpeg"])[0], tmp_path / "o2",
                      qualities=[50], jobs=1, progress=False)
    assert not any(p.exists() for p in temp)


def test_store_of_an_older_version_is_read_after_an_upgrade(tmp_path):
    """A report on a folder written before host/machine/metric seconds existed (no run in between)."""
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.executescript("""
        CREATE TABLE measurements (image_hash TEXT, codec TEXT, options TEXT, version TEXT, quality REAL,
            bytes INTEGER, bpp REAL, width INTEGER, height INTEGER, encode_s REAL, decode_s REAL, metric_s REAL,
            device TEXT, created TEXT, PRIMARY KEY (image_hash, codec, options, version, quality));
        CREATE TABLE metrics (image_hash TEXT, codec TEXT, options TEXT, version TEXT, quality REAL, metric TEXT,
            value REAL, PRIMARY KEY (image_hash, codec, options, version, quality, metric));
        CREATE TABLE codecs (label TEXT PRIMARY KEY, codec TEXT, options TEXT, version TEXT, family TEXT,
            description TEXT, updated TEXT);
        CREATE TABLE images (dataset TEXT, name TEXT, image_hash TEXT, width INTEGER, height INTEGER, path TEXT,
            conversions TEXT, PRIMARY KEY (dataset, name));
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
        INSERT INTO measurements VALUES ('h', 'jpeg', '{}', 'v', 50, 100, 0.5, 40, 40, 0.1, 0.1, 0.1, 'cpu', 'now');
        INSERT INTO metrics VALUES ('h', 'jpeg', '{}', 'v', 50, 'psnr-rgb', 30.0);
        INSERT INTO codecs VALUES ('jpeg', 'jpeg', '{}', 'v', 'conventional', 'JPEG', 'now');
        INSERT INTO images VALUES ('old', 'a', 'h', 40, 40, '/a.png', '[]');
    """)
    conn.commit()
    conn.close()
    with Store(tmp_path, writer=False) as store:
        [row] = list(store.rows("old"))
    assert (row["bytes"], row["psnr-rgb"], row["host"]) == (100, 30.0, "")
