"""Is the voxel data in an image file exactly as long as its header says? A cut file is an error, never zeros.

ITK's NIfTI reader fills whatever a cut ``.nii``/``.nii.gz`` (or a header promising more slices than the file holds)
does not contain with zeros, silently, and it turns NaN voxels into 0. Both produce plausible-looking but wrong
volumes, so every image StrokeSeg reads passes :func:`check_file_data` first:

* NIfTI (``.nii``, ``.nii.gz``, NIfTI-1 or -2): the header's dimensions × bytes per voxel + ``vox_offset`` must equal
  the (decompressed) file length; a damaged gzip stream is an error. Where the stored data type can hold NaN/inf,
  their positions are returned so the reader can put them back (see :func:`imageio.read_image`).
* MetaImage with the data in the same file, uncompressed, and NRRD with the data in the same file (raw or gzip): the
  data after the header must be the promised size.
* Everything else (compressed MetaImage, detached data files): ITK itself refuses data that is too short.
"""
from __future__ import annotations

import gzip
import io
import re
import zlib
from pathlib import Path

import numpy as np

from ..common.errors import InputFileError

_METAIO_TYPES = {
    "MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4, "MET_LONG": 8,
    "MET_ULONG": 8, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8,
}


def _is_nifti(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def _read_nifti_bytes(path: Path) -> bytes:
    """The whole file, decompressed when gzipped; a cut or damaged gzip stream is an InputFileError."""
    with open(path, "rb") as handle:
        magic = handle.read(2)
    if magic != b"\x1f\x8b":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as stream:
            return stream.read()
    except (EOFError, OSError, zlib.error) as exc:
        raise InputFileError(
            f"cannot be read: the compressed data is cut short or damaged ({exc}); copy or export the file again.",
            path,
        ) from exc


def _nifti_layout(raw: bytes, path: Path) -> tuple[int, tuple[int, ...], np.dtype] | None:
    """(data offset, shape in file order x-fastest, dtype) from a NIfTI-1/2 header; None when nibabel cannot parse it
    (then ITK's own reader decides)."""
    import nibabel as nib

    for header_class in (nib.Nifti1Header, nib.Nifti2Header):
        size = header_class.sizeof_hdr
        if len(raw) < size:
            continue
        try:
            header = header_class.from_fileobj(io.BytesIO(raw), check=False)
            if int(header["sizeof_hdr"]) != size:
                continue
            shape = tuple(int(d) for d in header.get_data_shape())
            dtype = header.get_data_dtype()
            offset = int(header.get_data_offset())
        except Exception:  # not this header kind (or garbage): try the next, then let ITK decide
            continue
        return max(offset, size), shape, dtype
    return None


def _length_error(path: Path, have: int, want: int, shape: tuple[int, ...], itemsize: int) -> InputFileError:
    dims = "×".join(str(d) for d in shape)
    if have < want:
        return InputFileError(
            f"incomplete: the header promises {dims} voxels of {itemsize} byte(s) but the file holds only "
            f"{have} of the {want} data bytes ({100.0 * have / max(want, 1):.1f}%); it was cut short "
            "(interrupted copy or export). Copy or export it again.",
            path,
        )
    return InputFileError(
        f"the file holds {have - want} byte(s) more voxel data than its header describes ({dims}); header and data do "
        "not belong together (a header edited or a file joined), so it is not used.",
        path,
    )


def _check_nifti(path: Path) -> np.ndarray | None:
    raw = _read_nifti_bytes(path)
    layout = _nifti_layout(raw, path)
    if layout is None:
        return None
    offset, shape, dtype = layout
    count = int(np.prod(shape, dtype=np.int64)) if shape else 0
    want = count * dtype.itemsize
    have = len(raw) - offset
    if have != want:
        raise _length_error(path, max(have, 0), want, shape, dtype.itemsize)
    if dtype.kind not in "fc" or count == 0:
        return None
    values = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
    bad = ~np.isfinite(values)
    if not bad.any():
        return None
    # NIfTI stores x fastest, so C order over the reversed shape is SimpleITK's array order ((t,) z, y, x).
    return bad.reshape(tuple(reversed(shape)))


def _check_metaimage(path: Path) -> None:
    """Uncompressed MetaImage with LOCAL data: the bytes after the header must be exactly the promised size."""
    with open(path, "rb") as handle:
        head = handle.read(65536)
    match = re.search(rb"ElementDataFile\s*=\s*LOCAL[^\n]*\n", head)
    if match is None:
        return
    fields: dict[str, str] = {}
    for line in head[: match.start()].decode("latin-1").splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            fields[key.strip()] = value.strip()
    if fields.get("CompressedData", "False").lower() == "true" or fields.get("ElementType") not in _METAIO_TYPES:
        return
    try:
        shape = tuple(int(v) for v in fields["DimSize"].split())
        channels = int(fields.get("ElementNumberOfChannels", "1"))
    except (KeyError, ValueError):
        return
    itemsize = _METAIO_TYPES[fields["ElementType"]] * channels
    want = int(np.prod(shape, dtype=np.int64)) * itemsize
    have = path.stat().st_size - match.end()
    if have != want:
        raise _length_error(path, max(have, 0), want, shape, itemsize)


_NRRD_TYPES = {
    1: ("signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8", "uint8_t"),
    2: ("short", "short int", "signed short", "signed short int", "int16", "int16_t", "ushort", "unsigned short",
        "unsigned short int", "uint16", "uint16_t"),
    4: ("int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32", "uint32_t", "float"),
    8: ("longlong", "long long", "long long int", "signed long long", "signed long long int", "int64", "int64_t",
        "ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t", "double"),
}
_NRRD_ITEMSIZE = {name: size for size, names in _NRRD_TYPES.items() for name in names}


def _check_nrrd(path: str | Path) -> None:
    """NRRD with the data in the same file, raw or gzip: the data after the header must be exactly the promised size
    (ITK refuses short data itself, but ignores extra bytes)."""
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(65536)
    end = head.find(b"\n\n")
    if not head.startswith(b"NRRD") or end < 0:
        return
    fields: dict[str, str] = {}
    for line in head[:end].decode("latin-1").splitlines()[1:]:
        if ":" in line and not line.startswith("#") and ":=" not in line:
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
    if "data file" in fields or "datafile" in fields or fields.get("type", "").lower() not in _NRRD_ITEMSIZE:
        return
    encoding = fields.get("encoding", "").lower()
    if encoding not in ("raw", "gzip", "gz"):
        return
    try:
        shape = tuple(int(v) for v in fields["sizes"].split())
    except (KeyError, ValueError):
        return
    itemsize = _NRRD_ITEMSIZE[fields["type"].lower()]
    want = int(np.prod(shape, dtype=np.int64)) * itemsize
    offset = end + 2
    if encoding == "raw":
        have = path.stat().st_size - offset
    else:
        with open(path, "rb") as handle:
            handle.seek(offset)
            stream = zlib.decompressobj(wbits=47)
            try:
                have = len(stream.decompress(handle.read()))
            except zlib.error:
                return  # damaged: ITK's reader reports it
            if not stream.eof:
                return  # cut short: ITK's reader reports it
            have += len(stream.unused_data.rstrip(b"\0\n"))  # bytes after the stream count as "longer"
    if have > want:
        raise _length_error(path, have, want, shape, itemsize)


def check_file_data(path: str | Path) -> np.ndarray | None:
    """Raise :class:`InputFileError` naming ``path`` when its voxel data is shorter or longer than the header says.

    Returns, for a NIfTI file whose stored values include NaN/inf, a boolean array in SimpleITK's array order marking
    them (ITK's NIfTI reader silently makes them 0); otherwise None.
    """
    path = Path(path)
    name = path.name.lower()
    if _is_nifti(path):
        return _check_nifti(path)
    if name.endswith(".mha"):
        _check_metaimage(path)
    elif name.endswith(".nrrd"):
        _check_nrrd(path)
    return None
