"""Argument parsing of every %ctr subcommand, good and bad input (no daemon needed)."""

from __future__ import annotations

import os
import signal

import pytest

from ctr_magic.errors import InvalidArgument
from ctr_magic.notebook.magics import argtypes, parsing
from ctr_magic.notebook.magics.cmd_containers import build_request


def parse(line: str) -> parsing.Parsed:
    return parsing.parse(parsing.split_line(line))


# (line, command name, expected attributes)
GOOD = [
    ("use", "use", {"backend": None}),
    ("use docker --socket /run/d.sock", "use", {"backend": "docker", "socket": "/run/d.sock"}),
    ("use -n tutorial", "use", {"namespace": "tutorial"}),
    ("up --docker --home /tmp/x", "up", {"docker": True, "home": "/tmp/x"}),
    ("down --force", "down", {"force": True}),
    ("status", "status", {}),
    ("version", "version", {}),
    ("pull busybox --platform linux/arm64 --no-unpack -q", "pull",
     {"ref": "busybox", "platform": "linux/arm64", "no_unpack": True, "quiet": True}),
    ("images", "images", {"filter": ""}),
    ("images busy", "images", {"filter": "busy"}),
    ("rmi a b --sync", "rmi", {"refs": ["a", "b"], "sync": True}),
    ("tag a b", "tag", {"source": "a", "target": "b"}),
    ("import /tmp/x.tar --name me/x:1", "import", {"path": "/tmp/x.tar", "name": "me/x:1"}),
    ("export /tmp/x.tar a b", "export", {"path": "/tmp/x.tar", "refs": ["a", "b"]}),
    ("push a --dest 127.0.0.1:5000/a:2", "push", {"ref": "a", "dest": "127.0.0.1:5000/a:2"}),
    ("create --name box busybox sleep 100", "create", {"name": "box", "image": "busybox", "cmd": ["sleep", "100"]}),
    ("run --rm -e A=1 -e B busybox -- echo hi", "run",
     {"rm": True, "env": ["A=1", "B"], "image": "busybox", "cmd": ["echo", "hi"]}),
    ("run -d --net --name web busybox httpd -f", "run",
     {"detach": True, "net": True, "name": "web", "cmd": ["httpd", "-f"]}),
    ("run --check -w /tmp -u app --label a=b --hostname h --host-dns --host-tz busybox", "run",
     {"check": True, "workdir": "/tmp", "user": "app", "label": ["a=b"], "hostname": "h", "host_dns": True,
      "host_tz": True, "cmd": []}),
    ("run --from v1 busybox", "run", {"from_snapshot": "v1"}),
    ("run -i -t --stdin data busybox -- cat", "run", {"interactive": True, "tty": True, "stdin": "data",
                                                     "cmd": ["cat"]}),
    ("cp box:/data ./local", "cp", {"source": "box:/data", "dest": "./local"}),
    ("cp ./data box:/data/", "cp", {"source": "./data", "dest": "box:/data/"}),
    ("ps --labels", "ps", {"all_labels": True}),
    ("commit box me/img:1 -a 'Ada <ada@example.org>'", "commit", {"author": "Ada <ada@example.org>"}),
    ("start box --net", "start", {"id": "box", "net": True}),
    ("stop a b -t 3 -s KILL --force", "stop", {"ids": ["a", "b"], "timeout": 3.0, "signal": 9, "force": True}),
    ("kill box -s HUP --all", "kill", {"id": "box", "signal": int(signal.SIGHUP), "all": True}),
    ("rm -f a b --keep-snapshot", "rm", {"ids": ["a", "b"], "force": True, "keep_snapshot": True}),
    ("ps -a --label app=web", "ps", {"all": True, "label": ["app=web"]}),
    ("tasks --filter status==running", "tasks", {"filter": "status==running"}),
    ("logs box -f", "logs", {"id": "box", "follow": True}),
    ("inspect box", "inspect", {"target": "box"}),
    ("exec box ls -l /", "exec", {"id": "box", "cmd": ["ls", "-l", "/"]}),
    ("exec -o out --binary --check -e X=1 -w / -u 0 box -- sh -c 'echo $X'", "exec",
     {"output": "out", "binary": True, "check": True, "env": ["X=1"], "workdir": "/", "user": "0",
      "cmd": ["sh", "-c", "echo $X"]}),
    ("exec --stdin data box -- cat", "exec", {"stdin": "data", "cmd": ["cat"]}),
    ("snapshots --snapshotter native", "snapshots", {"snapshotter": "native"}),
    ("commit box me/img:1 -m 'saved' -e A=1 --replace --cmd python3 -", "commit",
     {"id": "box", "image": "me/img:1", "message": "saved", "env": ["A=1"], "cmd": ["python3", "-"],
      "replace": True}),
    ("checkpoint box v1", "checkpoint", {"id": "box", "version": "v1", "rm": False}),
    ("checkpoint --rm box v1", "checkpoint", {"rm": True}),
    ("checkpoints", "checkpoints", {"id": ""}),
    ("checkpoints box", "checkpoints", {"id": "box"}),
    ("mount box --ro", "mount", {"id": "box", "ro": True}),
    ("umount box", "umount", {"targets": ["box"], "all": False}),
    ("umount --all", "umount", {"all": True}),
    ("net up box", "net up", {"id": "box"}),
    ("net down box", "net down", {"id": "box"}),
    ("ns ls", "ns ls", {}),
    ("ns rm", "ns rm", {"name": ""}),
    ("ns rm other", "ns rm", {"name": "other"}),
    ("lock --show", "lock", {"show": True}),
    ("lock --delete", "lock", {"delete": True}),
    ("dashboard", "dashboard", {"label": "", "status": "", "stats_interval": 2.0}),
    ("dashboard --label role=web --status running --stats-interval 0", "dashboard",
     {"label": "role=web", "status": "running", "stats_interval": 0.0}),
    ("console box", "console", {"id": "box", "shell": "sh"}),
    ("console box --shell 'sh -i'", "console", {"shell": "sh -i"}),
    ("stats", "stats", {"ids": [], "watch": False, "interval": 1.0, "count": 0}),
    ("stats a b --watch --interval 500ms --count 5", "stats",
     {"ids": ["a", "b"], "watch": True, "interval": 0.5, "count": 5}),
    ("build -t me/app:1 ctx -f ctx/Other.Dockerfile --build-arg V=2 --build-arg W --no-cache --net --target t",
     "build", {"tag": ["me/app:1"], "context": "ctx", "file": "ctx/Other.Dockerfile", "build_arg": ["V=2", "W"],
               "no_cache": True, "net": True, "target": "t"}),
    ("build -t a -t b -q", "build", {"tag": ["a", "b"], "context": "", "quiet": True}),
    ("build --prune", "build", {"prune": True}),
    ("use swarm --socket /run/m.sock --node node2=/run/n2.sock --node node3=tcp://10.0.0.3:2375", "use",
     {"backend": "swarm", "node": ["node2=/run/n2.sock", "node3=tcp://10.0.0.3:2375"]}),
    ("up --swarm 3", "up", {"swarm": 3}),
    ("run --replicas 6 --constraint node.labels.zone==a --constraint node.role!=manager --reserve-cpus 0.5 "
     "--reserve-memory 64m --limit-cpus 1 --limit-memory 128m -d --name web busybox sleep 9", "run",
     {"replicas": 6, "constraint": ["node.labels.zone==a", "node.role!=manager"], "reserve_cpus": "0.5",
      "reserve_memory": "64m", "limit_cpus": "1", "limit_memory": "128m", "detach": True, "cmd": ["sleep", "9"]}),
    ("nodes", "nodes", {}),
    ("scale web=3 db=0 -d", "scale", {"targets": ["web=3", "db=0"], "detach": True}),
    ("update web --image busybox:2 -e MODE=fast -e OLD- -d", "update",
     {"service": "web", "image": "busybox:2", "env": ["MODE=fast", "OLD-"], "detach": True}),
    ("run --memory 512m --cpus 1.5 --pids-limit 50 --read-only --ulimit nofile=10:20 busybox", "run",
     {"memory": 512 << 20, "cpus": 1.5, "pids_limit": 50, "read_only": True}),
    ("create --memory-swap -1 --memory 1g --shm-size 64m --cpu-shares 512 busybox", "create",
     {"memory": 1 << 30, "memory_swap": -1, "shm_size": 64 << 20, "cpu_shares": 512}),
    ("update box --memory 64m --cpus 0.5", "update", {"service": "box", "memory": 64 << 20, "cpus": 0.5}),
    ("py --in a,df --out y --keep k img", "py", {"target": "img", "inputs": "a,df", "outputs": "y", "keep": "k"}),
    ("py box -- x + 1", "py", {"target": "box", "expr": ["x", "+", "1"], "format": "pickle"}),
]  # fmt: skip


@pytest.mark.parametrize(("line", "name", "expected"), GOOD, ids=[g[0] for g in GOOD])
def test_good_lines_parse(line: str, name: str, expected: dict[str, object]) -> None:
    parsed = parse(line)
    assert parsed.command is not None and parsed.command.name == name
    for key, value in expected.items():
        assert getattr(parsed.args, key) == value, key


def test_every_command_has_a_good_example() -> None:
    tested = {g[1] for g in GOOD}
    assert tested == {c.name for c in parsing.commands().values()}


BAD = [
    ("nosuch", "unknown command 'nosuch'"),
    ("runn busybox", "did you mean 'run'"),
    ("pull", "required: ref"),
    ("run", "required: image"),
    ("exec", "required: id"),
    ("stop", "required: ID"),
    ("rmi", "required: REF"),
    ("net", "subcommand is missing"),
    ("net sideways box", "invalid choice"),
    ("use podman", "invalid choice"),
    ("ps --bogus", "unrecognized arguments: --bogus"),
    ("stop box -t soon", "duration 'soon'"),
    ("kill box -s NOPE", "unknown signal 'NOPE'"),
    ("kill box -s 99", "out of range"),
    ("images 'unbalanced", "check the quotes"),
    ("run --rm --r busybox", "unrecognized arguments"),  # no abbreviations
    ("console", "required: id"),
    ("dashboard --status sideways", "invalid choice"),
    ("stats --interval soon", "duration 'soon'"),
]


@pytest.mark.parametrize(("line", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_lines_raise_one_line(line: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse(line)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_help_is_generated_and_stops(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(parsing.HelpShown):
        parse("run --help")
    out = capsys.readouterr().out
    assert "usage: %ctr run" in out
    assert "-v SRC:DST[:ro]" in out and "--rm" in out


def test_every_command_help_renders(capsys: pytest.CaptureFixture[str]) -> None:
    for words in parsing.commands():
        with pytest.raises(parsing.HelpShown):
            parsing.parse([*words, "--help"])
        assert f"usage: %ctr {' '.join(words)}" in capsys.readouterr().out


def test_no_words_prints_overview(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(parsing.HelpShown):
        parsing.parse([])
    out = capsys.readouterr().out
    for name in ("pull", "run", "exec", "ps", "net", "lock"):
        assert f"    {name} " in out


def test_debug_flag_before_or_after_the_command() -> None:
    assert parse("--debug ps").debug
    assert parse("ps --debug").debug
    assert not parse("ps").debug


# -- option values -------------------------------------------------------------------------------


def test_volume_parsing(tmp_path: pytest.TempPathFactory) -> None:
    src = str(tmp_path)
    m = argtypes.parse_volume(f"{src}:/data:ro")
    assert (m.source, m.destination, m.type, m.options) == (src, "/data", "bind", ["rbind", "ro"])
    assert argtypes.parse_volume(f"{src}:/data").options == ["rbind", "rw"]
    rel = argtypes.parse_volume(".:/data/:rw", cwd=src)
    assert rel.source == src and rel.destination == "/data"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nocolon", "is not SRC:DST[:ro]"),
        ("/a:/b:c:d", "is not SRC:DST[:ro]"),
        (":/data", "is not SRC:DST[:ro]"),
        ("/tmp:", "is not SRC:DST[:ro]"),
        ("/tmp:/data:rx", "neither ro nor rw"),
        ("/tmp:data", "must be an absolute path"),
        ("/definitely/not/here:/data", "does not exist"),
    ],
)
def test_malformed_volumes(spec: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=None) as info:
        argtypes.parse_volume(spec)
    assert message in str(info.value)


def test_env_parsing_takes_bare_names_from_the_environment() -> None:
    env = {"TOKEN": "s3cret"}
    assert argtypes.parse_env(["A=1", "B=", "TOKEN"], env) == ["A=1", "B=", "TOKEN=s3cret"]
    with pytest.raises(InvalidArgument, match="no such variable"):
        argtypes.parse_env(["MISSING"], {})
    with pytest.raises(InvalidArgument, match="invalid"):
        argtypes.parse_env(["1A=2"], {})


def test_labels_signals_durations_ids() -> None:
    assert argtypes.parse_labels(["a=b", "c.d/e=f=g"]) == {"a": "b", "c.d/e": "f=g"}
    assert argtypes.parse_labels(["a"], allow_bare=True) == {"a": ""}
    with pytest.raises(InvalidArgument):
        argtypes.parse_labels(["a"])
    assert argtypes.parse_signal("term") == 15 and argtypes.parse_signal("SIGKILL") == 9
    assert argtypes.parse_signal("2") == 2
    assert argtypes.parse_duration("500ms") == 0.5 and argtypes.parse_duration("1m") == 60
    assert argtypes.check_id("box-1.a_b") == "box-1.a_b"
    for bad in ("", "-x", "a b", "x" * 77, "ä"):
        with pytest.raises(InvalidArgument):
            argtypes.check_id(bad)


def test_build_request_validates_everything_before_any_call(tmp_path: pytest.TempPathFactory) -> None:
    ok = parse(f"run --name box -e A=1 -v {tmp_path}:/data:ro --label k=v -w /data busybox -- echo hi").args
    req = build_request(ok)
    assert req.id == "box" and req.image_ref == "busybox"
    assert req.spec.cmd == ["echo", "hi"] and req.spec.env == ["A=1"] and req.spec.work_dir == "/data"
    assert req.spec.mounts[0].source == str(tmp_path) and req.labels == {"k": "v"}
    generated = build_request(parse("run 127.0.0.1:5000/ctr-magic/busybox:latest").args)
    assert generated.id.startswith("busybox-") and len(generated.id) == len("busybox-") + 6
    for line, message in [
        ("run -v nope busybox", "SRC:DST"),
        ("run --name 'bad id' busybox", "container id 'bad id' is invalid"),
        ("run BusyBox", "must be lowercase"),
        ("run --label novalue busybox", "not KEY=VALUE"),
        ("run -e 9=x busybox", "invalid"),
    ]:
        with pytest.raises(InvalidArgument) as info:
            build_request(parse(line).args)
        assert message in str(info.value), line


def test_split_line_keeps_quoted_words() -> None:
    assert parsing.split_line("exec box -- sh -c 'echo \"a b\"'") == ["exec", "box", "--", "sh", "-c", 'echo "a b"']
    assert os.sep == "/"
