"""Where the images of a paired dataset are: the one owner of pair-folder layouts.

Training (:class:`dbgan.data.datasets.PairedFolderDataset`, ``data.pairs_dir`` /
``data.val_dir``) and evaluation (``dbgan eval --pairs``) both call
:func:`find_pairs`, which detects the layout of a folder (or list file) and
returns its (sharp, blurred) file pairs. Accepted layouts, tried in this order:

``paired``
    ``DIR/sharp/`` + ``DIR/blur/``, matched by file name (or by name without the
    extension when that is unique).
``input_target``
    ``DIR/input/`` (blurred) + ``DIR/target/`` (sharp), matched the same way: the
    prepared GoPro / HIDE / RealBlur test sets of MPRNet, Restormer and NAFNet.
``gopro``
    GoPro_Large: ``DIR/<scene>/blur/`` (or ``blur_gamma/``) + ``DIR/<scene>/sharp/``,
    scenes directly in DIR or one level below (``GOPRO_Large/{train,test}/<scene>``).
    ``blur/`` is used when a scene has both (the usual benchmark input); names are
    ``<scene>/<file>``.
``realblur_list``
    A text file of lines ``gt_path blur_path`` (RealBlur's ``RealBlur_J_test_list.txt``),
    paths relative to the list file's folder (or absolute); blank lines and lines
    starting with ``#`` are ignored.
``aligned``
    ``DIR/*.png`` side-by-side ``A|B`` files (pix2pix); A, the left half, is sharp
    with ``data.direction: AtoB``. Used only when DIR holds images and none of the
    subfolders above.

A folder that matches none of them is a :class:`dbgan.data.errors.DatasetError`
that lists the accepted layouts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from dbgan.data.errors import DatasetError
from dbgan.io import is_image_file, list_images

log = logging.getLogger(__name__)

__all__ = ["LAYOUTS", "Pair", "PairSet", "find_pairs", "describe_layouts"]

PathLike = Union[str, Path]

#: Layout names and what they look like (for error messages and docs).
LAYOUTS: dict[str, str] = {
    "paired": "DIR/sharp/ + DIR/blur/ (matched by file name)",
    "input_target": "DIR/input/ (blurred) + DIR/target/ (sharp), as prepared for MPRNet/Restormer/NAFNet",
    "gopro": "GoPro_Large: DIR/<scene>/blur/ (or blur_gamma/) + DIR/<scene>/sharp/, scenes in DIR or DIR/train|test",
    "realblur_list": "a .txt list of 'gt_path blur_path' lines (RealBlur), paths relative to the list's folder",
    "aligned": "DIR/*.png side-by-side A|B images",
}

_GOPRO_BLUR = ("blur", "blur_gamma")


def describe_layouts() -> str:
    """One line listing the accepted layouts."""
    return "; ".join(f"{k}: {v}" for k, v in LAYOUTS.items())


@dataclass(frozen=True)
class Pair:
    """One pair: ``sharp`` is None for an ``aligned`` A|B file (``blur`` then holds both halves)."""

    name: str
    sharp: Optional[Path]
    blur: Path


@dataclass
class PairSet:
    """The pairs of one dataset, its layout, its root, and files left without a partner (lenient mode)."""

    layout: str
    root: Path
    pairs: list[Pair]
    unmatched: list[str] = field(default_factory=list)


def _names(paths: list[str], limit: int = 5) -> str:
    more = len(paths) - limit
    return ", ".join(paths[:limit]) + (f" and {more} more" if more > 0 else "")


def _match(
    sharp: list[Path], blur: list[Path], root: Path, sharp_tag: str, blur_tag: str, strict: bool, prefix: str = ""
) -> tuple[list[Pair], list[str]]:
    """Pair files by name, else by stem when unique on both sides; in sharp-file order."""
    blur_by_name = {p.name: p for p in blur}
    blur_by_stem: dict[str, list[Path]] = {}
    for b in blur:
        blur_by_stem.setdefault(b.stem, []).append(b)
    sharp_stems: dict[str, int] = {}
    for s in sharp:
        sharp_stems[s.stem] = sharp_stems.get(s.stem, 0) + 1
    sharp_names = {x.name for x in sharp}
    pairs: list[Pair] = []
    used: set[Path] = set()
    lonely_s: list[str] = []
    for s in sharp:
        b = blur_by_name.get(s.name)
        if b is None:
            cands = [c for c in blur_by_stem.get(s.stem, []) if c.name not in sharp_names]
            if len(cands) == 1 and sharp_stems[s.stem] == 1:
                b = cands[0]
            elif len(cands) > 1 and strict:
                raise DatasetError(
                    f"{root}: cannot pair {prefix}{s.name} unambiguously: {blur_tag}/ has "
                    f"{_names([c.name for c in cands])} with the same stem; keep one file per name"
                )
        if b is None or b in used:
            lonely_s.append(f"{prefix}{sharp_tag}/{s.name}")
            continue
        used.add(b)
        pairs.append(Pair(prefix + s.name, s, b))
    lonely_b = [f"{prefix}{blur_tag}/{b.name}" for b in blur if b not in used]
    unmatched = lonely_s + lonely_b
    if unmatched and strict:
        parts = []
        if lonely_s:
            parts.append(f"{sharp_tag}/ files without a partner in {blur_tag}/: {_names([u.rsplit('/', 1)[-1] for u in lonely_s])}")
        if lonely_b:
            parts.append(f"{blur_tag}/ files without a partner in {sharp_tag}/: {_names([u.rsplit('/', 1)[-1] for u in lonely_b])}")
        raise DatasetError(
            f"{root}: {'; '.join(parts)} (files pair by equal name, or equal stem when the extensions differ)"
        )
    return pairs, unmatched


def _two_folders(root: Path, sharp_tag: str, blur_tag: str, layout: str, strict: bool) -> PairSet:
    s_dir, b_dir = root / sharp_tag, root / blur_tag
    for sub in (s_dir, b_dir):
        if not sub.is_dir():
            raise DatasetError(
                f"{root} has no '{sub.name}' subfolder: the {layout} layout needs {root}/{sharp_tag} and "
                f"{root}/{blur_tag} with matching file names (side-by-side A|B files go in data.aligned_dir)"
            )
    pairs, unmatched = _match(list_images(s_dir), list_images(b_dir), root, sharp_tag, blur_tag, strict)
    if not pairs:
        raise DatasetError(f"{root}: no file name appears in both {sharp_tag}/ and {blur_tag}/")
    return PairSet(layout, root, pairs, unmatched)


def _gopro_scenes(root: Path) -> list[Path]:
    """Scene folders (holding sharp/ and blur/ or blur_gamma/) in root or one level below."""

    def is_scene(d: Path) -> bool:
        return (d / "sharp").is_dir() and any((d / b).is_dir() for b in _GOPRO_BLUR)

    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    scenes = [d for d in subdirs if is_scene(d)]
    if scenes:
        return scenes
    deeper = []
    for d in subdirs:
        deeper += sorted(s for s in d.iterdir() if s.is_dir() and not s.name.startswith(".") and is_scene(s))
    return deeper


def _gopro(root: Path, scenes: list[Path], strict: bool) -> PairSet:
    pairs: list[Pair] = []
    unmatched: list[str] = []
    for scene in scenes:
        blur_tag = next(b for b in _GOPRO_BLUR if (scene / b).is_dir())
        prefix = f"{scene.relative_to(root).as_posix()}/"
        p, u = _match(list_images(scene / "sharp"), list_images(scene / blur_tag), scene, "sharp", blur_tag, strict, prefix)
        pairs += p
        unmatched += u
    if not pairs:
        raise DatasetError(f"{root}: GoPro scenes found but no file name appears in both sharp/ and blur/")
    return PairSet("gopro", root, pairs, unmatched)


def _realblur_list(path: Path, strict: bool) -> PairSet:
    base = path.parent
    pairs: list[Pair] = []
    missing: list[str] = []
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read the pair list ({exc})") from None
    for k, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.split()
        if len(parts) < 2:
            raise DatasetError(f"{path}:{k}: expected 'gt_path blur_path', got {text!r}")
        gt, blur = (Path(p) if Path(p).is_absolute() else base / p for p in parts[:2])
        lost = [str(p) for p in (gt, blur) if not p.is_file()]
        if lost:
            if strict:
                raise DatasetError(f"{path}:{k}: listed file not found: {', '.join(lost)}")
            missing += lost
            continue
        pairs.append(Pair(parts[1], gt, blur))
    if missing:
        log.warning("%s: %d listed file(s) not found: %s", path, len(missing), _names(missing))
    if not pairs:
        raise DatasetError(f"{path}: the list names no existing pair ('gt_path blur_path' per line)")
    return PairSet("realblur_list", path, pairs, missing)


def find_pairs(source: PathLike, *, strict: bool = True, allow_aligned: bool = True) -> PairSet:
    """Detect the layout of ``source`` and return its pairs (see the module docstring).

    Args:
        source: a dataset folder, or a RealBlur-style list file.
        strict: a file without a partner (or a missing listed file) is an error naming it
            (training); otherwise such files are returned in ``unmatched`` (evaluation).
        allow_aligned: accept a plain folder of images as side-by-side A|B files.

    Raises:
        DatasetError: missing source, unknown layout (the message lists the accepted
            ones), unpaired files in strict mode.
    """
    root = Path(source)
    if not root.exists():
        raise DatasetError(f"{root}: dataset folder (or list file) does not exist")
    if root.is_file():
        if root.suffix.lower() == ".txt":
            return _realblur_list(root, strict)
        raise DatasetError(f"{root}: is a file; a dataset is a folder or a .txt pair list. Accepted layouts: {describe_layouts()}")
    if (root / "sharp").is_dir() or (root / "blur").is_dir():
        return _two_folders(root, "sharp", "blur", "paired", strict)
    if (root / "input").is_dir() or (root / "target").is_dir():
        return _two_folders(root, "target", "input", "input_target", strict)
    scenes = _gopro_scenes(root)
    if scenes:
        return _gopro(root, scenes, strict)
    images = [p for p in root.iterdir() if p.is_file() and is_image_file(p)]
    if images and allow_aligned:
        files = list_images(root)
        return PairSet("aligned", root, [Pair(p.name, None, p) for p in files])
    lists = sorted(p.name for p in root.glob("*.txt"))
    hint = f" (a pair list? pass the file itself, e.g. {root / lists[0]})" if lists else ""
    raise DatasetError(f"{root}: unknown dataset layout{hint}. Accepted layouts: {describe_layouts()}")
