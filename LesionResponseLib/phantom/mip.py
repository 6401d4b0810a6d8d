"""Coronal maximum-intensity projections of PET (SUV), the view a nuclear-medicine reader checks first."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

SUV_WINDOW = (0.0, 10.0)  # the usual DOTATATE MIP display window (spleen and lesions saturate)


def coronal_mip(pet_suv: sitk.Image) -> np.ndarray:
    """Anterior coronal MIP (rows head→feet, columns patient right→left), resampled to square pixels."""
    oriented = sitk.DICOMOrient(pet_suv, "LPS")  # index x: R→L, y: A→P, z: I→S
    array = sitk.GetArrayViewFromImage(oriented)  # (z, y, x)
    mip = array.max(axis=1)[::-1]  # rows from head to feet
    sx, _, sz = oriented.GetSpacing()
    if abs(sz - sx) > 1e-3:
        from scipy import ndimage

        mip = ndimage.zoom(mip, (sz / sx, 1.0), order=1)
    return np.asarray(mip, np.float32)


def save_mips(images: Sequence[sitk.Image], out_dir: Path, titles: Sequence[str] | None = None,
              window: tuple[float, float] = SUV_WINDOW) -> list[Path]:
    """Write ``tp{k}.png`` per image and a side-by-side montage ``all.png`` (inverted grey, SUV window)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    mips = [coronal_mip(img) for img in images]
    titles = list(titles) if titles else [f"TP{k}" for k in range(len(mips))]
    paths = []
    for k, (mip, title) in enumerate(zip(mips, titles, strict=True)):
        fig = _figure(plt, [mip], [title], window)
        paths.append(out_dir / f"tp{k}.png")
        fig.savefig(paths[-1], dpi=150)  # one scan: enough pixels to see 5 mm lesions
        plt.close(fig)
    fig = _figure(plt, mips, titles, window)
    paths.append(out_dir / "all.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


def _figure(plt, mips, titles, window):
    height = max(m.shape[0] for m in mips)
    fig, axes = plt.subplots(1, len(mips), figsize=(2.6 * len(mips), 2.6 * height / mips[0].shape[1] + 0.4),
                             squeeze=False)
    for ax, mip, title in zip(axes[0], mips, titles, strict=True):
        ax.imshow(mip, cmap="gray_r", vmin=window[0], vmax=window[1], interpolation="bilinear")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig
