"""benchmarks.scaling: the figures of one device and of four (the test process's fake CPU
devices) come from the same training: same steps, same metrics up to summation order; on the
"model" axis each device holds a quarter of the tables."""

import jax
import pytest

from benchmarks import scaling


@pytest.mark.slow
def test_worker_reports_the_same_run_on_one_and_four_devices():
    if jax.local_device_count() < 4:
        pytest.skip("needs 4 local devices (tests/conftest.py sets 4 fake CPU devices)")
    one, four = (scaling.worker(n, users=200, epochs=1, configs=["mf_sparse"])[0] for n in (1, 4))
    assert one["devices"] == 1 and four["devices"] == 4
    assert one["steps"] == four["steps"] > 0
    assert four["test_rmse"] == pytest.approx(one["test_rmse"], rel=1e-5)
    for k in ("args_mb", "temp_mb", "out_mb", "step_ms"):
        assert one[k] > 0 and four[k] > 0
    with pytest.raises(SystemExit):
        scaling.main(["--configs", "nope"])


@pytest.mark.slow
def test_worker_reports_a_quarter_of_the_tables_per_device_on_model_4():
    if jax.local_device_count() < 4:
        pytest.skip("needs 4 local devices (tests/conftest.py sets 4 fake CPU devices)")
    one, four = (
        scaling.worker(n, users=200, epochs=1, configs=["mf_sparse"], axis="model")[0]
        for n in (1, 4)
    )
    assert four["axis"] == "model" and one["steps"] == four["steps"] > 0
    assert four["table_mb"] == pytest.approx(one["table_mb"] / 4) and one["table_mb"] > 0
    assert four["test_rmse"] == pytest.approx(one["test_rmse"], rel=1e-5)
