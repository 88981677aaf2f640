"""Host DNS and timezone helpers, against files in a temp dir and the real host files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ctr_magic import errors
from ctr_magic.hosthelpers import (
    FALLBACK_NAMESERVERS,
    apply_host_helpers,
    fallback_resolv_conf,
    host_timezone_name,
    resolve_conf_source,
    timezone_spec,
)
from ctr_magic.types import ContainerSpec, MountSpec


def test_systemd_resolved_file_wins(tmp_path: Path) -> None:
    resolved = tmp_path / "resolved.conf"
    resolved.write_text("nameserver 192.0.2.53\n")
    data = tmp_path / "data"
    assert resolve_conf_source(str(data), resolved_conf=str(resolved)) == str(resolved)
    assert not data.exists(), "nothing is written when systemd-resolved's file is used"


def test_fallback_drops_loopback_keeps_search(tmp_path: Path) -> None:
    host = tmp_path / "host-resolv.conf"
    host.write_text("# comment\nsearch example.internal\nnameserver 127.0.0.53\nnameserver ::1\n"
                    "nameserver 192.0.2.10\noptions edns0\n")
    data = tmp_path / "data"
    path = resolve_conf_source(str(data), resolved_conf=str(tmp_path / "absent"), host_resolv_conf=str(host))
    assert path == str(data / "resolv.conf")
    text = Path(path).read_text()
    assert "127.0.0.53" not in text and "::1" not in text
    assert "nameserver 192.0.2.10" in text and "search example.internal" in text and "options edns0" in text
    assert not any(ns in text for ns in FALLBACK_NAMESERVERS)
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"


def test_fallback_public_when_only_loopback(tmp_path: Path) -> None:
    host = tmp_path / "host-resolv.conf"
    host.write_text("nameserver 127.0.0.53\n")
    path = resolve_conf_source(str(tmp_path), resolved_conf=str(tmp_path / "absent"), host_resolv_conf=str(host))
    assert [line.split()[1] for line in Path(path).read_text().splitlines()] == list(FALLBACK_NAMESERVERS)


def test_fallback_when_host_file_missing(tmp_path: Path) -> None:
    path = resolve_conf_source(str(tmp_path), resolved_conf=str(tmp_path / "absent"),
                               host_resolv_conf=str(tmp_path / "missing"))
    assert "nameserver" in Path(path).read_text()


def test_fallback_rewrite_is_stable(tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.write_text("nameserver 192.0.2.1\n")
    kw = {"resolved_conf": str(tmp_path / "absent"), "host_resolv_conf": str(host)}
    first = resolve_conf_source(str(tmp_path / "d"), **kw)
    inode = os.stat(first).st_ino
    assert resolve_conf_source(str(tmp_path / "d"), **kw) == first
    assert os.stat(first).st_ino == inode, "unchanged content is not rewritten"
    host.write_text("nameserver 192.0.2.2\n")
    resolve_conf_source(str(tmp_path / "d"), **kw)
    assert "192.0.2.2" in Path(first).read_text()
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["resolv.conf"], "no temp file left"


def test_malformed_nameserver_lines_dropped() -> None:
    text = fallback_resolv_conf("nameserver\nnameserver not-an-ip\nnameserver 192.0.2.5\n")
    assert text == "nameserver 192.0.2.5\n"


def test_empty_data_dir_is_invalid() -> None:
    with pytest.raises(errors.InvalidArgument, match="data_dir"):
        resolve_conf_source("")


def test_timezone_spec_from_symlink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TZ", raising=False)
    zone = tmp_path / "usr/share/zoneinfo/Europe/Berlin"
    zone.parent.mkdir(parents=True)
    zone.write_bytes(b"TZif2")
    link = tmp_path / "localtime"
    link.symlink_to(zone)
    mounts, env = timezone_spec(localtime=str(link), timezone_file=str(tmp_path / "absent"))
    assert mounts == [MountSpec(destination="/etc/localtime", type="bind", source=str(zone), options=["rbind", "ro"])]
    assert env == ["TZ=Europe/Berlin"]


def test_timezone_name_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tzfile = tmp_path / "timezone"
    tzfile.write_text("America/Lima\n")
    monkeypatch.setenv("TZ", ":Asia/Tokyo")
    assert host_timezone_name(localtime=str(tmp_path / "x"), timezone_file=str(tzfile)) == "Asia/Tokyo"
    monkeypatch.setenv("TZ", ":/etc/localtime")
    assert host_timezone_name(localtime=str(tmp_path / "x"), timezone_file=str(tzfile)) == "America/Lima"
    monkeypatch.delenv("TZ")
    assert host_timezone_name(localtime=str(tmp_path / "x"), timezone_file=str(tmp_path / "none")) == ""


def test_timezone_spec_without_localtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TZ", raising=False)
    assert timezone_spec(localtime=str(tmp_path / "none"), timezone_file=str(tmp_path / "none")) == ([], [])


def test_timezone_spec_on_this_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TZ", raising=False)
    if not os.path.exists("/etc/localtime"):
        pytest.skip("this host has no /etc/localtime")
    mounts, env = timezone_spec()
    assert mounts[0].destination == "/etc/localtime" and os.path.isfile(mounts[0].source)
    assert not os.path.islink(mounts[0].source)
    assert all(item.startswith("TZ=") and len(item) > 3 for item in env)


def test_apply_host_helpers_adds_mounts_and_tz(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Paris")
    spec = ContainerSpec(cmd=["sh"], env=["A=1"], host_dns=True, host_timezone=True)
    out = apply_host_helpers(spec, str(tmp_path))
    dests = [m.destination for m in out.mounts]
    assert "/etc/resolv.conf" in dests
    assert out.env == ["A=1", "TZ=Europe/Paris"]
    resolv = next(m for m in out.mounts if m.destination == "/etc/resolv.conf")
    assert resolv.options == ["rbind", "ro"] and os.path.isfile(resolv.source)
    assert spec.mounts == [] and spec.env == ["A=1"], "the caller's spec is not modified"


def test_apply_host_helpers_explicit_settings_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Paris")
    own = MountSpec(destination="/etc/resolv.conf/", source="/tmp/mine")
    spec = ContainerSpec(env=["TZ=UTC"], mounts=[own], host_dns=True, host_timezone=True)
    out = apply_host_helpers(spec, str(tmp_path))
    assert [m.source for m in out.mounts if m.destination.startswith("/etc/resolv.conf")] == ["/tmp/mine"]
    assert out.env == ["TZ=UTC"]
    assert apply_host_helpers(ContainerSpec(dns=["192.0.2.1"], host_dns=True), str(tmp_path)).mounts == []


def test_apply_host_helpers_flags_off_is_identity(tmp_path: Path) -> None:
    spec = ContainerSpec(cmd=["true"], env=["X=1"])
    assert apply_host_helpers(spec, str(tmp_path)) == spec
    assert not any(tmp_path.iterdir())
