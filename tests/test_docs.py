"""Every example in every package's docstrings runs, and every public name is documented."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil

import pytest

PACKAGES = [
    "aixgo",
    "aixgo_backend_file",
    "aixgo_backend_redis",
    "aixgo_backend_postgres",
    "aixgo_agent_react",
    "aixgo_runtime_grpc",
    "aixgo_web",
]
# The kit's modules are pytest test classes, exercised by the conformance tests themselves.
SKIP = ("aixgo.testing",)


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        root = importlib.import_module(package)
        names.append(package)
        names += [m.name for m in pkgutil.walk_packages(root.__path__, f"{package}.")]
    return sorted(n for n in names if not n.startswith(SKIP))


MODULES = _modules()


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0


@pytest.mark.parametrize("name", MODULES)
def test_every_public_name_is_documented(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__doc__, f"{name} has no module docstring"
    for public in getattr(module, "__all__", []):
        obj = getattr(module, public)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert getattr(obj, "__doc__", None), f"{name}.{public} has no docstring"


# The fence around the speed work: what a backend's users may import is what has no
# underscore, and says so with ``__all__``; internal modules say nothing of the kind.
FENCED = ("aixgo_backend_file", "aixgo_backend_redis", "aixgo_backend_postgres")


@pytest.mark.parametrize("name", [n for n in MODULES if n.startswith(FENCED)])
def test_backend_modules_are_public_with_all_or_internal_without(name: str) -> None:
    module = importlib.import_module(name)
    internal = any(part.startswith("_") for part in name.split("."))
    if internal:
        assert not hasattr(module, "__all__"), f"{name} is internal but declares __all__"
    else:
        assert hasattr(module, "__all__"), f"{name} is public but declares no __all__"
