"""Every public name documents itself as the style guide asks: a runnable example for each class
and function (run by ``--doctest-modules``), and every argument of a function named in its
docstring. A name added to ``__all__`` without them fails here."""

from __future__ import annotations

import inspect
import re

import pytest

import s4rec_components

PUBLIC = sorted(s4rec_components.__all__)
DOCUMENTED = [name for name in PUBLIC
              if inspect.isclass(getattr(s4rec_components, name)) or inspect.isfunction(getattr(s4rec_components, name))]


def _doc(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    if inspect.isclass(obj) and obj.__init__ is not object.__init__:
        doc += "\n" + (inspect.getdoc(obj.__init__) or "")
    return doc


def test_the_public_api_has_classes_and_functions_to_check():
    assert len(DOCUMENTED) >= 40 and {"SinkhornKnopp", "IntentInfoNCE", "evaluate_ranking"} <= set(DOCUMENTED)


def test_dir_shows_the_public_names_and_not_the_package_helpers():
    """Tab completion on the package lists what it exports, not ``Any`` or ``importlib``."""
    import s4rec_components.encoder  # noqa: F401  (a submodule imported so far is listed too)

    shown = set(dir(s4rec_components))
    assert set(s4rec_components.__all__) <= shown and "encoder" in shown
    assert not {"Any", "TYPE_CHECKING", "annotations", "importlib", "_EXPORTS"} & shown


@pytest.mark.parametrize("name", DOCUMENTED)
def test_every_public_class_and_function_has_a_runnable_example(name: str):
    doc = inspect.getdoc(getattr(s4rec_components, name)) or ""
    assert ">>> " in doc, f"{name}: no example in its docstring"


@pytest.mark.parametrize("name", [n for n in DOCUMENTED if inspect.isfunction(getattr(s4rec_components, n))])
def test_every_argument_of_a_public_function_is_documented_and_annotated(name: str):
    function = getattr(s4rec_components, name)
    doc = _doc(function)
    for parameter in inspect.signature(function).parameters.values():
        assert re.search(rf"\b{re.escape(parameter.name)}\b", doc), f"{name}: argument {parameter.name} not in its docstring"
        assert parameter.annotation is not inspect.Parameter.empty, f"{name}: argument {parameter.name} has no type hint"
    assert inspect.signature(function).return_annotation is not inspect.Signature.empty, f"{name}: no return type"


def _public_methods() -> list[tuple[str, str]]:
    """``(class, member)`` of every public method and property of the public classes; ``forward``
    (shown by its class's example) and ``extra_repr`` (``print(module)``) excepted."""
    out = []
    for name in DOCUMENTED:
        cls = getattr(s4rec_components, name)
        if not inspect.isclass(cls) or issubclass(cls, (BaseException, tuple)):
            continue
        for member, value in vars(cls).items():
            if member.startswith("_") or member in ("forward", "extra_repr"):
                continue
            if isinstance(value, property) or callable(getattr(value, "__func__", value)):
                out.append((name, member))
    return out


METHODS = _public_methods()


def test_the_public_classes_have_methods_to_check():
    assert ("Ragged", "pad_rows") in METHODS and ("SequenceDataset", "save") in METHODS


@pytest.mark.parametrize("name, member", METHODS)
def test_every_public_method_has_an_example_and_every_property_a_docstring(name: str, member: str):
    value = vars(getattr(s4rec_components, name))[member]
    function = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
    doc = inspect.getdoc(function) or ""
    assert doc, f"{name}.{member}: no docstring"
    if not isinstance(value, property):
        assert ">>> " in doc, f"{name}.{member}: no example in its docstring"
