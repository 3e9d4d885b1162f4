"""Every example in the package's docstrings runs, and every public name is documented."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil

import aixgo_backend_postgres
import pytest

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(aixgo_backend_postgres.__path__, "aixgo_backend_postgres.")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0


def test_every_public_name_is_documented() -> None:
    for name in MODULES:
        module = importlib.import_module(name)
        assert module.__doc__, f"{name} has no module docstring"
        for public in getattr(module, "__all__", []):
            obj = getattr(module, public)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                assert getattr(obj, "__doc__", None), f"{name}.{public} has no docstring"
