"""Trust, round 2 (issue 20): hostile adapters that reach past the harness's guards, injected for real."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.adapters import discover, select
from bench.cli import main
from bench.pipeline.inputs import IMAGES_LOCK, TMP_PREFIX, remove_stale_temp_dirs
from bench.store import DB_NAME

from .conftest import REPO, photo
from .test_trust import adapter, failures, run, stored


def process_gone(pid: int) -> bool:
    """No such process, or only a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.slow
def test_timeout_kills_the_jobs_children(tmp_path, image_folder):
    """An encoder's external tool (here `sleep`) must not outlive its job's timeout."""
    pids = tmp_path / "pids"
    pids.mkdir()
    plugins = adapter(tmp_path / "p", "spawner",
                      "import subprocess, time\n"
                      f"PIDS = {str(pids)!r}\n"
                      "def encode(rgb, quality):\n"
                      "    child = subprocess.Popen(['sleep', '300'])\n"
                      "    open(f'{PIDS}/{child.pid}', 'w').close()\n"
                      "    time.sleep(3600)\n"
                      "def decode(data):\n    return _unraw(data)\n", qualities=(1,))
    assert run(plugins, image_folder, tmp_path / "out", "spawner", "--jobs", "2", "--timeout", "2",
               "--metrics", "psnr-rgb") == 1
    assert set(failures(tmp_path / "out")["stage"]) == {"timeout"}
    children = [int(p.name) for p in pids.iterdir()]
    assert len(children) == 3 and all(process_gone(pid) for pid in children), "no orphaned tool keeps running"


POISON = {
    "base": "    top = rgb\n    while top.base is not None:\n        top = top.base\n"
            "    top.flags.writeable = True\n    top[...] = 0\n",
    "ctypes": "    import ctypes\n    ctypes.memset(rgb.ctypes.data, 0, rgb.nbytes)\n",
}


@pytest.mark.slow
@pytest.mark.parametrize("how", sorted(POISON))
def test_adapter_poisoning_the_cached_original_is_blamed_alone(tmp_path, image_folder, capsys, how):
    plugins = adapter(tmp_path / "p", "poison",
                      "def encode(rgb, quality):\n" + POISON[how] + "    return _raw(rgb)\n"
                      "def decode(data):\n    return _unraw(data)\n", qualities=(50,))
    out = tmp_path / "out"
    assert run(plugins, image_folder, out, "poison,jpeg", "--qualities", "50", "--jobs", "1",
               "--metrics", "psnr-rgb") == 1
    fails = failures(out)
    assert set(fails["codec"]) == {"poison"} and len(fails) == 3
    assert all("adapter 'poison' modified its input image" in e for e in fails["error"])
    jpeg = stored(out)
    assert set(jpeg["codec"]) == {"jpeg"} and len(jpeg) == 3
    encoder = select(discover(), ["jpeg"])[0][0]
    for row in jpeg.itertuples():  # each stored JPEG size equals an independent encode of the untouched file
        path = next(p for p in image_folder.iterdir() if Image.open(p).size == (row.width, row.height))
        assert row.bytes == len(encoder.encode(np.asarray(Image.open(path).convert("RGB")), 50))


@pytest.mark.slow
@pytest.mark.parametrize("where", ["cwd", "tmpdir"])
def test_decoder_reading_its_encoders_file_fails_with_the_reason(tmp_path, image_folder, where):
    folder = "'.'" if where == "cwd" else "tempfile.gettempdir()"
    plugins = adapter(tmp_path / "p", "leftover",
                      "import os, tempfile\n"
                      "def encode(rgb, quality):\n"
                      f"    np.save(os.path.join({folder}, 'state.npy'), np.array(rgb))\n"
                      "    return b'x'\n"
                      "def decode(data):\n"
                      f"    return np.load(os.path.join({folder}, 'state.npy'))\n", qualities=(1,))
    out = tmp_path / "out"
    assert run(plugins, image_folder, out, "leftover", "--jobs", "1", "--metrics", "psnr-rgb") == 1
    fails = failures(out)
    assert set(fails["stage"]) == {"decode"} and len(fails) == 3 and stored(out).empty
    assert all("without the files its encoder wrote" in e for e in fails["error"])


@pytest.mark.slow
def test_setup_that_changes_directory_does_not_move_the_results(tmp_path, image_folder):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    adapter(tmp_path / "p", "wanderer",
            f"import os\ndef setup():\n    os.chdir({str(elsewhere)!r})\n    return {{}}\n"
            "def encode(rgb, quality):\n    return _raw(rgb)\ndef decode(data):\n    return _unraw(data)\n")
    work = tmp_path / "work"
    work.mkdir()
    os.symlink(image_folder, work / "images")
    result = subprocess.run([sys.executable, "-m", "bench", "run", "--dataset", "images", "--codecs", "wanderer",
                             "--codecs-dir", str(tmp_path / "p"), "--out", "out", "--quiet", "--metrics", "psnr-rgb"],
                            cwd=work, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(stored(work / "out")) == 6 and not (elsewhere / "out").exists()


@pytest.mark.slow
def test_undecodable_file_names_and_exception_text_are_stored_escaped(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(photo(48, 64, "coffee")).save(os.fsdecode(bytes(images) + b"/caf\xe9.png"))
    Image.fromarray(photo(48, 64, "chelsea")).save(images / "plain.png")
    plugins = adapter(tmp_path / "p", "mumbler", "def encode(rgb, quality):\n"
                      "    raise ValueError('bad \\udcff text ' + repr(b'\\xff\\xfe'))\n"
                      "def decode(data):\n    return _unraw(data)\n", qualities=(1,))
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "bench", "run", "--dataset", str(images), "--codecs",
                             "mumbler,jpeg:q=50", "--codecs-dir", str(plugins), "--out", str(out), "--quiet",
                             "--metrics", "psnr-rgb", "--jobs", "1"], cwd=REPO, capture_output=True, timeout=300,
                            env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert result.returncode == 1 and b"Traceback" not in result.stderr
    assert b"bad \\udcff text b'\\xff\\xfe'" in result.stdout
    assert len(stored(out)) == 2 and len(failures(out)) == 2, "both images measured by jpeg, both failed by mumbler"
    assert "bad \\udcff text" in failures(out)["error"][0]
    assert "caf\\udce9" in (out / "per_image.csv").read_text(encoding="utf-8")


@pytest.mark.slow
def test_stale_codec_file_is_removed_when_the_current_version_has_no_result(tmp_path, image_folder):
    plugins = adapter(tmp_path / "p", "fickle", "def encode(rgb, quality):\n    return _raw(rgb)\n"
                      "def decode(data):\n    return _unraw(data)\n", qualities=(1,))
    out = tmp_path / "out"
    assert run(plugins, image_folder, out, "fickle,jpeg", "--qualities", "1", "--metrics", "psnr-rgb") == 0
    assert (out / "fickle.json").is_file() and (out / "jpeg.json").is_file()
    adapter(plugins, "fickle", "def encode(rgb, quality):\n    raise RuntimeError('broken edit')\n"
            "def decode(data):\n    return _unraw(data)\n", qualities=(1,))
    assert run(plugins, image_folder, out, "fickle,jpeg", "--qualities", "1", "--metrics", "psnr-rgb") == 1
    assert not (out / "fickle.json").exists(), "the old version's file does not pass for the current one"
    assert (out / "jpeg.json").is_file() and "fickle" not in set(pd.read_csv(out / "per_image.csv")["codec"])


@pytest.mark.slow
def test_an_export_failing_midway_changes_no_file(tmp_path, image_folder, monkeypatch, capsys):
    out = tmp_path / "out"
    assert run(tmp_path, image_folder, out, "jpeg,webp", "--qualities", "50", "--metrics", "psnr-rgb") == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    from bench.store import export

    def fail_on_webp(summary, codec, *args):
        if codec.label == "webp":
            raise OSError(28, "No space left on device")
        return real(summary, codec, *args)

    real = export.compressai_json
    monkeypatch.setattr(export, "compressai_json", fail_on_webp)
    assert run(tmp_path, image_folder, out, "jpeg,webp", "--qualities", "50,60", "--metrics", "psnr-rgb") == 1
    assert "No space left on device" in capsys.readouterr().err
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != DB_NAME + "-wal"}
    changed = {n for n in before if n.endswith((".csv", ".json")) and before[n] != after.get(n)}
    assert not changed, f"new CSVs were written beside old JSONs: {changed}"
    assert not [p for p in out.iterdir() if p.name.startswith(".staging-") or ".tmp" in p.name]


@pytest.mark.slow
def test_temporary_files_of_a_killed_run_are_removed_by_the_next(tmp_path, image_folder):
    out = tmp_path / "out"
    assert run(tmp_path, image_folder, out, "jpeg", "--qualities", "50", "--metrics", "psnr-rgb") == 0
    (out / ".per_image.csv.k1ll3d.tmp.csv").write_text("half")
    (out / ".staging-abc123").mkdir()
    assert run(tmp_path, image_folder, out, "jpeg", "--qualities", "50", "--metrics", "psnr-rgb") == 0
    assert not [p for p in out.iterdir() if p.name.startswith(".staging-") or ".tmp" in p.name]


def test_image_folders_are_owned_by_their_lock_not_a_pid(tmp_path, image_folder, monkeypatch):
    """A live run in another PID namespace (its pid unknown here) keeps its folder; a dead run's goes."""
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    live, dead = tmp_path / "tmp" / f"{TMP_PREFIX}999999-live", tmp_path / "tmp" / f"{TMP_PREFIX}1-dead"
    for folder in (live, dead):
        folder.mkdir()
        (folder / IMAGES_LOCK).touch()
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time\n"
                               f"f = open({str(live / IMAGES_LOCK)!r})\nfcntl.flock(f, fcntl.LOCK_EX)\n"
                               "print('locked', flush=True)\ntime.sleep(600)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        import tempfile
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
        remove_stale_temp_dirs()
        assert live.is_dir() and not dead.exists()
    finally:
        holder.kill()
        holder.wait()
    remove_stale_temp_dirs()
    assert not live.exists()


@contextlib.contextmanager
def mounted(folder: Path, *options: str):
    """A real mount (tmpfs, or a read-only bind): the suite runs as root in CI; skip where mounting is refused."""
    folder.mkdir(parents=True, exist_ok=True)
    made = subprocess.run(["mount", *options, str(folder)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount here ({made.stderr.strip() or 'mount failed'}): the fault needs a real file system")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.mark.slow
def test_read_only_results_folder_is_reported_as_read_only(tmp_path, image_folder, capsys):
    out = tmp_path / "out"
    assert run(tmp_path, image_folder, out, "jpeg", "--qualities", "50", "--metrics", "psnr-rgb") == 0
    with mounted(out, "--bind", str(out)):
        remount = subprocess.run(["mount", "-o", "remount,ro,bind", str(out)], capture_output=True, text=True)
        if remount.returncode != 0:
            pytest.skip(f"cannot remount read-only: {remount.stderr.strip()}")
        capsys.readouterr()
        assert run(tmp_path, image_folder, out, "jpeg", "--qualities", "50,60", "--metrics", "psnr-rgb") == 2
        err = capsys.readouterr().err
        assert "is read-only" in err and "damaged" not in err and len(err.strip().splitlines()) == 1
        assert main(["report", str(out), "--bootstrap", "0"]) == 2
        err = capsys.readouterr().err
        assert "is read-only" in err and "damaged" not in err
        assert len(__import__("bench").load(out).per_image) == 3, "the store is still readable"


@pytest.mark.slow
def test_full_disk_is_one_line_and_the_store_stays_intact(tmp_path, image_folder, capsys):
    with mounted(tmp_path / "small", "-t", "tmpfs", "-o", "size=2m", "tmpfs") as disk:
        out = disk / "out"
        assert run(tmp_path, image_folder, out, "jpeg", "--qualities", "50", "--metrics", "psnr-rgb") == 0
        (disk / "filler").write_bytes(b"\0" * (disk_free(disk) - 200_000))
        capsys.readouterr()
        code = run(tmp_path, image_folder, out, "jpeg:q=1..100/1,webp:q=1..100/1", "--metrics", "psnr-rgb",
                   "--jobs", "1")
        err = capsys.readouterr().err
        assert code == 2 and "is full" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
        (disk / "filler").unlink()
        with sqlite3.connect(out / DB_NAME) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            kept = conn.execute("SELECT COUNT(*) FROM measurements").fetchone()[0]
        assert kept >= 3, "what was stored before the disk filled is kept"


def disk_free(folder: Path) -> int:
    return shutil.disk_usage(folder).free


@pytest.mark.slow
def test_damaged_page_found_after_opening_is_one_line_with_the_recovery_command(tmp_path, image_folder, capsys):
    out = tmp_path / "out"
    assert run(tmp_path, image_folder, out, "jpeg", "--qualities", "10..90/10", "--metrics", "psnr-rgb") == 0
    with sqlite3.connect(out / DB_NAME) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
    data = bytearray((out / DB_NAME).read_bytes())
    page = len(data) // pages
    for n in range(2, pages):  # every page but the schema's: the store opens, its reads hit the damage
        data[page * n + 8: page * n + 100] = os.urandom(92)
    (out / DB_NAME).write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["report", str(out), "--bootstrap", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is damaged" in err and ".recover" in err and str(out) in err


@pytest.mark.slow
def test_adapter_edited_during_a_run_stops_it_with_1(tmp_path, image_folder, capsys):
    """Point 2 on one machine: a worker process started after the edit (here the fresh decode-check
    process) runs other code than the rows' version; it refuses, and the run ends incomplete."""
    plugins = adapter(tmp_path / "p", "editor",
                      "def encode(rgb, quality):\n"
                      "    with open(__file__, 'a') as f:\n"
                      "        f.write('\\n# edited while the run measures\\n')\n"
                      "    return _raw(rgb)\n"
                      "def decode(data):\n    return _unraw(data)\n", qualities=(1,))
    out = tmp_path / "out"
    assert run(plugins, image_folder, out, "editor", "--jobs", "1", "--metrics", "psnr-rgb") == 1
    message = capsys.readouterr().err
    assert "a worker process of this run refused the editor jobs: its editor adapter file(s) editor.py differ " \
           "from the client's: the code changed since this run started" in message
    versions = set(stored(out)["version"])
    assert len(versions) <= 1, "rows of one code version only (those measured before the edit was seen)"
