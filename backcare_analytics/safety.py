"""Output safety: CSV cells a spreadsheet would run as formulas are neutralised, and every output
file is written owner-only, by temporary file and atomic rename, never through a symlink.

**Formulas (CSV injection, OWASP).** A cell is a trigger when its text starts with ``=``, ``+``,
``-``, ``@``, a tab, a carriage return or a line feed; it is written with a leading ``'`` so a
spreadsheet shows it as text. Inside a cell, a ``'`` is also put after a line break (CR, LF) or a
``,``, ``;`` or tab that is followed by ``=``, ``+``, ``-`` or ``@``: those are where a reader
that splits rows at a bare CR, or guesses another delimiter (a spreadsheet set to a Dutch or
German locale splits at ``;``), would start a new cell. :func:`write_csv` also quotes every field
holding a CR, LF, comma or ``"`` (CRLF row ends, RFC 4180). Only text columns are touched:
numbers (``-3``) stay numbers, and the input frame is never changed.

>>> df = pd.DataFrame({"note": ["=1+2", "fine", None, "-x", "S1\\r=2+5"], "n": [-1, 2, 3, 4, 5]})
>>> neutralise_formulas(df)["note"].tolist()
["'=1+2", 'fine', nan, "'-x", "S1\\r'=2+5"]
>>> neutralise_formulas(df)["n"].tolist()
[-1, 2, 3, 4, 5]

**Files and folders (symlink and permission attacks).** Output folders are created ``0o700``;
an existing output folder must be a real folder (a symlink is refused, never followed or
chmodded) owned by the user, and one that group or others may write is made ``0o700`` when it is
the user's, refused otherwise; an ancestor that anyone may write without the sticky bit is
refused. Files are written to a new temporary file in the same folder (``O_CREAT | O_EXCL |
O_NOFOLLOW``, ``0o600``) and renamed over the final name (``os.replace``): a symlink planted at
that name is replaced by the file, its target is never opened, and readers never see half a file.
"""

from __future__ import annotations

import csv
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd

from backcare_analytics.errors import UnsafeOutputError
from backcare_analytics.lifetime import process_running

__all__ = [
    "FORMULA_TRIGGERS",
    "create_private_folders",
    "neutralise_formulas",
    "neutralise_formulas_reversibly",
    "open_private",
    "private_folder",
    "restore_formulas",
    "write_csv",
    "write_private_bytes",
    "write_private_text",
]

#: First characters that make a spreadsheet treat a cell as a formula (OWASP CSV injection).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n")
ESCAPE = "'"
#: Characters after which a lenient reader may start a new cell: line breaks, and the
#: delimiters spreadsheets guess (comma, semicolon, tab).
_CELL_BREAKS = "\r\n,;\t"
# No look-around, so pandas runs them in pyarrow (RE2) without a per-cell Python fallback; a
# trigger or ' is never a break, so consecutive matches cannot overlap.
_INNER = rf"([{_CELL_BREAKS}])([=+\-@])"
_INNER_REVERSIBLE = rf"([{_CELL_BREAKS}])([=+\-@{ESCAPE}])"
_INNER_RESTORE = rf"([{_CELL_BREAKS}]){ESCAPE}"


# ---------------------------------------------------------------------------------------------
# formulas
# ---------------------------------------------------------------------------------------------


def _is_text(col: pd.Series) -> bool:
    return (
        pd.api.types.is_string_dtype(col.dtype)
        or col.dtype == object
        or isinstance(col.dtype, pd.CategoricalDtype)
    )


def _as_text(col: pd.Series) -> pd.Series:
    """The column with non-strings masked, categories as their text."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        col = col.astype(object)
    if col.dtype == object:
        return col.where(col.map(lambda v: isinstance(v, str))).astype("str")
    return col


def _escaped_text(text: pd.Series, *, reversible: bool) -> pd.Series:
    """``text`` (strings or missing) with a ``'`` before every trigger at a cell start, inside
    the cell after a break, and (``reversible``) before a ``'`` at those places too."""
    inner = _INNER_REVERSIBLE if reversible else _INNER
    out = text.str.replace(inner, rf"\1{ESCAPE}\2", regex=True)
    starts = (*FORMULA_TRIGGERS, ESCAPE) if reversible else FORMULA_TRIGGERS
    lead = out.notna() & out.str.startswith(starts)
    out = out.mask(lead, ESCAPE + out)
    if reversible:
        out = out.mask(out == "", ESCAPE)  # an empty string differs from a missing cell
    return out


def _restored_text(text: pd.Series) -> pd.Series:
    """The inverse of ``_escaped_text(text, reversible=True)``."""
    lead = text.notna() & text.str.startswith(ESCAPE)
    return text.mask(lead, text.str[1:]).str.replace(_INNER_RESTORE, r"\1", regex=True)


def _per_distinct(col: pd.Series, transform: Callable[[pd.Series], pd.Series]) -> pd.Series | None:
    """``col`` with ``transform`` applied to its text cells, computed once per distinct value
    (ids and codes repeat across millions of rows); None when no cell changes."""
    text = _as_text(col)
    codes, uniques = pd.factorize(text)  # missing -> code -1
    distinct = pd.Series(uniques, dtype="str")
    new = transform(distinct)
    changed = (new != distinct).to_numpy(dtype=bool, na_value=False)
    if not changed.any():
        return None
    hit = (codes >= 0) & changed[np.maximum(codes, 0)]
    values = pd.Series(new.to_numpy(dtype=object)[np.maximum(codes, 0)], index=col.index)
    base = col.astype(object) if isinstance(col.dtype, pd.CategoricalDtype) else col
    return base.mask(hit, values)


def _neutralise(df: pd.DataFrame, *, reversible: bool) -> pd.DataFrame:
    result = df.copy()
    for name in df.columns:
        if _is_text(df[name]):
            new = _per_distinct(df[name], partial(_escaped_text, reversible=reversible))
            if new is not None:
                result[name] = new
    # Column headers are cells too.
    names = pd.Series([str(c) for c in df.columns], dtype="str")
    headers = _escaped_text(names, reversible=False).tolist()
    return result.set_axis(
        [h if isinstance(c, str) else c for c, h in zip(df.columns, headers, strict=True)],
        axis=1,
    )


def neutralise_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose text cells cannot start a formula in a spreadsheet.

    A ``'`` is put before a cell starting with one of :data:`FORMULA_TRIGGERS`, and inside a
    cell before ``= + - @`` following a CR, LF, ``,``, ``;`` or tab. Headers likewise.

    Returns
    -------
    pandas.DataFrame
        Same columns, dtypes and index; only text cells that need it change. Object columns
        are converted cell by cell only where a cell is a string.
    """
    return _neutralise(df, reversible=False)


def neutralise_formulas_reversibly(df: pd.DataFrame) -> pd.DataFrame:
    """:func:`neutralise_formulas`, made exactly reversible by :func:`restore_formulas`
    (research exports): a ``'`` already at one of those places gets one more, and an empty
    string is written ``'`` so that it differs from a missing cell in CSV.

    >>> df = pd.DataFrame({"t": ["=1", "'quoted", "ok", None, "", "a\\n-b"]})
    >>> neutralise_formulas_reversibly(df)["t"].tolist()
    ["'=1", "''quoted", 'ok', nan, "'", "a\\n'-b"]
    >>> restore_formulas(neutralise_formulas_reversibly(df)).equals(df)
    True
    """
    return _neutralise(df, reversible=True)


def restore_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """The inverse of :func:`neutralise_formulas_reversibly`: one leading ``'`` is removed from
    every text cell that has one, then one ``'`` after each CR, LF, ``,``, ``;`` or tab."""
    out = df.copy()
    for name in df.columns:
        if _is_text(df[name]):
            new = _per_distinct(df[name], _restored_text)
            if new is not None:
                out[name] = new
    return out


def write_csv(df: pd.DataFrame, path: Path | str, *, reversible: bool = False) -> Path:
    """Write ``df`` as UTF-8 CSV without its index: formulas neutralised, owner-only.

    The one CSV writer of the package. Rows end in CRLF (RFC 4180), so every field holding a CR,
    LF, comma or ``"`` is quoted and a bare CR inside a cell never ends a row. Missing values
    are written empty. The file is written by :func:`open_private` (temporary file, atomic
    rename, ``0o600``, symlinks never followed).

    Parameters
    ----------
    reversible
        Neutralise with :func:`neutralise_formulas_reversibly` so that
        :func:`restore_formulas` gives back every text cell exactly (research exports);
        otherwise with :func:`neutralise_formulas` (tables for people).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    safe = _neutralise(df, reversible=reversible)
    with open_private(path) as fh:
        safe.to_csv(
            fh,
            index=False,
            na_rep="",
            lineterminator="\r\n",
            quoting=csv.QUOTE_MINIMAL,
            encoding="utf-8",
        )
    return path


# ---------------------------------------------------------------------------------------------
# files and folders
# ---------------------------------------------------------------------------------------------

_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def create_private_folders(folder: Path | str) -> list[Path]:
    """Create ``folder`` and its missing parents, each ``0o700`` whatever the umask.

    Existing folders are left as they are (see :func:`private_folder` for the checks an output
    folder gets).

    Returns
    -------
    list of Path
        The folders created, outermost first.
    """
    folder = Path(os.path.abspath(folder))
    missing = [p for p in (folder, *folder.parents) if not os.path.lexists(p)]
    created = []
    for p in reversed(missing):
        try:
            os.mkdir(p, 0o700)  # the umask can only take bits away from 0o700
        except FileExistsError:
            continue  # made meanwhile by someone else: checked like any existing folder
        created.append(p)
    return created


def _refuse_open_ancestors(folder: Path) -> None:
    """Refuse when anyone may rename folders above ``folder`` (world-writable, no sticky bit)."""
    for parent in folder.parents:
        mode = os.stat(parent).st_mode
        if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
            raise UnsafeOutputError(
                f"{folder}: the folder {parent} above it may be written by anyone (mode "
                f"{stat.S_IMODE(mode):04o}), so its contents could be swapped. Fix: "
                f"`chmod o-w {parent}`, or choose an output folder elsewhere."
            )


def _open_output_folder(folder: Path) -> int:
    """A descriptor of the real folder ``folder`` (never a symlink), made owner-only if others
    may write it and it is ours; refused otherwise."""
    try:
        fd = os.open(folder, _FOLDER_FLAGS)
    except OSError as exc:
        what = "is a symlink" if os.path.islink(folder) else f"cannot be opened ({exc.strerror})"
        raise UnsafeOutputError(
            f"the output folder {folder} {what}; output is never written through a link. "
            "Fix: remove it or pass a real folder you own."
        ) from None
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o022:
            if st.st_uid != os.geteuid():
                raise UnsafeOutputError(
                    f"the output folder {folder} may be written by others and is not yours "
                    f"(mode {stat.S_IMODE(st.st_mode):04o}, uid {st.st_uid}). Fix: pass a "
                    "folder you own, e.g. a new one, which is created owner-only."
                )
            os.fchmod(fd, 0o700)  # on the descriptor: never through a link
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextmanager
def _checked_folder(folder: Path) -> Iterator[int]:
    folder = Path(os.path.abspath(folder))
    try:
        create_private_folders(folder)
        _refuse_open_ancestors(folder)
    except OSError as exc:  # e.g. a file or a dangling link where a folder should be
        raise UnsafeOutputError(
            f"the output folder {folder} cannot be created or checked ({exc.strerror}: "
            f"{exc.filename}). Fix: pass a folder you may write, with no file or broken link "
            "in its path."
        ) from None
    fd = _open_output_folder(folder)
    try:
        yield fd
    finally:
        os.close(fd)


def private_folder(folder: Path | str) -> Path:
    """Create or check an output folder for patient data.

    Missing folders are created ``0o700``. The folder must be a real folder, not a symlink; if
    group or others may write it, it is made ``0o700`` when it is yours and refused otherwise;
    a folder above it that anyone may write (without the sticky bit, like ``/tmp`` has) is
    refused.

    Raises
    ------
    UnsafeOutputError
        With the reason and the fix.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     out = private_folder(Path(tmp) / "a" / "b")
    ...     oct(out.stat().st_mode & 0o777), oct(out.parent.stat().st_mode & 0o777)
    ('0o700', '0o700')
    """
    with _checked_folder(Path(folder)) as folder_fd:
        _remove_orphaned_temporaries(folder_fd)
    return Path(folder)


_TEMPORARY = re.compile(r"^\..*\.(\d+)\.[0-9a-f]{8}\.tmp$")


def _remove_orphaned_temporaries(folder_fd: int) -> None:
    """Remove the temporary files of :func:`open_private` whose writer was killed (its process
    no longer runs): they hold patient data that no command will ever rename into place."""
    for name in os.listdir(folder_fd):
        match = _TEMPORARY.match(name)
        if match and not process_running(int(match.group(1))):
            with suppress(FileNotFoundError):
                os.unlink(name, dir_fd=folder_fd)


@contextmanager
def open_private(path: Path | str) -> Iterator[BinaryIO]:
    """A binary file object whose bytes become ``path`` when the block ends without error.

    For libraries that write to a file object (``DataFrame.to_parquet(fh)``, ``to_csv(fh)``,
    WeasyPrint's ``write_pdf(target=fh)``, ``Figure.savefig(fh)``). The folder is checked as by
    :func:`private_folder`; the bytes go to a new temporary file there (``0o600``, created
    exclusively, never through a link) that is renamed over ``path`` at the end, replacing a
    file or a symlink of that name (the link's target is never touched). On error the temporary
    file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    with _checked_folder(path.parent) as folder_fd:
        # The pid in the name lets the next command remove it if this one is killed.
        tmp = f".{path.name[:64]}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, _NEW_FILE_FLAGS, 0o600, dir_fd=folder_fd)
        try:
            with os.fdopen(fd, "wb") as fh:  # owns fd from here: closed on every path
                yield fh
            os.replace(tmp, path.name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=folder_fd)
            raise


def write_private_bytes(path: Path | str, data: bytes) -> Path:
    """Write ``data`` to ``path`` owner-only, atomically, never through a symlink
    (:func:`open_private`)."""
    with open_private(path) as fh:
        fh.write(data)
    return Path(path)


def write_private_text(path: Path | str, text: str) -> Path:
    """Write ``text`` as UTF-8 to ``path`` as :func:`write_private_bytes` does."""
    return write_private_bytes(path, text.encode("utf-8"))
