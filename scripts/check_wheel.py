"""Checks a built attribfast wheel: a manylinux platform tag, the files users need, and a core that
links no ONNX Runtime (the core dlopens the onnxruntime wheel's library at run time).

Usage: python scripts/check_wheel.py WHEEL. Exits 1 listing every problem found. Standard library
only, so it runs anywhere the wheel was built.
"""

from __future__ import annotations

import re
import struct
import sys
import zipfile
from pathlib import PurePosixPath

MANYLINUX = re.compile(r"^manylinux_(\d+)_(\d+)_(x86_64|aarch64)$")
REQUIRED = ("attribfast/py.typed", "attribfast/_core.pyi", "attribfast/models/arith/attribfast.json")


def needed_libraries(elf: bytes) -> list[str]:
    """DT_NEEDED entries of a 64-bit little-endian ELF shared object."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    (shoff,) = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", elf, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", elf, shoff + i * shentsize) for i in range(shnum)]
    needed = []
    for _, kind, _, _, offset, size, link, _, _, entsize in sections:
        if kind != 6:  # SHT_DYNAMIC
            continue
        strtab_offset = sections[link][4]
        for pos in range(offset, offset + size, entsize or 16):
            tag, value = struct.unpack_from("<qQ", elf, pos)
            if tag == 0:  # DT_NULL ends the table
                break
            if tag == 1:  # DT_NEEDED
                end = elf.index(b"\0", strtab_offset + value)
                needed.append(elf[strtab_offset + value : end].decode())
    return needed


def problems(path: str) -> list[str]:
    found = []
    name = PurePosixPath(path).name
    parts = name[: -len(".whl")].split("-") if name.endswith(".whl") else []
    if len(parts) not in (5, 6):
        return [f"{name} is not a wheel file name"]
    platforms = parts[-1].split(".")
    found += [f"platform tag {p} is not manylinux" for p in platforms if not MANYLINUX.match(p)]
    with zipfile.ZipFile(path) as wheel:
        names = set(wheel.namelist())
        found += [f"{f} missing" for f in REQUIRED if f not in names]
        if not any(re.fullmatch(r"attribfast-[^/]+\.dist-info/licenses/LICENSE", n) for n in names):
            found.append("LICENSE missing from the dist-info")
        wheel_files = [n for n in names if re.fullmatch(r"attribfast-[^/]+\.dist-info/WHEEL", n)]
        tags = [] if not wheel_files else re.findall(r"^Tag: (.+)$", wheel.read(wheel_files[0]).decode(), re.M)
        found += [f"WHEEL tag {t} is not manylinux" for t in tags if not MANYLINUX.match(t.split("-")[-1])]
        if not tags:
            found.append("WHEEL metadata names no tag")
        cores = [n for n in names if re.fullmatch(r"attribfast/_core\.[^/]+\.so", n)]
        if len(cores) != 1:
            found.append(f"expected one attribfast/_core*.so, found {len(cores)}")
        for core in cores:
            linked = [lib for lib in needed_libraries(wheel.read(core)) if "onnxruntime" in lib]
            found += [f"{core} links {lib} (the core must dlopen ONNX Runtime)" for lib in linked]
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: check_wheel.py WHEEL", file=sys.stderr)
        return 2
    found = problems(argv[0])
    for problem in found:
        print(f"check_wheel: {problem}", file=sys.stderr)
    if not found:
        print(f"check_wheel: {PurePosixPath(argv[0]).name} ok")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
