from __future__ import annotations

import pytest

from shipyard import errors
from shipyard.errors import (
    Conflict,
    InvalidInput,
    MissingDependency,
    NotFound,
    SchemaMismatch,
    ShipyardError,
    error_from_dict,
    require,
)


@pytest.mark.parametrize("cls", [InvalidInput, SchemaMismatch, NotFound, Conflict, errors.Overloaded])
def test_roundtrip_through_json_keeps_class(cls: type[ShipyardError]) -> None:
    err = cls("field 'x' is wrong; send a number", {"field": "x"})
    back = error_from_dict(err.to_dict())
    assert type(back) is cls
    assert back.message == err.message and back.details == {"field": "x"}
    assert back.status == cls.status


def test_codes_are_unique() -> None:
    seen: dict[str, type] = {}
    stack = [ShipyardError]
    while stack:
        cls = stack.pop()
        assert cls.code not in seen, f"{cls} reuses code {cls.code}"
        seen[cls.code] = cls
        stack.extend(cls.__subclasses__())
    assert len(seen) >= 15


def test_unknown_code_keeps_status() -> None:
    err = error_from_dict({"error": {"code": "teapot", "message": "no"}}, 418)
    assert type(err) is ShipyardError and err.status == 418


def test_require_names_the_extra() -> None:
    with pytest.raises(MissingDependency, match=r"shipyard-ml\[nothing\]"):
        require("surely_not_a_module_xyz", "nothing")


def _documented_tree() -> dict[str, tuple[str | None, int, str, str | None]]:
    """``{class: (parent, status, code, builtin base)}`` as drawn in the errors module docstring."""
    import re

    tree: dict[str, tuple[str | None, int, str, str | None]] = {}
    stack: list[tuple[int, str]] = []
    line_re = re.compile(r"^(?P<indent>[ │├└─]*)(?P<name>[A-Z]\w+) \((?P<status>\d+), (?P<code>\w+)\)"
                         r"(?: \[(?P<builtin>\w+)\])?")
    for line in (errors.__doc__ or "").splitlines():
        m = line_re.match(line.strip("\n")[4:]) if line.startswith("    ") else None
        if m is None:
            continue
        depth = len(m["indent"])
        while stack and stack[-1][0] >= depth:
            stack.pop()
        tree[m["name"]] = (stack[-1][1] if stack else None, int(m["status"]), m["code"], m["builtin"])
        stack.append((depth, m["name"]))
    return tree


def test_docstring_tree_matches_the_classes() -> None:
    documented = _documented_tree()
    actual: dict[str, type[ShipyardError]] = {}
    stack: list[type[ShipyardError]] = [ShipyardError]
    while stack:
        cls = stack.pop()
        actual[cls.__name__] = cls
        stack.extend(cls.__subclasses__())
    assert set(documented) == set(actual)
    for name, (parent, status, code, builtin) in documented.items():
        cls = actual[name]
        assert (cls.status, cls.code) == (status, code), name
        shipyard_bases = [b.__name__ for b in cls.__bases__ if issubclass(b, ShipyardError)]
        assert shipyard_bases == ([parent] if parent else []), name
        own_builtins = [b.__name__ for b in cls.__bases__ if not issubclass(b, ShipyardError)]
        assert own_builtins == ([builtin] if builtin else ([] if parent else ["Exception"])), name


def test_input_errors_are_the_builtin_errors_numpy_and_sklearn_raise() -> None:
    assert issubclass(InvalidInput, ValueError) and issubclass(SchemaMismatch, ValueError)
    assert issubclass(errors.ConfigError, ValueError) and issubclass(errors.PayloadTooLarge, ValueError)
    assert issubclass(errors.InvalidType, TypeError) and issubclass(errors.InvalidType, ValueError)
    assert issubclass(errors.MissingColumn, KeyError) and issubclass(errors.MissingColumn, SchemaMismatch)
    assert not issubclass(NotFound, ValueError) and not issubclass(errors.ModelError, ValueError)
    err = errors.MissingColumn("column 'x' is missing; add it", {"field": "x"})
    assert str(err) == "column 'x' is missing; add it"  # not KeyError's quoted repr
    with pytest.raises(KeyError):
        raise err
    back = error_from_dict(err.to_dict())
    assert type(back) is errors.MissingColumn and isinstance(back, KeyError)
