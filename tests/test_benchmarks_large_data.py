"""benchmarks.large_data measures what it says on a small pair: every load reports the rows it
read, and the section reports them."""

import numpy as np
import pytest

from benchmarks import large_data


def test_sizes_give_about_the_rows_asked_for():
    s = large_data.sizes(100_000_000)
    approx = 2 * s["n_overlap"] * (s["per_user_source"] + s["per_user_target"])
    assert 0.9e8 < approx <= 1.0e8 and s["n_overlap"] == 5_000_000


@pytest.mark.slow
def test_small_run_writes_the_section(tmp_path):
    report = tmp_path / "r.md"
    folder = tmp_path / "pair"
    large_data.main(
        ["--rows", "20000", "--csv-rows", "3000", "--folder", str(folder), "--report", str(report)]
    )
    text = report.read_text()
    assert "<!-- large-data:begin -->" in text and "--rows 20000 --csv-rows 3000" in text
    rows = [line for line in text.splitlines() if line.startswith("| TSV")]
    assert len(rows) == 3 and all("| 3,000 |" in r for r in rows)
    from transferjax.data.columnar import load_pair

    pair = load_pair(folder)
    n = len(pair.source) + len(pair.target)
    assert f"| {n:,} |" in text and 0.8 * 20000 < n <= 20000
    # the cache folder holds the TSV's rows, equal to reading the file
    from transferjax.data.csv import load_csv

    tsv = tmp_path / "pair-3000.tsv"
    kw = dict(user_col=0, item_col=1, rating_col=2, header=False)
    a, b = load_csv(tsv, **kw), load_csv(tsv, cache=tmp_path / "pair-cache", **kw)
    np.testing.assert_array_equal(a.user_ids[a.user], b.user_ids[b.user])
