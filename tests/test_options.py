"""Declared options, per-codec qualities, code identity in the cache key, lazy and guarded adapter loading."""

from __future__ import annotations

import math
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from bench.adapters import (
    Adapter,
    AdapterError,
    Catalog,
    Option,
    Unavailable,
    check_signature,
    declared_names,
    discover,
    parse_qualities,
    select,
)
from bench.adapters.discovery import _module_name_for
from bench.datasets import resolve_dataset
from bench.pipeline.runner import run_benchmark
from bench.store import Store

RAW = '''
import numpy as np
from bench.adapters import Option

NAME = "{name}"
FAMILY = "{family}"
VERSION = "1"
DESCRIPTION = "raw bytes with a typed option"
OPTIONS = {options}
QUALITIES = [1, 2]
QUALITY_RANGE = {quality_range}
SEEN = []


def encode(rgb, quality, **options):
    SEEN.append(options)
    h, w, _ = rgb.shape
    return h.to_bytes(2, "big") + w.to_bytes(2, "big") + rgb.tobytes()


def decode(data, **options):
    h, w = int.from_bytes(data[:2], "big"), int.from_bytes(data[2:4], "big")
    return np.frombuffer(data[4:], np.uint8).reshape(h, w, 3)
'''

TYPED = ('{"level": Option(3, type=int, minimum=1, maximum=9), "mode": Option("fast", choices=("fast", "slow")), '
         '"exact": Option(False, type=bool), "tool": Option("", key=False)}')


def plugin(folder: Path, stem: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.py"
    path.write_text(textwrap.dedent(text))
    return path


def raw(folder: Path, name: str = "raw", family: str = "conventional", options: str = TYPED,
        quality_range: str = "(0, 10, 1)", stem: str | None = None) -> Path:
    return plugin(folder, stem or name.replace("-", "_"),
                  RAW.format(name=name, family=family, options=options, quality_range=quality_range))


def forget(path: Path) -> None:
    sys.modules.pop(_module_name_for(path), None)


def only(folder: Path, spec: str, **kwargs):
    configs, skipped = select(Catalog([folder], builtin=False), [spec], **kwargs)
    assert not skipped, skipped
    return configs[0]


def test_option_parsing_and_messages():
    chroma = Option("444", choices=("444", "422", "420"))
    assert chroma.canonical("420") == "420"
    with pytest.raises(ValueError, match="must be one of 444, 422, 420"):
        chroma.parse("411")
    level = Option(3, type=int, minimum=1, maximum=9)
    assert level.canonical(" 07") == "7" and level.parse("7") == 7
    for bad, why in (("0", "at least 1"), ("10", "at most 9"), ("x", "integer"), ("2.5", "integer")):
        with pytest.raises(ValueError, match=why):
            level.parse(bad)
    flag = Option(False, type=bool)
    assert (flag.canonical("yes"), flag.canonical("0"), flag.canonical(True)) == ("true", "false", "true")
    with pytest.raises(ValueError, match="finite"):
        Option(1.0, type=float).parse("nan")


def test_hevc_spec_is_validated_once_with_a_clear_message():
    with pytest.raises(AdapterError, match=r"^hevc: chroma must be one of 444, 422, 420, got 411$"):
        select(Catalog(), ["hevc:chroma=411"])
    with pytest.raises(AdapterError, match=r"has no option chrome .*did you mean 'chroma'"):
        select(Catalog(), ["hevc:chrome=420"])


def test_typed_values_reach_the_adapter_and_key_false_stays_out_of_the_key(tmp_path):
    folder = tmp_path / "plugins"
    raw(folder)
    config = only(folder, "raw:level=07:exact=yes:tool=/opt/bin/raw")
    assert config.options == {"level": "7", "mode": "fast", "exact": "true", "tool": "/opt/bin/raw"}
    assert config.options_key == '{"exact":"true","level":"7","mode":"fast"}'
    assert config.label == "raw_exact=true_level=7"
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert np.array_equal(config.decode(config.encode(rgb, 1)), rgb)
    module = sys.modules[_module_name_for(folder / "raw.py")]
    assert module.SEEN[-1] == {"level": 7, "mode": "fast", "exact": True, "tool": "/opt/bin/raw"}
    with pytest.raises(AdapterError, match=r"^raw: level must be at most 9, got 12$"):
        select(Catalog([folder], builtin=False), ["raw:level=12"])


def test_plain_options_still_work(tmp_path):
    folder = tmp_path / "plugins"
    raw(folder, options='{"mode": "fast"}')
    assert only(folder, "raw:mode=anything").options == {"mode": "anything"}


def test_setup_resolves_key_false_options_only(tmp_path):
    folder = tmp_path / "plugins"
    path = raw(folder)
    path.write_text(path.read_text() + textwrap.dedent('''
        def setup(level, mode, exact, tool):
            return {"version": "tool sha256 abc", "options": {"tool": tool or "/resolved/tool"}}
    '''))
    config = only(folder, "raw")
    assert config.options["tool"] == "/resolved/tool" and "tool" not in config.options_key
    assert config.version.startswith("tool sha256 abc; adapter ")
    path.write_text(path.read_text().replace('{"tool": tool or "/resolved/tool"}', '{"level": "2"}'))
    forget(path)
    _, skipped = select(Catalog([folder], builtin=False), ["raw"])
    assert "only resolve options declared with key=False" in skipped[0].reason


@pytest.mark.parametrize("body,reason", [
    ("def encode(rgb, quality):\n    return b''\n\ndef decode(data, mode='fast'):\n    return data\n",
     "encode() does not accept option mode"),
    ("def encode(rgb, quality, mode, extra):\n    return b''\n\ndef decode(data, **o):\n    return data\n",
     "encode() requires extra, which OPTIONS does not declare"),
    ("def encode(rgb, **o):\n    return b''\n\ndef decode(data, **o):\n    return data\n",
     "encode() takes 1 positional argument(s), the harness passes 2"),
])
def test_options_checked_against_signatures(tmp_path, body, reason):
    folder = tmp_path / "plugins"
    plugin(folder, "sig", f'NAME = "sig"\nFAMILY = "conventional"\nVERSION = "1"\nDESCRIPTION = "d"\n'
                          f'OPTIONS = {{"mode": "fast"}}\nQUALITIES = [1]\n\n{body}')
    item = discover([folder], builtin=False)[0]
    assert isinstance(item, Unavailable) and reason in item.reason


def test_parse_qualities():
    assert parse_qualities("10..90/10") == [10, 20, 30, 40, 50, 60, 70, 80, 90]
    assert parse_qualities("22..47/5") == [22, 27, 32, 37, 42, 47]
    assert parse_qualities("0.1..0.3/0.1") == [0.1, 0.2, 0.3]
    assert parse_qualities("1..3") == [1, 2, 3]
    assert parse_qualities("10/50/90") == [10, 50, 90]
    for bad in ("nan", "inf", "10..5", "1..9/0", "1..9/-1", "x", "0..1e9/1e-9", ""):
        with pytest.raises(AdapterError):
            parse_qualities(bad)


def test_per_codec_qualities_validated_against_each_range():
    configs, _ = select(Catalog(), ["jpeg:q=10..90/10", "hevc:q=22..47/5:chroma=420"])
    assert configs[0].qualities == tuple(range(10, 91, 10)) and configs[1].qualities == (22, 27, 32, 37, 42, 47)
    assert configs[1].options["chroma"] == "420"
    with pytest.raises(AdapterError, match=r"hevc: quality 95 is outside its range 0\.\.50.*hevc:q="):
        select(Catalog(), ["jpeg", "hevc"], qualities=[50, 95])
    with pytest.raises(AdapterError, match=r"jpeg: quality 50\.5 is not on its grid"):
        select(Catalog(), ["jpeg:q=50.5"])
    with pytest.raises(AdapterError, match="not a finite number"):
        select(Catalog(), ["jpeg"], qualities=[math.nan])
    configs, _ = select(Catalog(), ["jpeg2000:q=0.05/0.33"], qualities=[50])  # continuous range
    assert configs[0].qualities == (0.05, 0.33)


def test_learned_qualities_must_have_a_model(tmp_path):
    folder = tmp_path / "plugins"
    raw(folder, name="toy-learned", family="learned", options="{}", quality_range="None")
    assert only(folder, "toy-learned:q=2").qualities == (2.0,)
    with pytest.raises(AdapterError, match=r"toy-learned: no model for quality 3 \(qualities: 1, 2\)"):
        select(Catalog([folder], builtin=False), ["toy-learned:q=1/3"])


@pytest.mark.slow
def test_code_identity_is_part_of_the_version(tmp_path, image_folder):
    folder = tmp_path / "plugins"
    path = raw(folder, options="{}")
    helper = folder / "helper_table.txt"
    helper.write_text("table 1")
    path.write_text(path.read_text() + 'CODE_FILES = ["helper_table.txt"]\n')
    first = only(folder, "raw:q=1").version
    assert first.startswith("1; adapter ") and len(first.split("adapter ")[1]) == 12
    out = tmp_path / "out"
    run_benchmark(resolve_dataset(str(image_folder)), [only(folder, "raw:q=1")], out, jobs=1, progress=False)

    path.write_text(path.read_text() + "# a comment changes the code\n")
    forget(path)  # a new process would see the edit; this one has the module cached
    second = select(Catalog([folder], builtin=False), ["raw:q=1"])[0][0]
    assert second.version != first
    report = run_benchmark(resolve_dataset(str(image_folder)), [second], out, jobs=1, progress=False)
    assert report.cached_jobs == 0 and report.done == 3, "an edited adapter recomputes"

    helper.write_text("table 2")
    forget(path)
    assert select(Catalog([folder], builtin=False), ["raw:q=1"])[0][0].version not in (first, second.version)
    with Store(out) as store:
        versions = {row[0] for row in store.conn.execute("SELECT DISTINCT version FROM measurements")}
    assert versions == {first, second.version}

    path.write_text(path.read_text().replace('["helper_table.txt"]', '["missing.txt"]'))
    forget(path)
    item = discover([folder], builtin=False)[0]
    assert isinstance(item, Unavailable) and "CODE_FILES entry 'missing.txt' not found" in item.reason


@pytest.mark.parametrize("statement", ["import sys\nsys.exit(0)", "raise SystemExit('no GPU')",
                                       "raise GeneratorExit()"])
def test_module_exiting_at_import_is_unavailable(tmp_path, statement):
    folder = tmp_path / "plugins"
    plugin(folder, "quits", f'NAME = "quits"\n{statement}\n')
    raw(folder)
    items = {i.name: i for i in discover([folder], builtin=False)}
    assert isinstance(items["quits"], Unavailable) and isinstance(items["raw"], Adapter)
    assert "Exit" in items["quits"].reason


@pytest.mark.slow
def test_sys_exit_at_import_does_not_end_run(tmp_path, image_folder, capsys):
    from bench.cli import main

    folder = tmp_path / "plugins"
    plugin(folder, "quits", 'NAME = "quits"\nimport sys\nsys.exit(0)\n')
    code = main(["run", "--dataset", str(image_folder), "--codecs-dir", str(folder), "--codecs", "quits,jpeg:q=50",
                 "--jobs", "1", "--quiet", "--metrics", "psnr-rgb", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert "skipping codec quits: unavailable (the module exited while being imported (SystemExit: 0))" in out
    assert "3 measured" in out and code in (0, 1)  # 1 if the runner counts a skipped codec as a failure


def test_only_selected_modules_are_imported(tmp_path):
    folder = tmp_path / "plugins"
    marker = tmp_path / "imported"
    plugin(folder, "noisy", f'open({str(marker)!r}, "w").close()\nNAME = "noisy"\n')
    raw(folder)
    catalog = Catalog([folder], builtin=False)
    assert catalog.names() == ["noisy", "raw"] and not marker.exists()
    configs, _ = select(catalog, ["raw"])
    assert configs[0].name == "raw" and not marker.exists()
    with pytest.raises(AdapterError, match=r"unknown codec 'rwa'.*did you mean 'raw'"):
        select(catalog, ["rwa"])
    assert not marker.exists()
    select(catalog, None)  # everything: now it is imported
    assert marker.exists()


def test_declared_names(tmp_path):
    def names(text: str):
        path = tmp_path / "m.py"
        path.write_text(textwrap.dedent(text))
        return declared_names(path)

    assert names('NAME = "a"\n') == ("a",)
    assert names('NAME = f"a{1}"\n') is None  # not a literal: import to know
    assert names('NAME = "a"\nNAME = "b"\n') is None
    assert names('try:\n    NAME = "a"\nexcept ImportError:\n    NAME = "b"\n') is None
    assert names('ADAPTERS = [x, y]\nCODEC_NAMES = ("x", "y")\n') == ("x", "y")
    assert names('ADAPTERS = [x]\nNAME = "a"\n') is None
    assert names("this is not python(") is None
    builtin = {m.stem: m.names for m in Catalog().modules}
    assert builtin["jpeg"] == ("jpeg",) and "hyperprior" in builtin["compressai_models"]
    assert all(v is not None for v in builtin.values()), "every built-in adapter is found without importing it"


def test_check_signature_accepts_kwargs_and_bound_methods():
    class Codec:
        def encode(self, rgb, quality, **options):
            return b""

    assert check_signature(Codec().encode, "encode", 2, ["a", "b"]) is None
    expected = "encode() takes 2 positional argument(s), the harness passes 3"
    assert check_signature(Codec().encode, "encode", 3, []) == expected
