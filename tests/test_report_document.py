"""The report's document model: one list of typed blocks, rendered as Markdown (report.md) and HTML
(report.html), compared with the exact text written out here."""

import dataclasses

import pytest

from bench.report.document import (
    BulletList,
    Caption,
    Figure,
    Heading,
    Links,
    Notes,
    Paragraph,
    Table,
    Warnings,
    render_html,
    render_markdown,
)


@pytest.fixture
def blocks(tmp_path):
    png = tmp_path / "rd_psnr-rgb.png"
    png.write_bytes(b"PNG!")  # base64: UE5HIQ==
    return [
        Heading(1, "Codec benchmark: kodak & co"),
        Paragraph("BD-rate < 0: fewer bits"),
        Caption("Table 1. BD-rate (%)"),
        Table(["codec", "bpp"], [["jpeg", "0.500"], ["<webp>", "1.000"]]),
        Notes(["jpeg, psnr-y: n/a", "webp: 3 points"]),
        Notes([]),  # no footnotes: nothing at all in either rendering
        BulletList(["learned: -20 %", "conventional: +5 %"]),
        Warnings(["webp: 2 hosts"]),
        Links(["rd_psnr-rgb.png", "rd_psnr-rgb.svg"]),
        Figure("psnr-rgb", png),
        Heading(2, "Settings"),
        BulletList([]),  # an empty list still takes its place in Markdown (an empty paragraph)
    ]


def test_markdown(blocks):
    assert render_markdown(blocks) == (
        "# Codec benchmark: kodak & co\n"
        "\n"
        "BD-rate < 0: fewer bits\n"
        "\n"
        "Table 1. BD-rate (%)\n"
        "\n"
        "| codec | bpp |\n"
        "|---|---|\n"
        "| jpeg | 0.500 |\n"
        "| <webp> | 1.000 |\n"
        "\n"
        "[1] jpeg, psnr-y: n/a  \n"
        "[2] webp: 3 points  \n"
        "\n"
        "- learned: -20 %\n"
        "- conventional: +5 %\n"
        "\n"
        "- **Warning:** webp: 2 hosts\n"
        "\n"
        "- rd_psnr-rgb.png\n"
        "- rd_psnr-rgb.svg\n"
        "\n"
        "![psnr-rgb](rd_psnr-rgb.png)\n"
        "\n"
        "## Settings\n"
        "\n"
    )


def test_html(blocks):
    assert render_html(blocks) == (
        "<h1>Codec benchmark: kodak &amp; co</h1>\n"
        "<p class='p'>BD-rate &lt; 0: fewer bits</p>\n"
        "<p class='caption'>Table 1. BD-rate (%)</p>\n"
        "<table><thead><tr><th>codec</th><th>bpp</th></tr></thead><tbody>"
        "<tr><td>jpeg</td><td>0.500</td></tr><tr><td>&lt;webp&gt;</td><td>1.000</td></tr></tbody></table>\n"
        "<ol class='notes'><li>jpeg, psnr-y: n/a</li><li>webp: 3 points</li></ol>\n"
        "<ul class='family'><li>learned: -20 %</li><li>conventional: +5 %</li></ul>\n"
        "<div class='warn'><b>Fair-comparison warnings</b><ul><li>webp: 2 hosts</li></ul></div>\n"
        "<p><a href='rd_psnr-rgb.png'>rd_psnr-rgb.png</a> · <a href='rd_psnr-rgb.svg'>rd_psnr-rgb.svg</a></p>\n"
        "<figure><img class='figure' alt='psnr-rgb' src='data:image/png;base64,UE5HIQ=='>"
        "<figcaption>psnr-rgb</figcaption></figure>\n"
        "<h2>Settings</h2>\n"
        "<ul class='family'></ul>"
    )


def test_blocks_are_frozen_records():
    heading = Heading(2, "Summary")
    with pytest.raises(dataclasses.FrozenInstanceError):
        heading.text = "other"  # type: ignore[misc]
    assert heading == Heading(2, "Summary")
    assert render_markdown([]) == render_html([]) == ""
