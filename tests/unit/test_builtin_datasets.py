"""The built-in datasets' sizes, which the API checks specs against without loading the data,
are the data's own."""

from __future__ import annotations

import sys

import pytest

from service.datasets import builtin


@pytest.mark.parametrize("name", builtin.NAMES)
def test_a_builtin_datasets_stated_sizes_are_its_datas(name: str) -> None:
    arrays = builtin.load(name)
    info = builtin.info(name)
    assert info.n_samples == arrays.x.shape[0] == arrays.y.shape[0]
    assert info.feature_shape == tuple(arrays.x.shape[1:])
    if info.task == "classification":
        assert info.n_classes == int(arrays.y.max()) + 1
        assert sorted(set(arrays.y.tolist())) == list(range(info.n_classes))
    else:
        assert info.n_classes is None
    if info.image_shape is not None:
        c, h, w = info.image_shape
        assert c * h * w == info.feature_shape[0]


def test_knowing_a_builtin_datasets_sizes_loads_nothing() -> None:
    """The API validates a spec of a built-in dataset without scikit-learn (and scipy), which
    cost a process's first such POST ~1 s."""
    code = (
        "import sys; from service.datasets import builtin; "
        "[builtin.info(n) for n in builtin.NAMES]; "
        "assert 'sklearn' not in sys.modules and 'scipy' not in sys.modules, 'imported'"
    )
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
