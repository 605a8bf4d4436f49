"""Read the members of a dataset that lives in a folder or in a zip archive, in place."""
from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path, PurePosixPath

from hgnn.errors import DataFormatError


class Source:
    """A dataset's files, from a folder or a zip archive, addressed by member name.

    Zip archives are read in place (nothing is extracted to disk). Members may sit at the top of the
    archive or inside one folder (``DBLP/node.dat``); macOS resource forks (``__MACOSX/``) and
    dot-files are ignored.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise DataFormatError(self.path, "no such file or folder")
        self.is_zip = self.path.is_file()
        self._members: dict[str, str] = {}
        if self.is_zip:
            if not zipfile.is_zipfile(self.path):
                raise DataFormatError(self.path, "not a folder and not a readable zip archive")
            with zipfile.ZipFile(self.path) as zf:
                names = [n for n in zf.namelist() if not n.endswith("/")]
            kept = [
                n for n in names
                if PurePosixPath(n).parts[0] != "__MACOSX" and not PurePosixPath(n).name.startswith(".")
            ]
            tops = {PurePosixPath(n).parts[0] for n in kept}
            strip = len(tops) == 1 and all("/" in n for n in kept)
            for name in kept:
                rel = name.split("/", 1)[1] if strip else name
                self._members[rel] = name

    def __repr__(self) -> str:
        return f"Source({str(self.path)!r})"

    def where(self, member: str) -> str:
        """How to name a member in messages: ``node.dat (in DBLP.zip)`` or a plain path."""
        if self.is_zip:
            return f"{member} (in {self.path})"
        return str(self.path / member)

    def exists(self, member: str) -> bool:
        if self.is_zip:
            return member in self._members
        return (self.path / member).is_file()

    def read_bytes(self, member: str) -> bytes:
        """The whole member; a missing or empty member is a :class:`DataFormatError`."""
        if not self.exists(member):
            raise DataFormatError(self.where(member), "missing file")
        try:
            if self.is_zip:
                with zipfile.ZipFile(self.path) as zf:
                    data = zf.read(self._members[member])
            else:
                data = (self.path / member).read_bytes()
        except (OSError, zipfile.BadZipFile, EOFError) as exc:
            raise DataFormatError(self.where(member), f"cannot be read ({exc})") from None
        if not data.strip():
            raise DataFormatError(self.where(member), "file is empty")
        return data

    def checksum(self, members: list[str] | None = None) -> str:
        """sha256 over the source: the archive's bytes, or the listed (or all) files of a folder."""
        if self.is_zip:
            files = [self.path]
        else:
            names = members if members is not None else sorted(
                str(p.relative_to(self.path)) for p in self.path.rglob("*") if p.is_file()
            )
            files = [self.path / n for n in names if (self.path / n).is_file()]
        return _sha256(files)


def checksum(path: str | Path) -> str:
    """sha256 of a dataset's files, for cache keys: :meth:`Source.checksum` of a folder, or the
    bytes of a single file, a zip archive or not.

    Some readers take one file that is not a zip (H2GB's OAG graphs as pre-1.6 ``torch.save`` files
    or plain pickles); checking what the file holds is left to the reader, whose message says what
    it expected, instead of refusing it here as not a zip archive.
    """
    path = Path(path)
    if path.is_file():
        return _sha256([path])  # the same digest as Source(path).checksum() for a zip
    return Source(path).checksum()


def _sha256(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.name).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()
