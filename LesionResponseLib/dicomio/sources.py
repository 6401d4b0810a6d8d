"""The files of an input as people keep them: folder trees with symbolic links, ZIP archives, DICOMDIR media.

:func:`list_files` walks a folder (or takes one file), follows symbolic links to folders and files, and reads
each real folder and file once (a link loop or a second link to a folder already read is listed, not walked
again). A ZIP archive (found by its signature ``PK\\x03\\x04``, whatever its name) is unpacked into
``unpack_dir/<name>-<key>`` (key: a hash of the archive's absolute path, size and modification time, so a second
run reuses it and the file paths recorded in ``TimePointInfo.pet_files`` stay valid) and its files are listed
in turn. Everything not listed for reading is in :attr:`FileSources.not_read` with the reason: hidden files,
DICOMDIR (the media's directory: its images are read from the folder tree, which is where it points), broken
links, loops, unreadable folders, archives that cannot be unpacked or are not ZIP.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ZIP_SIGNATURE = b"PK\x03\x04"
#: Archives of other formats are named so that the user unpacks them (only ZIP is read directly).
OTHER_ARCHIVES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".7z", ".rar")
#: Where archives are unpacked when the caller gives no folder (``inspect``): the system temporary folder.
DEFAULT_UNPACK_DIR = Path(tempfile.gettempdir()) / "lesion-response-archives"
HIDDEN = "hidden file (name starts with '.')"
DICOMDIR = "DICOMDIR: the media's directory; the images it lists are read from the folder tree"
COMPLETE = ".unpacked"  # suffix of the marker written beside an unpacked archive's folder, once it is complete


@dataclass
class FileSources:
    """The files to read and what was not read (path, reason)."""

    files: list[Path] = field(default_factory=list)
    not_read: list[tuple[str, str]] = field(default_factory=list)
    archives: dict[str, str] = field(default_factory=dict)  # archive path → folder it was unpacked into


def list_files(root: str | Path, *, unpack_dir: str | Path | None = None) -> FileSources:
    """Every file to read under ``root`` (module docstring); ``unpack_dir`` receives unpacked archives."""
    sources = FileSources()
    # absolute (links kept as named): analysis.json records these paths, and an export from another working
    # directory must still find the source PET
    _Walker(sources, Path(unpack_dir) if unpack_dir else DEFAULT_UNPACK_DIR).take(Path(root).absolute())
    return sources


class _Walker:
    def __init__(self, sources: FileSources, unpack_dir: Path | None) -> None:
        self.sources = sources
        self.unpack_dir = unpack_dir  # None: list every file as it is (no archive unpacked, nothing left out)
        self.seen_dirs: dict[tuple[int, int], str] = {}
        self.seen_files: dict[tuple[int, int], str] = {}

    def take(self, path: Path) -> None:
        if path.is_dir():
            self._walk(path)
        else:
            self._file(path)

    def _walk(self, top: Path) -> None:
        if not self._first_visit(top, self.seen_dirs, "folder"):
            return
        for dirpath, dirnames, filenames in os.walk(top, followlinks=True, onerror=self._unreadable_folder):
            kept = []
            for name in sorted(dirnames):
                if self._first_visit(Path(dirpath) / name, self.seen_dirs, "folder"):
                    kept.append(name)
            dirnames[:] = kept
            for name in sorted(filenames):
                self._file(Path(dirpath) / name)

    def _first_visit(self, path: Path, seen: dict[tuple[int, int], str], what: str) -> bool:
        """Record ``path``'s real file-system object; False (listed) when it was already visited."""
        try:
            stat = path.stat()
        except OSError as err:
            self.sources.not_read.append((str(path), _broken(path, err)))
            return False
        key = (stat.st_dev, stat.st_ino)
        if key in seen:
            loop = what == "folder" and Path(seen[key]) in path.parents
            reason = (f"symbolic link loop: {os.path.realpath(path)} is a folder above it" if loop else
                      f"the same {what} as {seen[key]} (reached again through a symbolic link): read once")
            self.sources.not_read.append((str(path), reason))
            return False
        seen[key] = str(path)
        return True

    def _unreadable_folder(self, err: OSError) -> None:
        self.sources.not_read.append((str(err.filename), f"folder cannot be read ({err.strerror})"))

    def _file(self, path: Path) -> None:
        name = path.name
        if self.unpack_dir is None:
            if self._first_visit(path, self.seen_files, "file"):
                self.sources.files.append(path)
            return
        if name.startswith("."):
            self.sources.not_read.append((str(path), HIDDEN))
            return
        if name.upper() == "DICOMDIR":
            self.sources.not_read.append((str(path), DICOMDIR))
            return
        if not self._first_visit(path, self.seen_files, "file"):
            return
        if _is_zip(path):
            self._archive(path)
        elif name.lower().endswith(OTHER_ARCHIVES):
            self.sources.not_read.append((str(path), "archive in a format other than ZIP: unpack it first"))
        else:
            self.sources.files.append(path)

    def _archive(self, path: Path) -> None:
        assert self.unpack_dir is not None
        try:
            folder = unpack_zip(path, self.unpack_dir)
        except (zipfile.BadZipFile, RuntimeError, OSError, NotImplementedError) as err:
            self.sources.not_read.append((str(path), f"ZIP archive cannot be unpacked ({type(err).__name__}: "
                                                     f"{err})"))
            return
        self.sources.archives[str(path)] = str(folder)
        self._walk(folder)


def _broken(path: Path, err: OSError) -> str:
    if path.is_symlink():
        return f"broken symbolic link to {os.readlink(path)}"
    return f"cannot be read ({err.strerror})"


def _is_zip(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == ZIP_SIGNATURE
    except OSError:
        return False


def archive_key(path: Path) -> str:
    """``<name>-<hash of absolute path, size, mtime>``: the same archive unpacks into the same folder."""
    stat = path.stat()
    digest = hashlib.sha256(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return f"{path.stem[:40]}-{digest}"


def unpack_zip(path: Path, unpack_dir: Path) -> Path:
    """``path`` unpacked into ``unpack_dir/<archive_key>`` (reused when complete; written atomically)."""
    target = unpack_dir / archive_key(path)
    marker = target.with_name(target.name + COMPLETE)
    if marker.is_file() and target.is_dir():
        return target
    unpack_dir.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=unpack_dir))
    try:
        with zipfile.ZipFile(path) as archive:
            archive.extractall(partial)  # zipfile drops absolute paths and '..' parts: nothing lands outside
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        marker.touch()
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target


def walk_files(root: str | Path) -> Iterable[Path]:
    """Every regular file under ``root`` as :func:`list_files` reads them (links followed once, no archives
    unpacked): what an input's fingerprint hashes."""
    sources = FileSources()
    _Walker(sources, None).take(Path(root))
    return sources.files
