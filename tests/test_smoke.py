import numpy as np

import cygrad as cg


def test_info_runs(capsys):
    cg.show_config()
    out = capsys.readouterr().out
    assert "cygrad" in out and "openmp" in out and "isa" in out


def test_gradcheck_catches_wrong_gradient():
    x = np.array([1.0, 2.0, -0.5])
    cg.testing.gradcheck(lambda x: float(np.sum(x ** 3)), [x], [3 * x ** 2])
    try:
        cg.testing.gradcheck(lambda x: float(np.sum(x ** 3)), [x], [2 * x ** 2])
    except AssertionError:
        pass
    else:
        raise AssertionError("gradcheck accepted a wrong gradient")
