"""%%ctr build's builder on a real containerd: images that `ctr run` runs, the layer cache,
.dockerignore, build args, failures and interrupts that leave nothing behind, push and pull."""

from __future__ import annotations

import _thread
import contextlib
import secrets
import sys
from pathlib import Path
from typing import Any

import pytest
from build_support import NOTHING, build_leftovers, containerd_image
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from ctr_magic import errors
from ctr_magic.build import StepFailed
from ctr_magic.build.events import CACHED
from ctr_magic.notebook.magics.failure import CellFailure
from ctr_magic.types import DeleteImageOptions, PullImageOptions


@pytest.fixture
def name() -> str:
    return f"localhost/ctr-magic-test/build-{secrets.token_hex(4)}:1"


@pytest.fixture
def context(tmp_path: Path) -> Path:
    (tmp_path / "app.txt").write_text("version 1\n")
    (tmp_path / "tool.sh").write_text("#!/bin/sh\necho tool\n")
    (tmp_path / "tool.sh").chmod(0o755)
    return tmp_path


def statuses(result: Any) -> list[str]:
    return [s.status for s in result.steps]


def test_build_then_ctr_run_and_cache(service: Any, ctr: Any, test_images: dict[str, str], context: Path,
                                      name: str, unique_id: str) -> None:
    dockerfile = f"""FROM {test_images['busybox']}
WORKDIR /app
COPY app.txt tool.sh ./
RUN cat app.txt > copy.txt && ./tool.sh >> copy.txt
ENV GREETING=hello
CMD ["sh", "-c", "echo $GREETING; cat /app/copy.txt"]
"""
    first = service.build_image(dockerfile, str(context), tags=[name])
    assert CACHED not in statuses(first)[2:]
    service.collect_garbage()  # the image's labels keep its blobs and snapshots, as for a pulled image
    out = ctr("run", "--rm", name, unique_id).stdout
    assert out.splitlines() == ["hello", "version 1", "tool"]

    again = service.build_image(dockerfile, str(context), tags=[name])
    assert statuses(again)[1:4] == [CACHED] * 3  # WORKDIR, COPY, RUN; ENV and CMD only change the config
    assert again.digest != "" and service.get_image(name).id == again.digest

    (context / "app.txt").write_text("version 2\n")  # invalidates COPY and everything after it
    changed = service.build_image(dockerfile, str(context), tags=[name])
    assert statuses(changed)[1:4] == [CACHED, "done", "done"]
    out = ctr("run", "--rm", name, unique_id + "b").stdout
    assert "version 2" in out

    forced = service.build_image(dockerfile, str(context), tags=[name], no_cache=True)
    assert CACHED not in statuses(forced)[2:4]
    assert build_leftovers(service) == NOTHING


def test_a_rebuild_survives_garbage_collection_mid_build(service: Any, ctr: Any, test_images: dict[str, str],
                                                        context: Path, name: str, unique_id: str) -> None:
    """The same change made again lands on the snapshot of an earlier build that nothing references
    any more (its image and cache entry are gone): the build's lease must hold it from then on."""
    dockerfile = (f"FROM {test_images['busybox']}\nCOPY app.txt /a.txt\nRUN cat /a.txt > /b.txt\n"
                  'CMD ["cat", "/b.txt"]\n')
    service.build_image(dockerfile, str(context), tags=[name])
    service.delete_image(name)
    service.prune_build_cache()

    def collect_after_copy(event: Any) -> None:
        if event.text.startswith("COPY") and event.status == "done":
            service.collect_garbage()

    service.build_image(dockerfile, str(context), tags=[name], on_step=collect_after_copy)
    assert ctr("run", "--rm", name, unique_id).stdout == "version 1\n"


def test_dockerignore_and_build_args(service: Any, test_images: dict[str, str], context: Path, name: str) -> None:
    (context / "secret.txt").write_text("do not ship\n")
    (context / "logs").mkdir()
    (context / "logs" / "a.log").write_text("log\n")
    (context / "keep.log").write_text("kept\n")
    (context / ".dockerignore").write_text("secret.txt\nlogs\n*.log\n!keep.log\n")
    dockerfile = f"""FROM {test_images['busybox']}
ARG FLAVOUR=plain
ARG UNSET
COPY . /ctx/
RUN echo "$FLAVOUR" > /flavour && echo "unset=[$UNSET]" >> /flavour
"""
    result = service.build_image(dockerfile, str(context), tags=[name], build_args={"FLAVOUR": "spicy",
                                                                                   "NOBODY": "x"})
    tree, config = containerd_image(service, name)
    assert "/ctx/app.txt" in tree and "/ctx/keep.log" in tree
    assert not any(p.startswith(("/ctx/secret.txt", "/ctx/logs")) for p in tree)
    assert not any("FLAVOUR" in e for e in config["config"]["Env"])  # ARG values stay out of the image
    assert result.warnings and "NOBODY" in result.warnings[0]
    # What RUN saw: read it back from the layer.
    layer = service.content.read(service.images.resolve(name).layers[-1]["digest"])
    assert b"spicy\nunset=[]\n" in layer

    (context / "secret.txt").write_text("changed, but ignored\n")
    again = service.build_image(dockerfile, str(context), tags=[name], build_args={"FLAVOUR": "spicy"})
    assert statuses(again)[3:] == [CACHED, CACHED]


def test_multi_stage_scratch_and_copy_from(service: Any, ctr: Any, test_images: dict[str, str], context: Path,
                                           name: str, unique_id: str) -> None:
    dockerfile = f"""FROM {test_images['busybox']} AS tools
RUN mkdir -p /out && echo made-in-stage-1 > /out/result.txt
FROM scratch AS files
COPY --from=tools /out/result.txt /result.txt
FROM {test_images['busybox']}
COPY --from=files /result.txt /final/
COPY --from=0 /bin/busybox /opt/busybox
ENTRYPOINT ["cat"]
CMD ["/final/result.txt"]
"""
    service.build_image(dockerfile, str(context), tags=[name])
    assert ctr("run", "--rm", name, unique_id).stdout.strip() == "made-in-stage-1"
    tree, config = containerd_image(service, name)
    assert tree["/opt/busybox"][1] & 0o111
    history = [h for h in config["history"] if not h.get("empty_layer")]
    assert len(history) == len(config["rootfs"]["diff_ids"])

    first_stage = service.build_image(dockerfile, str(context), tags=[name], target="tools")
    assert first_stage.steps[-1].number == 2
    assert ctr("run", "--rm", name, unique_id + "t", "cat", "/out/result.txt").stdout == "made-in-stage-1\n"


def test_failed_step_fails_in_one_line_and_leaves_nothing(service: Any, test_images: dict[str, str],
                                                          context: Path, name: str) -> None:
    dockerfile = f"""FROM {test_images['busybox']}
RUN echo ok > /ok
RUN echo line-one; echo line-two >&2; exit 3
RUN echo never
"""
    with pytest.raises(StepFailed) as failed:
        service.build_image(dockerfile, str(context), tags=[name])
    assert str(failed.value) == "step 3/4 `RUN echo line-one; echo line-two >&2; exit 3` exited with code 3"
    assert "line-one" in failed.value.tail and "line-two" in failed.value.tail
    assert build_leftovers(service) == NOTHING
    with pytest.raises(errors.NotFound):
        service.get_image(name)


def test_a_missing_copy_source_names_the_step(service: Any, test_images: dict[str, str], context: Path,
                                              name: str) -> None:
    with pytest.raises(errors.NotFound) as missing:
        service.build_image(f"FROM {test_images['busybox']}\nCOPY app.txt /\nCOPY nothere.txt /\n", str(context),
                            tags=[name])
    assert str(missing.value).startswith("step 3/3 `COPY nothere.txt /`: COPY: 'nothere.txt' not found in the build "
                                         "context")
    assert "\n" not in str(missing.value)
    assert build_leftovers(service) == NOTHING


def test_interrupt_stops_the_build_and_leaves_nothing(service: Any, test_images: dict[str, str],
                                                      context: Path, name: str) -> None:
    dockerfile = f"""FROM {test_images['busybox']}
RUN echo started; sleep 120
"""

    def on_output(stream: str, data: bytes) -> None:
        if b"started" in data:
            raise KeyboardInterrupt  # what the stop button does, raised where the build waits

    with pytest.raises(KeyboardInterrupt):
        service.build_image(dockerfile, str(context), tags=[name], on_output=on_output)
    assert build_leftovers(service) == NOTHING
    assert not [t for t in service.list_tasks() if t.container_id.startswith("ctr-magic-build-")]


@pytest.mark.parametrize(("dockerfile", "expected"), [
    ("FROM busybox\nRUN true\nFOO bar\n", "Dockerfile line 3: unknown instruction FOO"),
    ("FROM busybox\nADD https://example.com/x.tgz /x\n", "remote URL"),
    ("RUN true\n", "Dockerfile line 1: RUN before the first FROM"),
    ("FROM busybox\nCOPY --owner=1 a b\n", "Dockerfile line 2: COPY does not take '--owner'"),
    ("FROM busybox\nONBUILD RUN true\n", "Dockerfile line 2: ONBUILD is not supported"),
])
def test_bad_dockerfile_lines(service: Any, context: Path, name: str, dockerfile: str, expected: str) -> None:
    images_before = {i.name for i in service.list_images()}
    with pytest.raises(errors.InvalidArgument) as bad:
        service.build_image(dockerfile, str(context), tags=[name])
    assert expected in str(bad.value) and "\n" not in str(bad.value)
    assert {i.name for i in service.list_images()} == images_before
    assert build_leftovers(service) == NOTHING


def test_base_pulled_without_unpacking_is_unpacked_by_the_build(service: Any, ctr: Any, test_images: dict[str, str],
                                                                context: Path, name: str, unique_id: str) -> None:
    base = test_images["layers"]
    with contextlib.suppress(errors.NotFound):
        service.delete_image(base, DeleteImageOptions(synchronous=True))
    service.pull_image(base, PullImageOptions(unpack=False))
    service.build_image(f"FROM {base}\nRUN cat /layer-4.txt > /seen.txt\n", str(context), tags=[name])
    assert ctr("run", "--rm", name, unique_id, "cat", "/seen.txt").stdout == "layer 4\n"


def test_a_name_is_needed_and_checked_first(service: Any, context: Path) -> None:
    with pytest.raises(errors.InvalidArgument, match="needs a name"):
        service.build_image("FROM busybox\n", str(context))
    with pytest.raises(errors.InvalidArgument):
        service.build_image("FROM busybox\n", str(context), tags=["Not A Name"])
    assert build_leftovers(service) == NOTHING


def test_push_and_pull_back(service: Any, ctr: Any, registry: str, test_images: dict[str, str], context: Path,
                            unique_id: str) -> None:
    ref = f"{registry}/ctr-magic-test/built-{secrets.token_hex(3)}:1"
    dockerfile = f"FROM {test_images['busybox']}\nCOPY app.txt /app.txt\nCMD [\"cat\", \"/app.txt\"]\n"
    built = service.build_image(dockerfile, str(context), tags=[ref])
    service.push_image(ref)
    service.delete_image(ref, DeleteImageOptions(synchronous=True))
    pulled = service.pull_image(ref, PullImageOptions())
    assert pulled.id == built.digest
    assert ctr("run", "--rm", ref, unique_id).stdout == "version 1\n"


def test_run_gets_a_network_only_with_net(service: Any, test_images: dict[str, str], context: Path,
                                          name: str) -> None:
    dockerfile = f"FROM {test_images['busybox']}\nRUN ip -o -4 addr show eth0 > /addr.txt && cat /addr.txt\n"
    with pytest.raises(StepFailed):
        service.build_image(dockerfile, str(context), tags=[name])
    output: list[bytes] = []
    service.build_image(dockerfile + "RUN grep -q nameserver /etc/resolv.conf\n", str(context), tags=[name],
                        net=True, on_output=lambda stream, data: output.append(data))
    assert b"inet " in b"".join(output)
    tree, _ = containerd_image(service, name)
    assert "/etc/resolv.conf" not in tree  # the host's DNS was mounted for the RUN, not left in the image
    assert build_leftovers(service) == NOTHING


# -- the magic, as a person sees it ----------------------------------------------------------------------


class _InterruptOn:
    """Stands in for the cell's stdout; presses the stop button when *marker* is written."""

    def __init__(self, stream: Any, marker: str) -> None:
        self.stream, self.marker = stream, marker

    def write(self, text: str) -> int:
        if self.marker in text:
            _thread.interrupt_main()
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def test_cell_magic_shows_steps_and_output(environment: Any, namespace: str, service: Any,
                                           test_images: dict[str, str], context: Path, name: str,
                                           monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CTR_MAGIC_HOME", environment.base_dir)
    monkeypatch.chdir(context)
    config = Config()
    config.HistoryManager.enabled = False
    ip = InteractiveShell.instance(config=config)
    ip.run_line_magic("load_ext", "ctr_magic")
    try:
        ip.run_line_magic("config", f"CtrMagic.socket = {environment.containerd_socket!r}")
        ip.run_line_magic("config", f"CtrMagic.namespace = {namespace!r}")
        body = f"FROM {test_images['busybox']}\nCOPY app.txt /\nRUN cat /app.txt; echo warn >&2\n"
        ip.run_cell_magic("ctr", f"build --no-cache -t {name}", body)  # whatever other tests left cached
        out, err = capsys.readouterr()
        lines = out.splitlines()
        assert lines[0].startswith("step 1/3 FROM ")
        assert lines[1].startswith("step 2/3 COPY app.txt /  ") and lines[1].endswith("s")
        assert lines[2] == "step 3/3 RUN cat /app.txt; echo warn >&2"  # the header, before the output
        assert lines[3] == "version 1"
        assert lines[4].startswith("step 3/3 RUN cat /app.txt; echo warn >&2  ")
        assert lines[5].startswith(f"built {name} sha256:")
        assert "warn" in err.splitlines()  # RUN stderr on the cell's stderr
        ip.run_cell_magic("ctr", f"build -t {name}", body)
        out, _ = capsys.readouterr()
        assert "step 3/3 RUN cat /app.txt; echo warn >&2  CACHED" in out and "version 1" not in out

        (context / "Dockerfile").write_text(f"FROM {test_images['busybox']}\nCOPY tool.sh /\n")
        (context / "Other.Dockerfile").write_text(f"FROM {test_images['busybox']}\nCOPY app.txt /other\n")
        ip.run_line_magic("ctr", f"build -q -t {name} {context}")
        out, _ = capsys.readouterr()
        assert out.startswith(f"built {name} ") and "step 1/" not in out
        ip.run_line_magic("ctr", f"build -t {name} . -f Other.Dockerfile")
        out, _ = capsys.readouterr()
        assert "step 2/2 COPY app.txt /other" in out

        ip.run_line_magic("ctr", "build --prune")
        out, _ = capsys.readouterr()
        assert out.startswith("dropped ") and "build cache entr" in out
        ip.run_cell_magic("ctr", f"build -t {name}", body)
        out, _ = capsys.readouterr()
        assert "version 1" in out  # nothing cached any more: the RUN ran again

        failing = f"FROM {test_images['busybox']}\nRUN echo compiling; exit 2\n"
        with pytest.raises(CellFailure) as cell:  # a failed build fails the cell with one line
            ip.run_cell_magic("ctr", f"build -t {name}", failing)
        assert str(cell.value) == "%ctr build: step 2/2 `RUN echo compiling; exit 2` exited with code 2"
        assert "compiling" in capsys.readouterr().out  # the step's output, above the error

        monkeypatch.setattr(sys, "stdout", _InterruptOn(sys.stdout, "started"))
        with pytest.raises(CellFailure) as cell:  # the stop button, while a RUN is running
            ip.run_cell_magic("ctr", f"build -t {name}",
                              f"FROM {test_images['busybox']}\nRUN echo started; sleep 120\n")
        assert "interrupted" in str(cell.value)
        assert build_leftovers(service) == NOTHING
    finally:
        ip.run_line_magic("unload_ext", "ctr_magic")
        ip.config.pop("CtrMagic", None)
