"""The "Adding a codec" example (docs/adding-a-codec.md) is a working adapter; the README names the two commands."""

import re

import pytest

from bench.adapters import Adapter, discover, select
from bench.datasets import resolve_dataset
from bench.pipeline.runner import run_benchmark

from .conftest import REPO


@pytest.mark.slow
def test_readme_example_adapter(tmp_path, image_folder):
    page = (REPO / "docs" / "adding-a-codec.md").read_text()
    section = page.split("# Adding a codec", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    plugins = tmp_path / "mycodecs"
    plugins.mkdir()
    (plugins / "jpeg_progressive.py").write_text(code)
    items = {a.name: a for a in discover([plugins])}
    assert isinstance(items["jpeg-progressive"], Adapter)
    configs, _ = select(list(items.values()), ["jpeg-progressive:subsampling=4:4:4"])
    report = run_benchmark(resolve_dataset(str(image_folder)), configs, tmp_path / "out", qualities=[50],
                           jobs=1, progress=False)
    assert report.done == 3 and report.failed == 0
    readme = (REPO / "README.md").read_text()
    assert "make bench" in readme and "make test" in readme
