"""The Dockerfile rules of ctr-magic's builder, without a daemon: words, instructions, the config
each instruction leaves, .dockerignore matching and context hashing."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctr_magic import errors
from ctr_magic.build.context import BuildContext, IgnoreRules
from ctr_magic.build.dockerfile import parse
from ctr_magic.build.plan import CopyAction, MkdirAction, RunAction, StageState, global_arg_values, parse_duration
from ctr_magic.build.words import expand, key_values, split_words


def test_expand_and_quotes() -> None:
    v = {"A": "1", "EMPTY": ""}
    assert expand("$A-${A}-${B:-dflt}-${EMPTY:-x}-${A:+set}-\\$A", v) == "1-1-dflt-x-set-$A"
    assert split_words("a 'b c' \"d $A\" e\\ f", v) == ["a", "b c", "d 1", "e f"]
    assert key_values('K=v K2="two words"', v, "ENV") == [("K", "v"), ("K2", "two words")]
    assert key_values("K value with spaces", v, "ENV") == [("K", "value with spaces")]


def test_parse_stages_flags_and_errors() -> None:
    df = parse("ARG V=1\nFROM --platform=linux/amd64 base:$V AS One\nRUN a \\\n  b\nFROM one\nCOPY --from=one x y\n")
    assert [s.name for s in df.stages] == ["one", ""]
    assert df.stages[0].platform == "linux/amd64" and df.stages[0].base == "base:$V"
    assert df.stages[0].instructions[0].value == "a   b"
    assert df.stages[1].instructions[0].flags == {"from": "one"}
    for text, line in (("FROM a\nBOGUS x\n", 2), ("FROM a\n\nCOPY --nope=1 a b\n", 3)):
        with pytest.raises(errors.InvalidArgument, match=f"Dockerfile line {line}"):
            parse(text)
    with pytest.raises(errors.InvalidArgument, match="no FROM"):
        parse("# only a comment\n")


def test_config_changes_as_docker_makes_them() -> None:
    df = parse("FROM b\nARG X=argval\nENV A=1 B=$A\nWORKDIR /w\nWORKDIR sub\nUSER app:app\n"
               "LABEL k=v\nEXPOSE 80 53/udp\nVOLUME /data\nCMD echo hi\nENTRYPOINT [\"/e\"]\n"
               "SHELL [\"/bin/bash\", \"-c\"]\nRUN echo $X\nSTOPSIGNAL SIGINT\n"
               "HEALTHCHECK --interval=1m30s --retries=2 CMD [\"true\"]\nCOPY --chown=app a* d/\n")
    state = StageState.from_image({"config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]}}, {"X": "given"}, {})
    actions = [state.apply(i) for i in df.stages[0].instructions]
    cfg = state.config
    assert cfg["Env"] == ["PATH=/bin", "A=1", "B="]  # B sees the value of A from before the line
    assert cfg["WorkingDir"] == "/w/sub" and cfg["User"] == "app:app"
    assert cfg["Labels"] == {"k": "v"} and cfg["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert cfg["Volumes"] == {"/data": {}} and cfg["StopSignal"] == "SIGINT"
    assert "Cmd" in cfg  # CMD came first in this Dockerfile, so ENTRYPOINT keeps it
    assert cfg["Healthcheck"] == {"Test": ["CMD", "true"], "Interval": 90_000_000_000, "Retries": 2}
    assert isinstance(actions[2], MkdirAction) and actions[3] == MkdirAction("/w/sub")
    run = next(a for a in actions if isinstance(a, RunAction))
    assert run.argv == ["/bin/bash", "-c", "echo $X"] and "X=given" in run.env
    copy = actions[-1]
    assert isinstance(copy, CopyAction) and copy.dest == "/w/sub/d/" and copy.chown == "app"


def test_entrypoint_resets_inherited_cmd() -> None:
    state = StageState.from_image({"config": {"Cmd": ["sh"]}}, {}, {})
    state.apply(parse("FROM b\nENTRYPOINT [\"x\"]\n").stages[0].instructions[0])
    assert "Cmd" not in state.config


def test_global_args_and_durations() -> None:
    df = parse("ARG A=1\nARG B=${A}2\nFROM x\n")
    assert global_arg_values(df.global_args, {}) == {"A": "1", "B": "12"}
    assert global_arg_values(df.global_args, {"A": "9"}) == {"A": "9", "B": "92"}
    assert parse_duration("250ms", "t") == 250_000_000
    with pytest.raises(errors.InvalidArgument):
        parse_duration("soon", "t")


def test_dockerignore_rules() -> None:
    rules = IgnoreRules("# comment\n*.log\n!keep.log\nbuild/\n**/tmp\n/abs.txt\n")
    assert rules.ignored("a.log") and not rules.ignored("keep.log")
    assert rules.ignored("build/x/y") and rules.ignored("deep/er/tmp") and rules.ignored("abs.txt")
    assert not rules.ignored("sub/a.log")  # `*` stays within one path element, as in Docker
    assert not rules.ignored("src/main.py")


def test_context_sources_and_hash(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    (tmp_path / "skip.txt").write_text("s")
    (tmp_path / ".dockerignore").write_text("skip.txt\n")
    ctx = BuildContext(str(tmp_path))
    assert ctx.sources("*.txt", "COPY") == ["a.txt", "b.txt"]
    with pytest.raises(errors.NotFound, match="dockerignore"):
        ctx.sources("skip.txt", "COPY")
    before = ctx.content_hash(["a.txt"])
    (tmp_path / "a.txt").write_text("changed")
    assert BuildContext(str(tmp_path)).content_hash(["a.txt"]) != before


def test_upper_dir_tar_whiteouts_opaque_links_and_xattrs(tmp_path: Path) -> None:
    import io
    import os
    import tarfile

    from ctr_magic.build.overlaydiff import write_upper_tar

    upper = tmp_path / "upper"
    (upper / "etc" / "new").mkdir(parents=True)
    (upper / "etc" / "new" / "file").write_text("x")
    os.link(upper / "etc" / "new" / "file", upper / "etc" / "again")
    (upper / "etc" / "link").symlink_to("new/file")
    whiteouts = os.geteuid() == 0
    if whiteouts:
        os.mknod(upper / "etc" / "gone", 0o600 | 0o020000, os.makedev(0, 0))  # overlay's whiteout
        os.setxattr(upper / "etc" / "new", "trusted.overlay.opaque", b"y")
    try:
        os.setxattr(upper / "etc" / "new" / "file", "user.note", b"kept")
        xattrs = True
    except OSError:  # a filesystem without user xattrs
        xattrs = False
    out = io.BytesIO()
    write_upper_tar(str(upper), out)
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        members = {m.name: m for m in tar.getmembers()}
    # The first name of an inode carries the data, the second links to it.
    assert members["etc/again"].isfile() and members["etc/new/file"].islnk()
    assert members["etc/new/file"].linkname == "etc/again"
    assert members["etc/link"].issym() and members["etc/link"].linkname == "new/file"
    if whiteouts:
        assert members["etc/.wh.gone"].isfile() and "etc/gone" not in members
        assert "etc/new/.wh..wh..opq" in members
        assert not any(k.startswith("SCHILY.xattr.trusted.overlay") for m in members.values() for k in m.pax_headers)
    if xattrs:
        assert members["etc/again"].pax_headers["SCHILY.xattr.user.note"] == "kept"
