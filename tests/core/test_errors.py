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
