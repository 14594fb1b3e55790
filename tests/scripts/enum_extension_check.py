"""Checks `hf_lrschedule._enums.extend_str_enum` under whichever interpreter runs it (stdlib only).

Run as `python enum_extension_check.py PATH/TO/_enums.py`; prints "ok <version>" or fails an assertion. The enum
below copies the shape of transformers' `SchedulerType` (an `ExplicitEnum(str, Enum)` with `_missing_`).
"""

import copy
import enum
import importlib.util
import pickle
import sys

spec = importlib.util.spec_from_file_location("_enums", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)


class ExplicitEnum(str, enum.Enum):
    @classmethod
    def _missing_(cls, value):
        raise ValueError(f"{value} is not a valid {cls.__name__}, select one of {list(cls._value2member_map_)}")


class SchedulerType(ExplicitEnum):
    LINEAR = "linear"
    COSINE = "cosine"


added = module.extend_str_enum(SchedulerType, "LINEAR_REFINED", "linear_refined")
assert added is SchedulerType("linear_refined") is SchedulerType.LINEAR_REFINED is SchedulerType["LINEAR_REFINED"]
assert [m.value for m in SchedulerType] == ["linear", "cosine", "linear_refined"]
assert len(SchedulerType) == 3 and added in SchedulerType and "LINEAR_REFINED" in SchedulerType.__members__
assert added == "linear_refined" and isinstance(added, SchedulerType) and hash(added) == hash("linear_refined")
assert added.name == "LINEAR_REFINED" and added.value == "linear_refined"
assert pickle.loads(pickle.dumps(added)) is added and copy.deepcopy(added) is added
native = SchedulerType.LINEAR
assert set(vars(native)) <= set(vars(added)), (vars(native), vars(added))
for show in (str, repr, format):  # the new member prints the way a member written in the class body does
    assert show(added).replace("LINEAR_REFINED", "X").replace("linear_refined", "x") == show(native).replace(
        "LINEAR", "X"
    ).replace("linear", "x"), show
assert module.extend_str_enum(SchedulerType, "LINEAR_REFINED", "linear_refined") is added  # idempotent
for bad in (("COSINE2", "cosine"), ("COSINE", "cosine_2")):
    try:
        module.extend_str_enum(SchedulerType, *bad)
    except ValueError:
        pass
    else:
        raise AssertionError(f"{bad} was accepted")
try:
    SchedulerType("nope")
except ValueError as error:
    assert "linear_refined" in str(error)  # transformers' error message lists the new choice
print("ok", sys.version.split()[0])
