"""Evidence layouts: every collection shape is built in tmp_path, zipped and extracted."""

from __future__ import annotations

import json
import os
import stat
import zipfile
from collections.abc import Iterable
from pathlib import Path

import pytest

from exhunt.layouts import Collection, discover
from exhunt.layouts.velociraptor import unescape
from exhunt.model import Diagnostic

HTTPPROXY = "Program Files/Microsoft/Exchange Server/V15/Logging/HttpProxy/Ecp/HttpProxy_2021030300-1.LOG"
IIS = "inetpub/logs/LogFiles/W3SVC1/u_ex210303.log"
EVTX = "Windows/System32/winevt/Logs/MSExchange Management.evtx"
D_HTTPPROXY = "Exchange Server/V15/Logging/HttpProxy/Owa/HttpProxy_2021030301-1.LOG"


def win(path: str, drive: str = "C:") -> str:
    return drive + "\\" + path.replace("/", "\\")


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


def write_zip(path: Path, files: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def only(collections: list[Collection]) -> Collection:
    assert len(collections) == 1
    return collections[0]


def paths(collection: Collection) -> list[str]:
    return [file.path for file in collection.files]


def codes(diagnostics: Iterable[Diagnostic]) -> list[str]:
    return [diagnostic.code for diagnostic in diagnostics]


# --- Windows root --------------------------------------------------------------------------


def test_windows_root_folder_maps_to_c(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "mnt", {HTTPPROXY: b"a", IIS: b"bb", EVTX: b"ccc"})
    collections, diagnostics = discover([root])
    collection = only(collections)
    assert diagnostics == []
    assert (collection.layout, collection.label, collection.root, collection.hostname) == (
        "windows-root", "mnt", str(root), None)
    assert paths(collection) == sorted([win(HTTPPROXY), win(IIS), win(EVTX)])
    proxy = next(file for file in collection.files if file.path == win(HTTPPROXY))
    assert proxy.container is None
    assert proxy.member == str(root / HTTPPROXY)
    assert proxy.size == 1


def test_windows_root_marker_is_case_insensitive_and_zip_works(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "image.zip", {"INETPUB/logs/LogFiles/W3SVC2/u_ex210303.log": b"x"})
    collection = only(discover([archive])[0])
    assert collection.layout == "windows-root"
    assert collection.label == "image"
    assert paths(collection) == ["C:\\INETPUB\\logs\\LogFiles\\W3SVC2\\u_ex210303.log"]


# --- KAPE --------------------------------------------------------------------------------


KAPE = {
    f"C/{HTTPPROXY}": b"proxy",
    f"C/{IIS}": b"iis",
    f"C/{EVTX}": b"evtx",
    f"D/{D_HTTPPROXY}": b"d-drive",
    "2021-03-05T10_00_00_1234567_ConsoleLog.txt": b"kape console",
}
KAPE_PATHS = sorted([
    win(HTTPPROXY), win(IIS), win(EVTX), win(D_HTTPPROXY, "D:"), "2021-03-05T10_00_00_1234567_ConsoleLog.txt",
])


def test_kape_folder(tmp_path: Path) -> None:
    tdest = write_tree(tmp_path / "EXCH01", KAPE)
    collections, diagnostics = discover([str(tdest)])
    collection = only(collections)
    assert diagnostics == []
    assert (collection.layout, collection.label, collection.hostname) == ("kape", "EXCH01", None)
    assert paths(collection) == KAPE_PATHS


def test_kape_zip(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "EXCH01.zip", KAPE)
    collection = only(discover([archive])[0])
    assert (collection.layout, collection.label, collection.root) == ("kape", "EXCH01", str(archive))
    assert paths(collection) == KAPE_PATHS
    proxy = next(file for file in collection.files if file.path == win(HTTPPROXY))
    assert (proxy.container, proxy.member, proxy.size) == (str(archive), f"C/{HTTPPROXY}", 5)


@pytest.mark.parametrize("drive_folder", ["c", "C:", "e"])
def test_kape_drive_folder_spellings(tmp_path: Path, drive_folder: str) -> None:
    tdest = write_tree(tmp_path / "tdest", {f"{drive_folder}/{IIS}": b"x"})
    collection = only(discover([tdest])[0])
    assert collection.layout == "kape"
    assert paths(collection) == [win(IIS, drive_folder[0].upper() + ":")]


# --- CyLR --------------------------------------------------------------------------------


@pytest.mark.parametrize("separator", ["\\", "/"])
def test_cylr_zip(tmp_path: Path, separator: str) -> None:
    members = {f"C{separator}{name.replace('/', separator)}": b"x" for name in (EVTX, IIS)}
    archive = write_zip(tmp_path / "EXCH03.zip", {**members, "CyLR.log": b"log"})
    collection = only(discover([archive])[0])
    assert (collection.layout, collection.label) == ("cylr", "EXCH03")
    assert paths(collection) == sorted([win(EVTX), win(IIS), "CyLR.log"])
    assert {file.member for file in collection.files} == {*members, "CyLR.log"}


def test_cylr_extracted_folder(tmp_path: Path) -> None:
    folder = write_tree(tmp_path / "EXCH03", {f"C/{EVTX}": b"x", "CyLR.log": b"log"})
    collection = only(discover([folder])[0])
    assert collection.layout == "cylr"
    assert win(EVTX) in paths(collection)


# --- Velociraptor ------------------------------------------------------------------------

VR_UPLOADS = {
    f"uploads/auto/C%3A/{HTTPPROXY}": b"proxy",
    f"uploads/auto/C%3A/{IIS}": b"iis-auto",
    f"uploads/ntfs/%5C%5C.%5CC%3A/{IIS}": b"iis-ntfs",
    f"uploads/ntfs/%5C%5C.%5Cc%3A/{EVTX}": b"evtx",
    "uploads/auto/C%3A/Windows/System32/winevt/Logs/Microsoft-Windows-PowerShell%254Operational.evtx": b"ps",
    "uploads/file/C%3A/Windows/System32/winevt/Logs/Microsoft-Windows-PowerShell%254Admin.evtx": b"ps-old",
    "uploads/lazy_ntfs/%5C%5C.%5CC%3A/Windows/System32/winevt/Logs/Microsoft-Windows-PowerShell%4Admin.evtx":
        b"ps-older-collector",
    f"uploads/auto/D%3A/{D_HTTPPROXY}": b"d-drive",
    f"uploads/ntfs/%5C%5C%3F%5CGLOBALROOT%5CDevice%5CHarddiskVolumeShadowCopy1/{IIS}": b"vss",
    "uploads/ntfs/%5C%5C.%5CC%3A/%2Eexchange%20": b"leading dot, trailing space",
}
VR_METADATA = {
    "uploads.json": b"{}",
    "uploads.json.index": b"",
    "log.json": b"{}",
    "collection_context.json": b"{}",
    "results/Windows.KapeFiles.Targets%2FUploads.json": b"{}",
}
VR_PATHS = sorted([
    win(HTTPPROXY),
    win(IIS),
    win(EVTX),
    "C:\\Windows\\System32\\winevt\\Logs\\Microsoft-Windows-PowerShell%4Operational.evtx",
    "C:\\Windows\\System32\\winevt\\Logs\\Microsoft-Windows-PowerShell%4Admin.evtx",
    win(D_HTTPPROXY, "D:"),
    "\\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopy1\\" + IIS.replace("/", "\\"),
    "C:\\.exchange ",
])


def velociraptor(where: Path, zipped: bool, client_info: bytes | None) -> Path:
    files = {**VR_UPLOADS, **VR_METADATA}
    if client_info is not None:
        files["client_info.json"] = client_info
    return write_zip(where.with_suffix(".zip"), files) if zipped else write_tree(where, files)


@pytest.mark.parametrize("zipped", [True, False])
def test_velociraptor_collection(tmp_path: Path, zipped: bool) -> None:
    info = json.dumps({"ClientId": "", "Hostname": "EXCH02", "Fqdn": "exch02.corp.local"}).encode()
    root = velociraptor(tmp_path / "Collection-EXCH02-2021-03-05T10_00_00Z", zipped, info)
    collections, diagnostics = discover([root])
    collection = only(collections)
    assert diagnostics == []
    assert (collection.layout, collection.hostname, collection.label) == (
        "velociraptor", "EXCH02", "Collection-EXCH02-2021-03-05T10_00_00Z")
    assert paths(collection) == VR_PATHS
    iis = next(file for file in collection.files if file.path == win(IIS))
    assert iis.member.endswith(f"uploads/auto/C%3A/{IIS}")  # auto wins over ntfs
    with iis.open() as stream:
        assert stream.read() == b"iis-auto"
    older = next(file for file in collection.files if file.path.endswith("PowerShell%4Admin.evtx"))
    assert "/lazy_ntfs/" in older.member  # lazy_ntfs is preferred to file


@pytest.mark.parametrize(("content", "hostname"), [
    (b'[{"Hostname": "EXCH04", "OS": "windows"}]', "EXCH04"),
    (b'{"hostname": "exch04"}\n{"other": 1}\n', "exch04"),
    (b'\xef\xbb\xbf{"Fqdn": "exch04.corp.local"}', "exch04.corp.local"),
    (b'{"os_info": {"hostname": "EXCH05", "fqdn": "exch05.corp.local"}}', "EXCH05"),
    (b'{"Fqdn": "exch06.corp.local", "Hostname": "EXCH06"}', "EXCH06"),
    (b'{"ClientId": ""}', None),
])
def test_velociraptor_client_info_shapes(tmp_path: Path, content: bytes, hostname: str | None) -> None:
    collection = only(discover([velociraptor(tmp_path / "c", True, content)])[0])
    assert collection.hostname == hostname
    assert collection.diagnostics == ()


@pytest.mark.parametrize("content", [b"{not json", b"42", b"\xff\xfe\x00garbage"])
def test_velociraptor_bad_client_info_is_diagnosed(tmp_path: Path, content: bytes) -> None:
    collections, diagnostics = discover([velociraptor(tmp_path / "Collection-X", True, content)])
    collection = only(collections)
    assert (collection.hostname, collection.label) == (None, "Collection-X")
    assert codes(collection.diagnostics) == ["EXH-L005"]
    assert diagnostics == list(collection.diagnostics)
    assert diagnostics[0].source.endswith("Collection-X.zip!client_info.json")
    assert paths(collection) == VR_PATHS


def test_velociraptor_without_client_info_has_no_hostname(tmp_path: Path) -> None:
    collection = only(discover([velociraptor(tmp_path / "Collection-X", False, None)])[0])
    assert (collection.layout, collection.hostname, collection.diagnostics) == ("velociraptor", None, ())


def test_velociraptor_decoded_traversal_is_refused(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "vr.zip", {
        "uploads/auto/C%3A/%2E%2E/%2E%2E/evil.aspx": b"x",
        "uploads/auto/C%3A/a%5C..%5Cb.aspx": b"x",
        f"uploads/auto/C%3A/{IIS}": b"ok",
        "uploads.json": b"{}",
    })
    collection = only(discover([archive])[0])
    assert paths(collection) == [win(IIS)]
    assert codes(collection.diagnostics) == ["EXH-L003", "EXH-L003"]


@pytest.mark.parametrize(("escaped", "plain"), [
    ("Microsoft-Windows-PowerShell%254Operational.evtx", "Microsoft-Windows-PowerShell%4Operational.evtx"),
    ("Microsoft-Windows-PowerShell%4Operational.evtx", "Microsoft-Windows-PowerShell%4Operational.evtx"),
    ("%5C%5C.%5CC%3A", "\\\\.\\C:"),
    ("$UsnJrnl%3A$Max", "$UsnJrnl:$Max"),
    ("%2Ehidden%20", ".hidden "),
    ("a%3F%22%2A%7C%3C%3E%2Fb", 'a?"*|<>/b'),
    ("tab%09end", "tab\tend"),
    ("%41%7E%2525", "%41%7E%25"),
    ("Exchange Server", "Exchange Server"),
])
def test_unescape_decodes_once_and_only_escaped_characters(escaped: str, plain: str) -> None:
    assert unescape(escaped) == plain


# --- Folder of collections -----------------------------------------------------------------


def test_folder_of_three_collections(tmp_path: Path) -> None:
    case = tmp_path / "case"
    write_tree(case / "EXCH01", KAPE)
    velociraptor(case / "Collection-EXCH02-20210305", True, b'{"Hostname": "EXCH02"}')
    write_zip(case / "EXCH03.zip", {"C\\" + EVTX.replace("/", "\\"): b"x", "CyLR.log": b""})
    collections, diagnostics = discover([case])
    assert diagnostics == []
    assert [(c.label, c.layout, c.hostname, len(c.files)) for c in collections] == [
        ("Collection-EXCH02-20210305", "velociraptor", "EXCH02", len(VR_PATHS)),
        ("EXCH01", "kape", None, len(KAPE)),
        ("EXCH03", "cylr", None, 2),
    ]
    assert [c.root for c in collections] == [
        str(case / "Collection-EXCH02-20210305.zip"), str(case / "EXCH01"), str(case / "EXCH03.zip")]
    assert paths(collections[1]) == KAPE_PATHS


def test_folder_of_collections_keeps_other_children_as_files(tmp_path: Path) -> None:
    case = tmp_path / "case"
    write_tree(case / "EXCH01", KAPE)
    write_tree(case, {"admin-copy/HttpProxy/Ecp/HttpProxy_2021030300-1.LOG": b"x", "notes.txt": b"n"})
    write_zip(case / "more-logs.zip", {"W3SVC1/u_ex210303.log": b"x"})
    (case / "broken.zip").write_bytes(b"PK\x03\x04 not really a zip")
    collections, diagnostics = discover([case])
    assert [(c.label, c.layout) for c in collections] == [
        ("EXCH01", "kape"), ("admin-copy", "files"), ("more-logs", "files"), ("case", "files")]
    assert paths(collections[1]) == ["HttpProxy\\Ecp\\HttpProxy_2021030300-1.LOG"]
    assert paths(collections[2]) == ["W3SVC1\\u_ex210303.log"]
    assert paths(collections[3]) == ["notes.txt"]
    assert codes(diagnostics) == ["EXH-L002"]
    assert diagnostics[0].source == str(case / "broken.zip")


def test_folder_without_collections_is_plain_files(tmp_path: Path) -> None:
    folder = write_tree(tmp_path / "from-admin", {
        "HttpProxy/Ecp/HttpProxy_2021030300-1.LOG": b"x",
        "HttpProxy/Owa/HttpProxy_2021030300-1.LOG": b"y",
        "u_ex210303.log": b"z",
    })
    collection = only(discover([folder])[0])
    assert (collection.layout, collection.label) == ("files", "from-admin")
    assert paths(collection) == [
        "HttpProxy\\Ecp\\HttpProxy_2021030300-1.LOG", "HttpProxy\\Owa\\HttpProxy_2021030300-1.LOG",
        "u_ex210303.log"]


# --- Plain files ---------------------------------------------------------------------------


def test_single_loose_file(tmp_path: Path) -> None:
    log = write_tree(tmp_path, {"u_ex210303.log": b"#Fields: date time\n"}) / "u_ex210303.log"
    collection = only(discover([log])[0])
    assert (collection.layout, collection.label, collection.root) == ("files", "u_ex210303.log", str(log))
    (file,) = collection.files
    assert (file.path, file.container, file.member, file.size) == ("u_ex210303.log", None, str(log), 19)
    with file.open() as stream:
        assert stream.read() == b"#Fields: date time\n"


def test_plain_zip_keeps_relative_names(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "logs.zip", {
        "Ecp/HttpProxy_2021030300-1.LOG": b"ecp", "Ecp/": b"", "W3SVC1\\u_ex210303.log": b"iis"})
    collection = only(discover([archive])[0])
    assert (collection.layout, collection.label) == ("files", "logs")
    assert paths(collection) == ["Ecp\\HttpProxy_2021030300-1.LOG", "W3SVC1\\u_ex210303.log"]
    with collection.files[1].open() as stream:
        assert stream.read() == b"iis"


# --- Hostile and broken input ----------------------------------------------------------------


def test_unsafe_zip_entries_are_skipped(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "hostile.zip", {
        "../evil.aspx": b"x",
        "/abs/u_ex210303.log": b"x",
        "\\\\server\\share\\x.log": b"x",
        "C/inetpub/..\\..\\..\\evil.aspx": b"x",
        f"C:/{IIS}": b"good",
        f"C/{EVTX}": b"good",
    })
    collections, diagnostics = discover([archive])
    collection = only(collections)
    assert collection.layout == "kape"
    assert paths(collection) == sorted([win(IIS), win(EVTX)])
    assert codes(collection.diagnostics) == ["EXH-L003"] * 4
    assert diagnostics == list(collection.diagnostics)
    assert {d.source for d in diagnostics} == {
        f"{archive}!../evil.aspx", f"{archive}!/abs/u_ex210303.log", f"{archive}!\\\\server\\share\\x.log",
        f"{archive}!C/inetpub/..\\..\\..\\evil.aspx"}
    assert not any(".." in path for path in paths(collection))


def test_corrupt_zip_and_missing_path_do_not_stop_the_others(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(b"PK\x03\x04" + b"\x00" * 64)
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(write_zip(tmp_path / "whole.zip", KAPE).read_bytes()[:-30])
    missing = tmp_path / "no-such-folder"
    good = write_tree(tmp_path / "EXCH01", {f"C/{IIS}": b"x"})
    collections, diagnostics = discover([corrupt, missing, good, truncated])
    assert [(c.label, c.layout) for c in collections] == [("EXCH01", "kape")]
    assert [(d.code, d.source) for d in diagnostics] == [
        ("EXH-L002", str(corrupt)), ("EXH-L001", str(missing)), ("EXH-L002", str(truncated))]
    assert all(d.level == "error" for d in diagnostics)


def test_symlink_leaving_the_root_is_not_followed(tmp_path: Path) -> None:
    outside = write_tree(tmp_path / "outside", {"secret.txt": b"s", "dir/x.log": b"x"})
    folder = write_tree(tmp_path / "evidence", {"HttpProxy/Ecp/HttpProxy_2021030300-1.LOG": b"x"})
    (folder / "secret.txt").symlink_to(outside / "secret.txt")
    (folder / "HttpProxy" / "out").symlink_to(outside / "dir")
    (folder / "inside-link.LOG").symlink_to(folder / "HttpProxy/Ecp/HttpProxy_2021030300-1.LOG")
    collections, diagnostics = discover([folder])
    collection = only(collections)
    assert paths(collection) == ["HttpProxy\\Ecp\\HttpProxy_2021030300-1.LOG"]
    assert [(d.code, d.source) for d in collection.diagnostics] == [
        ("EXH-L004", str(folder / "HttpProxy" / "out")), ("EXH-L004", str(folder / "secret.txt"))]
    assert diagnostics == list(collection.diagnostics)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root can list any directory, so chmod cannot make one unlistable")
def test_unlistable_directory_is_diagnosed(tmp_path: Path) -> None:
    folder = write_tree(tmp_path / "logs", {"locked/a.log": b"a", "open/b.log": b"b"})
    (folder / "locked").chmod(0)
    try:
        collections, diagnostics = discover([folder])
    finally:
        (folder / "locked").chmod(0o755)
    assert paths(only(collections)) == ["open\\b.log"]
    assert [(d.code, d.source) for d in diagnostics] == [("EXH-L006", str(folder / "locked"))]


# --- Read-only evidence --------------------------------------------------------------------


def snapshot(root: Path) -> dict[Path, tuple[bytes, int]]:
    return {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in root.rglob("*") if path.is_file()}


def test_read_only_tree_is_scanned_and_left_unchanged(tmp_path: Path) -> None:
    case = tmp_path / "case"
    write_tree(case / "EXCH01", KAPE)
    velociraptor(case / "Collection-EXCH02", True, b'{"Hostname": "EXCH02"}')
    write_tree(case / "mnt", {HTTPPROXY: b"a", IIS: b"b"})
    before = snapshot(case)
    modes = {path: path.stat().st_mode for path in [case, *case.rglob("*")]}
    try:
        for path in modes:
            path.chmod(stat.S_IMODE(modes[path]) & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        collections, diagnostics = discover([case])
        assert diagnostics == []
        assert [(c.label, c.layout) for c in collections] == [
            ("Collection-EXCH02", "velociraptor"), ("EXCH01", "kape"), ("mnt", "windows-root")]
        for collection in collections:
            for file in collection.files:
                with file.open() as stream:
                    assert len(stream.read()) == file.size
        assert snapshot(case) == before
    finally:
        for path, mode in modes.items():
            path.chmod(stat.S_IMODE(mode))


def test_output_is_deterministic_and_in_the_order_given(tmp_path: Path) -> None:
    kape = write_tree(tmp_path / "b-kape", KAPE)
    vr = velociraptor(tmp_path / "a-vr", True, b'{"Hostname": "EXCH02"}')
    first = discover([kape, vr])
    assert [c.label for c in first[0]] == ["b-kape", "a-vr"]
    assert discover([kape, vr]) == first
    assert os.fspath(kape) == first[0][0].root


def test_members_of_one_zip_share_one_open_archive_until_it_changes(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from exhunt.layouts.evidence import EvidenceFile

    path = tmp_path / "c.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.log", "one")
        archive.writestr("b.log", "two")
    opened: list[str] = []
    real = zipfile.ZipFile

    def counting(file: str, *args: object, **kwargs: object) -> zipfile.ZipFile:
        opened.append(str(file))
        return real(file, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(zipfile, "ZipFile", counting)
    members = [EvidenceFile(name, str(path), name, 3) for name in ("a.log", "b.log")]
    for _ in range(3):
        for member, text in zip(members, (b"one", b"two"), strict=True):
            with member.open() as stream:
                assert stream.read() == text
    assert opened == [str(path)]  # the central directory is read once, not once per member
    with real(path, "w") as archive:  # the collection is replaced on disk
        archive.writestr("a.log", "three")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    with members[0].open() as stream:
        assert stream.read() == b"three"
