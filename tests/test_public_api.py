"""The declared public API (seizurewatch/api.py): every name it declares imports, is the object its home module
defines, and the README's Python examples import from it and nothing else."""

from __future__ import annotations

import ast
import importlib
import re

import pytest
from conftest import ROOT

import seizurewatch.api as api


def test_every_declared_name_imports_and_is_its_home_modules_object():
    assert sorted(api.__all__) == sorted(api._WHERE), "__all__ and the lazy table name the same things"
    for name in api.__all__:
        home = importlib.import_module(api._WHERE[name])
        assert getattr(api, name) is getattr(home, name), name
    ns: dict = {}
    exec("from seizurewatch.api import *", ns)  # noqa: S102 - the star import a notebook would do
    assert set(api.__all__) <= set(ns)
    with pytest.raises(AttributeError, match="no attribute 'Outbox'"):
        api.Outbox  # noqa: B018 - internal: not in the API


def readme_snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), flags=re.S)


def test_readme_python_examples_import_the_public_api_only():
    snippets = readme_snippets()
    assert snippets, "the README has Python examples"
    imported = []
    for code in snippets:
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("seizurewatch"):
                assert node.module == "seizurewatch.api", f"README imports internal module {node.module}"
                mod = importlib.import_module(node.module)
                for alias in node.names:
                    assert alias.name in api.__all__ and getattr(mod, alias.name) is not None, alias.name
                    imported.append(alias.name)
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("seizurewatch") for a in node.names)
    assert {"replay", "load_model", "open_dataset", "discover"} <= set(imported)
