"""The same Dockerfile built by ctr-magic on containerd and by dockerd's own builder: the two
images hold the same files (paths, types, modes, owners, contents) and the same runtime config.
Also: the Docker backend's build_image streams steps, caches, and fails in one line."""

from __future__ import annotations

import io
import secrets
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from build_support import containerd_image, docker_image, runtime_fields
from tasks_support import wait_for

from ctr_magic.build import StepFailed
from ctr_magic.build.events import CACHED
from ctr_magic.docker.service import DockerService
from ctr_magic.env import EnvironmentInfo

PARITY_DOCKERFILE = """\
ARG BASE
FROM ${BASE} AS builder
ARG GREETING=hello
ENV BUILT_BY=stage-one
WORKDIR /src
COPY src/ ./
RUN echo "$GREETING from $BUILT_BY" > out.txt && chmod 640 out.txt && mkdir -p /src/bin \\
 && cp tool.sh /src/bin/tool && chmod 755 /src/bin/tool

FROM ${BASE}
LABEL org.example.title="parity test" org.example.stage=final
ENV APP_HOME=/opt/app PATH=/opt/app/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR $APP_HOME
COPY --from=builder --chown=app:app /src/out.txt ./data/
COPY --from=builder /src/bin/ ./bin/
COPY --chown=app config.ini notes/ ./etc/
COPY --chown=1000:1000 *.md ./docs/
ADD bundle.tar.gz /opt/bundle/
RUN mkdir -p /var/lib/app && chown app:app /var/lib/app && ln -s /opt/app/etc/config.ini /etc/app.ini
RUN rm /bin/yes && rm -rf /var/tmp && mkdir -m 1777 /var/tmp && touch /var/tmp/fresh \
 && echo one > /opt/app/one && ln /opt/app/one /opt/app/one-again && mkfifo /opt/app/pipe
SHELL ["/bin/sh", "-ec"]
RUN ["/bin/sh", "-c", "echo exec form > /opt/app/exec.txt"]
RUN echo "shell form under SHELL" > /opt/app/shell.txt
USER app
EXPOSE 8080 9000/udp
VOLUME /var/lib/app
STOPSIGNAL SIGINT
HEALTHCHECK --interval=30s --retries=2 CMD test -f /opt/app/data/out.txt
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /opt/app/data/out.txt"]
"""


@pytest.fixture(scope="module")
def docker(dockerd: EnvironmentInfo) -> Iterator[DockerService]:
    service = DockerService.connect(dockerd.dockerd_socket)
    try:
        yield service
    finally:
        service.close()


@pytest.fixture
def parity_context(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "tool.sh").write_text("#!/bin/sh\necho tool\n")
    (src / "tool.sh").chmod(0o700)
    (tmp_path / "config.ini").write_text("[app]\nname = parity\n")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("note a\n")
    (notes / "b.txt").write_text("note b\n")
    (notes / "b.txt").chmod(0o600)
    (tmp_path / "README.md").write_text("# readme\n")
    (tmp_path / "CHANGES.md").write_text("# changes\n")
    (tmp_path / "ignored.md").write_text("ignored\n")
    (tmp_path / ".dockerignore").write_text("ignored.md\n")
    _bundle(tmp_path / "bundle.tar.gz")
    return tmp_path


def _bundle(path: Path) -> None:
    """A gzipped tar with owners, a setuid mode, a directory and a symlink: ADD unpacks it."""
    with tarfile.open(path, "w:gz") as tar:
        for name, kind, mode, uid in (("lib", tarfile.DIRTYPE, 0o750, 1000), ("lib/run.sh", tarfile.REGTYPE, 0o4755, 0),
                                      ("lib/data.txt", tarfile.REGTYPE, 0o640, 1000),
                                      ("lib/current", tarfile.SYMTYPE, 0o777, 0)):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, uid, 1_700_000_000
            data = f"content of {name}\n".encode() if kind == tarfile.REGTYPE else b""
            info.size = len(data)
            if kind == tarfile.SYMTYPE:
                info.linkname = "data.txt"
            tar.addfile(info, io.BytesIO(data))


def _diff(ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    out = []
    for path in sorted(set(ours) | set(theirs)):
        if ours.get(path) != theirs.get(path):
            out.append(f"{path}: ctr-magic {ours.get(path)} / dockerd {theirs.get(path)}")
    return out


def test_same_image_as_dockerd(service: Any, docker: DockerService, test_images: dict[str, str],
                               parity_context: Path) -> None:
    tag = secrets.token_hex(4)
    args = {"BASE": test_images["busybox"], "GREETING": "bonjour"}
    ours_ref = f"localhost/ctr-magic-test/parity:{tag}"
    theirs_ref = f"localhost/ctr-magic-test/parity-docker:{tag}"
    service.build_image(PARITY_DOCKERFILE, str(parity_context), tags=[ours_ref], build_args=args)
    docker.build_image(PARITY_DOCKERFILE, str(parity_context), tags=[theirs_ref], build_args=args)
    try:
        ours_tree, ours_config = containerd_image(service, ours_ref)
        theirs_tree, theirs_config = docker_image(docker, theirs_ref)
        assert "\n".join(_diff(ours_tree, theirs_tree)) == ""
        assert runtime_fields(ours_config) == runtime_fields(theirs_config)
        assert ours_tree["/opt/app/data/out.txt"][1:4] == (0o640, 1000, 1000)  # a check the diff could miss
        assert "/bin/yes" not in ours_tree and "/var/tmp/fresh" in ours_tree
        assert ours_tree["/opt/bundle/lib/run.sh"][1] == 0o4755
    finally:
        docker.delete_image(theirs_ref)


def test_upper_dir_layers_equal_the_diff_service(service: Any, test_images: dict[str, str], parity_context: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Layers read from overlay's upper directory hold what the Diff service would have written."""
    args = {"BASE": test_images["busybox"]}
    fast_ref = f"localhost/ctr-magic-test/upper:{secrets.token_hex(4)}"
    service.build_image(PARITY_DOCKERFILE, str(parity_context), tags=[fast_ref], build_args=args, no_cache=True)
    monkeypatch.setattr("ctr_magic.build.snapshots.maybe_upper_layer", lambda *a, **k: None)
    slow_ref = f"localhost/ctr-magic-test/diff-service:{secrets.token_hex(4)}"
    service.build_image(PARITY_DOCKERFILE, str(parity_context), tags=[slow_ref], build_args=args, no_cache=True)
    fast_tree, _ = containerd_image(service, fast_ref)
    slow_tree, _ = containerd_image(service, slow_ref)
    assert "\n".join(_diff(fast_tree, slow_tree)) == ""


def test_docker_backend_steps_cache_and_failure(docker: DockerService, test_images: dict[str, str],
                                                tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("f\n")
    ref = f"localhost/ctr-magic-test/docker-steps:{secrets.token_hex(4)}"
    dockerfile = f"FROM {test_images['busybox']}\nCOPY f.txt /\nRUN cat /f.txt\n"
    output: list[bytes] = []
    first = docker.build_image(dockerfile, str(tmp_path), tags=[ref], on_output=lambda s, d: output.append(d))
    try:
        assert [(s.number, s.total) for s in first.steps] == [(1, 3), (2, 3), (3, 3)]
        assert b"f\n" in b"".join(output)
        again = docker.build_image(dockerfile, str(tmp_path), tags=[ref])
        assert [s.status for s in again.steps][1:] == [CACHED, CACHED]
        assert docker.get_image(ref).name
        with pytest.raises(StepFailed) as failed:
            docker.build_image(f"FROM {test_images['busybox']}\nRUN echo bad; exit 4\n", str(tmp_path), tags=[ref])
        assert str(failed.value) == "step 2/2 `RUN echo bad; exit 4` exited with code 4"
        assert "bad" in failed.value.tail
    finally:
        docker.delete_image(ref)


def test_docker_backend_interrupt_leaves_no_container(docker: DockerService, test_images: dict[str, str],
                                                      tmp_path: Path) -> None:
    before = {c.id for c in docker.list_containers()}

    def on_output(stream: str, data: bytes) -> None:
        if b"started" in data:
            raise KeyboardInterrupt  # the stop button: the connection closes, dockerd cancels the build

    with pytest.raises(KeyboardInterrupt):
        docker.build_image(f"FROM {test_images['busybox']}\nRUN echo started; sleep 120\n", str(tmp_path),
                           tags=[f"localhost/ctr-magic-test/docker-int:{secrets.token_hex(3)}"], on_output=on_output)
    wait_for(lambda: not {c.id for c in docker.list_containers()} - before, timeout=60,
             what="dockerd to remove the cancelled build's container")
