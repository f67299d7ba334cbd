"""``python -m oxa.data``: every named set with its size, location, source and license.
``python -m oxa.data pack DIR``: rebuild the shipped files from the originals in DIR (see oxa.data.catalog)."""

from __future__ import annotations

import sys

from oxa.data import benchmark_info, benchmark_names, pack_shipped


def describe() -> str:
    """One block per registered name (plain text, for a terminal or a README)."""
    blocks = []
    for name in benchmark_names():
        info = benchmark_info(name)
        if info is None:
            blocks.append(f"{name}\n  registered in code")
            continue
        rows = f"{info.rows:,} rows" if info.rows is not None else "size on the hub"
        blocks.append(f"{name}: {info.description}\n  {rows}; {info.location}\n  source: {info.source}\n"
                      f"  license: {info.license}")
    return "\n".join(blocks)


def main(argv: list[str]) -> int:
    if argv[:1] == ["pack"] and len(argv) == 2:
        for name, size in pack_shipped(argv[1]).items():
            print(f"{name}: {size:,} bytes")
        return 0
    if argv:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    print(describe())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
