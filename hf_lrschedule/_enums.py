"""Adding a member to an existing `str` enum (transformers' `SchedulerType`), on every Python we support.

Stdlib only, and no private function of the `enum` module: the member is built with the mixin's constructor and
entered into the three tables that every Python since 3.6 keeps on an enum class and reads for lookup
(`_member_map_` by name, `_value2member_map_` by value, `_member_names_` for iteration, `len` and `in`), then
set as a class attribute, which is where attribute access finds members on 3.10 through 3.13.
`tests/test_enums.py` runs this module under each installed interpreter.
"""

from __future__ import annotations

import enum


def extend_str_enum(cls: type[enum.Enum], name: str, value: str) -> enum.Enum:
    """Return the member `name` = `value` of `cls`, adding it if it is missing (idempotent).

    Raises `ValueError` if `value` or `name` is already taken by something else, and `TypeError` if `cls` is not a
    `str` enum.
    """
    if not (isinstance(cls, enum.EnumMeta) and issubclass(cls, str)):
        raise TypeError(f"{cls!r} is not a str enum")
    member = cls._value2member_map_.get(value)
    if member is not None:
        if member.name != name:
            raise ValueError(f"{cls.__name__} already has {value!r} as {member!r}")
        return member
    if name in cls._member_map_ or name in cls.__dict__:
        raise ValueError(f"{cls.__name__} already has an attribute {name!r}")
    member = str.__new__(cls, value)
    member._name_ = name
    member._value_ = value
    member.__objclass__ = cls
    member._sort_order_ = len(cls._member_names_)  # read by 3.11+ (dir() order); harmless before
    member.__init__(value)
    # Publish it last, name table first: a concurrent lookup sees either no member or a complete one.
    cls._member_map_[name] = member
    cls._value2member_map_[value] = member
    cls._member_names_.append(name)
    type.__setattr__(cls, name, member)  # EnumMeta.__setattr__ refuses to bind member names
    return member
