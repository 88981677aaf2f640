"""containerd's filter syntax as list_tasks applies it (containerd 1.6 ignores Tasks.List filters)."""

from __future__ import annotations

import pytest

from ctr_magic import errors
from ctr_magic.containerd.filters import parse_filter, task_fields

BOX = task_fields("box-1", 4242, "running", 0)
DONE = task_fields("done", 0, "stopped", 3)


@pytest.mark.parametrize(
    ("text", "box", "done"),
    [
        ("", True, True),
        ("container.id==box-1", True, False),
        ('container.id=="box-1"', True, False),
        ("id!=box-1", False, True),
        ("status==running", True, False),
        ("status==stopped,exit_status==3", False, True),
        ("status==stopped,exit_status==4", False, False),
        ("container.id~=^box", True, False),
        ("container.id~=o", True, True),
        ("pid", True, True),
        ("labels.nope", False, False),
        ("labels.nope!=x", True, True),
        (" container.id == box-1 , pid == 4242 ", True, False),
        ("`container`.id==`box-1`", True, False),
        ('container.id=="b\\x-1"', False, False),
    ],
)
def test_filter(text: str, box: bool, done: bool) -> None:
    keep = parse_filter(text)
    assert keep(BOX) is box
    assert keep(DONE) is done


@pytest.mark.parametrize("text", ["==x", "id==", 'id=="open', "id==a b", "id~=(", "1abc==x", "id==a,,"])
def test_bad_filters(text: str) -> None:
    with pytest.raises(errors.InvalidArgument) as info:
        parse_filter(text)
    assert "filter" in str(info.value) and "\n" not in str(info.value)
