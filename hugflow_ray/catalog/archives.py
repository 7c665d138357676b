"""Safe extraction of a URL source's archive (tar, tar.gz, zip, or a single file) into a directory.

An archive comes from the internet, so every member is checked and written here, one at a time, never by
``extractall``: a member path that is absolute, holds ``..`` or resolves outside the tree is refused, and so are
devices, FIFOs and every member type other than a regular file or a directory. Files get mode 0o644 and
directories 0o755 whatever the archive says (no setuid, no world-writable files). The bytes actually written are
counted against ``max_bytes`` and extraction stops at the first byte past it (an archive's headers may lie); the
number of members is capped too.

Links:

* **Symbolic links are refused, every one, even those that point inside the tree.** A tree without links cannot
  lead any later reader (the files copier, a user's script) outside it, whatever that reader does; a link that
  points inside today can point elsewhere once the tree is moved or copied, and a link used as a directory by a
  later member would make every write below it a question. Datasets do not need them: repack such an archive with
  the files themselves (``tar --dereference``; zip without ``--symlinks``).
* **A hard link (tar) to a regular file extracted before it is written as a copy of that file**, counted
  against ``max_bytes`` like any file: that is what a hard link means inside an archive, and a copy shares no inode
  with anything outside. A hard link to anything else (outside the tree, a later member) is refused.

Extraction goes to a hidden sibling directory (``.<target>.extracting``), which is renamed to ``target`` only once
it is complete and marked (:data:`COMPLETE_MARKER`); a refusal or an interruption removes it, so nothing is ever
left at ``target`` or beside it. One extraction at a time per target (the caller holds the dataset's lock).
"""

from __future__ import annotations

import gzip
import lzma
import os
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import IO

from hugflow_ray.core.catalog import ArchiveFormat
from hugflow_ray.errors import ArchiveError
from hugflow_ray.utils.atomic import fsync_dir, sync_filesystem

MAX_MEMBERS = 200_000  # entries (files, directories, links) one archive may hold
COPY_CHUNK_BYTES = 1024 * 1024  # one read and one write at a time: memory stays bounded whatever a member's size
COMPLETE_MARKER = ".hugflow-extracted"  # written last, inside the tree: a target holding it is complete
EXTRACTING_SUFFIX = ".extracting"
FILE_MODE = 0o644
DIR_MODE = 0o755
LINK_TARGET_BYTES = 4096  # PATH_MAX: the most of a zip symlink's target read, to name it in the message
ZIP_ENCRYPTED_FLAG = 0x1
_TAR_MODES = {ArchiveFormat.TAR: "r:", ArchiveFormat.TAR_GZ: "r:gz", ArchiveFormat.TAR_XZ: "r:xz",
              ArchiveFormat.TAR_BZ2: "r:bz2"}
_DAMAGED = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError,
            NotImplementedError)
_CONFLICTS = (IsADirectoryError, NotADirectoryError, FileExistsError)
_REPACK = "repack the archive without it, or use another source"


def extract(archive: Path, fmt: ArchiveFormat, target: Path, *, max_bytes: int,
            max_members: int = MAX_MEMBERS, identity: str = "") -> Path:
    """Extract ``archive`` into the directory ``target``, all or nothing.

    A ``target`` whose :data:`COMPLETE_MARKER` names this archive (its ``identity``, the source's sha256) is
    complete already and returned as it is; one marked for another archive is an earlier source's, removed first.

    Args:
        archive: the (verified) downloaded file.
        fmt: how it is packed; ``none``: ``target`` gets the file itself, under its own name.
        target: the directory to create; its parent is created when missing.
        max_bytes: the most bytes the extracted files may hold together.
        max_members: the most entries the archive may hold.

    Returns:
        ``target``.

    Raises:
        ArchiveError: a member is unsafe (absolute, ``..``, outside the tree, a symbolic link, a hard link to no
            earlier file, a device, a FIFO), the archive expands past ``max_bytes`` or ``max_members``, it is
            damaged or not of its format, or ``target`` exists without being a complete extraction.
    """
    mark = f"{archive.name} {fmt} {identity}\n"
    if (target / COMPLETE_MARKER).is_file():
        if (target / COMPLETE_MARKER).read_text(errors="replace") == mark:
            return target
        _remove(target)  # complete, but of another archive: never read as this one's
    if target.exists() or target.is_symlink():
        raise ArchiveError(f"{target} exists but is not a complete extraction of {archive.name}: remove it and run "
                           f"again", archive=archive)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}{EXTRACTING_SUFFIX}")
    _remove(temp)  # what an interrupted run left
    temp.mkdir(mode=DIR_MODE)
    try:
        writer = _Writer(archive, temp, max_bytes=max_bytes, max_members=max_members)
        try:
            if fmt is ArchiveFormat.NONE:
                writer.single_file()
            elif fmt is ArchiveFormat.ZIP:
                _extract_zip(writer)
            else:
                _extract_tar(writer, _TAR_MODES[fmt])
        except _DAMAGED as e:
            raise ArchiveError(f"{archive}: cannot be read as {fmt} ({type(e).__name__}: {e}): the download is "
                               f"damaged or the catalog's archive format is wrong: check the format, delete the "
                               f"file and run again", archive=archive) from e
        (temp / COMPLETE_MARKER).write_text(mark)
        sync_filesystem(temp)
        os.replace(temp, target)
        fsync_dir(target.parent)
    except (OSError, UnicodeError) as e:  # a member name this filesystem refuses, a full disk, a name not text
        _remove(temp)
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ArchiveError(f"{archive}: cannot be extracted on this machine ({type(e).__name__}: {why}): free space "
                           f"if the disk is full, else {_REPACK}", archive=archive) from None
    except BaseException:
        _remove(temp)
        raise
    return target


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


class _Writer:
    """Writes checked members under ``root`` and keeps the counts the limits apply to."""

    def __init__(self, archive: Path, root: Path, *, max_bytes: int, max_members: int) -> None:
        self.archive, self.root, self.real_root = archive, root, root.resolve()
        self.max_bytes, self.max_members = max_bytes, max_members
        self.written = 0
        self.members = 0
        self.files: dict[tuple[str, ...], Path] = {}  # the regular files written so far, for hard links

    def refuse(self, member: str | None, problem: str, fix: str = _REPACK) -> ArchiveError:
        where = f"{self.archive}: member {member!r}" if member is not None else f"{self.archive}"
        return ArchiveError(f"{where} {problem}: {fix}; nothing was extracted", archive=self.archive, member=member)

    def count(self, name: str) -> None:
        self.members += 1
        if self.members > self.max_members:
            raise self.refuse(name, f"is past the {self.max_members} members an archive may hold",
                              "check the archive; if it is right, extract it with a larger member limit")

    def parts(self, name: str, *, member: str | None = None) -> tuple[str, ...]:
        """``name`` as path components under the root; ``member``: the member to blame (a link's own name).

        Raises:
            ArchiveError: the name is absolute, holds ``..`` or a NUL, is the completion marker, or resolves
                outside the tree.
        """
        blamed = name if member is None else member
        what = "path" if member is None else f"link target {name!r}"
        if "\x00" in name:
            raise self.refuse(blamed, f"has a NUL byte in its {what}")
        if name.startswith("/") or PurePosixPath(name).is_absolute():
            raise self.refuse(blamed, f"has an absolute {what}, outside the extraction directory")
        parts = tuple(p for p in name.split("/") if p not in ("", "."))
        if ".." in parts:
            raise self.refuse(blamed, f"has '..' in its {what}, which could leave the extraction directory")
        if parts == (COMPLETE_MARKER,):
            raise self.refuse(blamed, f"is named {COMPLETE_MARKER}, the name kept for the completion marker")
        if not self.root.joinpath(*parts).resolve().is_relative_to(self.real_root):
            raise self.refuse(blamed, f"resolves outside the extraction directory ({what})")
        return parts

    def directory(self, name: str) -> None:
        self._directories(self.parts(name), name)

    def file(self, name: str, source: IO[bytes], *, declared: int) -> None:
        """Write a regular file from ``source``, a chunk at a time, stopping at the first byte past the limit."""
        parts = self.parts(name)
        if not parts:
            raise self.refuse(name, "is a file named as the extraction directory itself")
        if declared > self.max_bytes - self.written:
            raise self._too_big(name)
        self._directories(parts[:-1], name)
        path = self.root.joinpath(*parts)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, FILE_MODE)
        except _CONFLICTS as e:
            raise self.refuse(name, "has the path of a directory another member made") from e
        try:
            os.fchmod(fd, FILE_MODE)
            while chunk := source.read(COPY_CHUNK_BYTES):
                if len(chunk) > self.max_bytes - self.written:
                    raise self._too_big(name)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
                self.written += len(chunk)
        finally:
            os.close(fd)
        self.files[parts] = path

    def hard_link(self, name: str, link_target: str) -> None:
        """A hard link, written as a copy of the regular file it names, which must come before it."""
        parts, linked = self.parts(name), self.parts(link_target, member=name)
        original = self.files.get(linked)
        if original is None or linked == parts:
            raise self.refuse(name, f"is a hard link to {link_target!r}, which is no file extracted before it")
        with original.open("rb") as source:
            self.file(name, source, declared=original.stat().st_size)

    def symlink(self, name: str, link_target: str) -> None:
        """Refuse a symbolic link (see the module's docstring), saying where it points."""
        self.parts(name)
        outside = link_target.startswith("/") or ".." in link_target.split("/")
        where = "outside the extraction directory" if outside else "inside the tree"
        raise self.refuse(name, f"is a symbolic link to {link_target!r} ({where}); symbolic links are not "
                                f"extracted, so that no reader of the tree is led outside it",
                          "repack the archive with the files in place of the links (tar --dereference, zip "
                          "without --symlinks)")

    def single_file(self) -> None:
        """The whole (not packed) file, as the only member: a hard link to it where the filesystem allows one."""
        self.count(self.archive.name)
        parts = self.parts(self.archive.name)
        size = self.archive.stat().st_size
        if size > self.max_bytes:
            raise self._too_big(self.archive.name)
        path = self.root.joinpath(*parts)
        try:
            os.link(self.archive, path)
            os.chmod(path, FILE_MODE)
            self.written += size
            self.files[parts] = path
        except OSError:  # another filesystem, or links not allowed there: a copy
            path.unlink(missing_ok=True)
            with self.archive.open("rb") as source:
                self.file(self.archive.name, source, declared=size)

    def _directories(self, parts: tuple[str, ...], name: str) -> None:
        path = self.root
        for part in parts:
            path = path / part
            try:
                path.mkdir(mode=DIR_MODE)
                os.chmod(path, DIR_MODE)
            except FileExistsError as e:
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    raise self.refuse(name, f"needs the directory {part!r}, which another member made a file") from e
            except NotADirectoryError as e:
                raise self.refuse(name, "needs a directory that another member made a file") from e

    def _too_big(self, name: str) -> ArchiveError:
        return self.refuse(name, f"takes the extracted files past {self.max_bytes} bytes, the most this source may "
                                 f"take", "the archive expands far beyond its declared size, or the catalog's "
                                 "size_gb is too small: check the archive and correct the catalog")


def _extract_tar(writer: _Writer, mode: str) -> None:
    with tarfile.open(writer.archive, mode) as tar:
        for member in tar:  # headers read one at a time, as the members come
            writer.count(member.name)
            if member.isdir():
                writer.directory(member.name)
            elif member.isreg():
                source = tar.extractfile(member)
                if source is None:
                    raise writer.refuse(member.name, "has no data to read")
                with source:
                    writer.file(member.name, source, declared=member.size)
            elif member.issym():
                writer.symlink(member.name, member.linkname)
            elif member.islnk():
                writer.hard_link(member.name, member.linkname)
            else:
                raise writer.refuse(member.name, f"is a {_tar_kind(member)}, which is never extracted")


def _tar_kind(member: tarfile.TarInfo) -> str:
    if member.ischr():
        return "character device"
    if member.isblk():
        return "block device"
    if member.isfifo():
        return "FIFO"
    return f"member of type {member.type!r}"


def _extract_zip(writer: _Writer) -> None:
    with zipfile.ZipFile(writer.archive) as archive:
        members = archive.infolist()
        if len(members) > writer.max_members:  # the central directory says it before anything is written
            raise writer.refuse(None, f"has {len(members)} members, more than the {writer.max_members} an archive "
                                      f"may hold", "check the archive; if it is right, extract it with a larger "
                                                   "member limit")
        for info in members:
            writer.count(info.filename)
            kind = stat.S_IFMT(info.external_attr >> 16)  # the Unix mode, where the zip records one
            if kind == stat.S_IFLNK:
                with archive.open(info) as source:
                    link_target = source.read(LINK_TARGET_BYTES).decode("utf-8", "replace")
                writer.symlink(info.filename, link_target)
            elif info.is_dir() or kind == stat.S_IFDIR:
                writer.directory(info.filename)
            elif kind in (0, stat.S_IFREG):
                if info.flag_bits & ZIP_ENCRYPTED_FLAG:
                    raise writer.refuse(info.filename, "is encrypted", "use an archive without a password")
                with archive.open(info) as source:
                    writer.file(info.filename, source, declared=info.file_size)
            else:
                raise writer.refuse(info.filename, f"is a {_mode_kind(kind)}, which is never extracted")


def _mode_kind(kind: int) -> str:
    names = {stat.S_IFCHR: "character device", stat.S_IFBLK: "block device", stat.S_IFIFO: "FIFO",
             stat.S_IFSOCK: "socket"}
    return names.get(kind, f"member of file type {kind:#o}")
