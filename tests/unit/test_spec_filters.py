"""containerd's filter syntax as list_tasks applies it (containerd 1.6 ignores Tasks.List filters)."""

from __future__ import annotations

import pytest

from ctr_magic import errors
from ctr_magic.taskfilter import parse_filter, task_fields

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


def test_one_task_filter_for_every_backend() -> None:
    from ctr_magic.taskfilter import compile_task_filter
    from ctr_magic.types import TaskInfo, TaskStatus

    web = TaskInfo(container_id="web-1", id="web-1", pid=10, status=TaskStatus.RUNNING)
    db = TaskInfo(container_id="db", id="db", pid=0, status=TaskStatus.STOPPED, exit_code=3)
    cases = {
        "`container`.id==`web-1`": [web],
        "status==stopped,exit_status==3": [db],
        "id==web-1 | id==db": [web, db],
        'id=="db" or pid==10': [web, db],
        "container.id~=^w or status==paused": [web],
    }
    for text, want in cases.items():
        keep = compile_task_filter(text)
        assert [t for t in (web, db) if keep(t)] == want, text
    for bad, words in (("labels.x==1", "unknown field 'labels.x'"), ("pid", "needs an operator"),
                       ("id==a |", "expected a field name")):
        with pytest.raises(errors.InvalidArgument, match=words):
            compile_task_filter(bad)
