"""A task's ``.npz`` opened without copying: each array stored uncompressed (as ``np.savez``
writes it) is memory-mapped straight out of the zip file.

Every trial of a run reads the same file, so memory-mapping lets the operating system keep one
copy of the data in its page cache for all of them, instead of one private copy per trial; a data
set larger than memory still trains, batch by batch. A compressed member (``np.savez_compressed``)
cannot be mapped and is read into memory, as ``np.load`` would.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path
from typing import Any

_LOCAL_HEADER = 30  # bytes of a zip local file header before the name and the extra field


def open_arrays(path: str | Path) -> dict[str, Any]:
    """The arrays of the ``.npz`` at ``path`` by name, memory-mapped read-only where stored
    uncompressed; object arrays are refused (they would need pickle)."""
    import numpy as np
    from numpy.lib import format as npy

    path = str(path)
    arrays: dict[str, Any] = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as fh:
        for info in archive.infolist():
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if info.compress_type != zipfile.ZIP_STORED:
                with archive.open(info) as member:
                    arrays[name] = npy.read_array(member, allow_pickle=False)
                continue
            fh.seek(info.header_offset)
            header = fh.read(_LOCAL_HEADER)
            name_len, extra_len = struct.unpack("<HH", header[26:30])
            fh.seek(info.header_offset + _LOCAL_HEADER + name_len + extra_len)
            version = npy.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = npy.read_array_header_1_0(fh)
            else:
                shape, fortran, dtype = npy.read_array_header_2_0(fh)
            if dtype.hasobject:
                raise ValueError(f"{path}: array {name!r} holds Python objects; store numbers")
            if int(np.prod(shape)) == 0:
                arrays[name] = np.empty(shape, dtype=dtype)
                continue
            arrays[name] = np.memmap(path, dtype=dtype, mode="r", offset=fh.tell(), shape=shape,
                                     order="F" if fortran else "C")
    return arrays
