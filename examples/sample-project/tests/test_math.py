import time

import pytest


@pytest.mark.parametrize("n", range(12))
def test_square(n: int) -> None:
    time.sleep(0.02 + 0.01 * (n % 4))
    assert n * n == n**2


@pytest.mark.parametrize("a,b", [(1, 2), (3, 4), (10, -3), (0, 0)])
def test_add_commutes(a: int, b: int) -> None:
    time.sleep(0.05)
    assert a + b == b + a


class TestDivision:
    def test_exact(self) -> None:
        time.sleep(0.1)
        assert 10 / 2 == 5

    def test_by_zero(self) -> None:
        time.sleep(0.05)
        with pytest.raises(ZeroDivisionError):
            _ = 1 / 0
