"""``python -m dbgan.nets``: list the registered architectures with their parameter counts."""

from __future__ import annotations

import sys

from dbgan.nets import NETWORKS, describe


def main(argv: list[str] | None = None) -> int:
    """Print one line per architecture: name, parameters at default arguments, class path."""
    argv = list(sys.argv[1:] if argv is None else argv)
    names = argv or None
    for name in names or []:
        if name not in NETWORKS:
            print(f"unknown network '{name}'; valid names: {', '.join(NETWORKS.names())}", file=sys.stderr)
            return 2
    rows = describe(names)
    print(f"{'name':<12} {'parameters':>12}  class (defaults)")
    for name, params in rows:
        cls = NETWORKS.get(name)
        print(f"{name:<12} {params:>12,}  {cls.__module__}:{cls.__qualname__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
