"""Synthetic blur without learning: kernels (numpy) and degradations (torch).

``blur/`` never imports ``dbgan.nets``.

    from dbgan.blur import DegradationPipeline, motion_kernel, fft_blur
"""

from dbgan.blur.degrade import (
    DegradationParams,
    DegradationPipeline,
    add_gaussian_noise,
    add_poisson_noise,
    boost_highlights,
    fft_blur,
    from_linear,
    jpeg_roundtrip,
    luminance,
    reflect_pad,
    saturate_highlights,
    to_linear,
)
from dbgan.blur.kernels import (
    KERNEL_KINDS,
    defocus_kernel,
    gaussian_kernel,
    kernel_extent,
    linear_motion_kernel,
    motion_kernel,
    motion_kernels,
    pad_kernel,
    random_kernel,
)

__all__ = [
    "KERNEL_KINDS",
    "DegradationParams",
    "DegradationPipeline",
    "add_gaussian_noise",
    "add_poisson_noise",
    "boost_highlights",
    "defocus_kernel",
    "fft_blur",
    "from_linear",
    "gaussian_kernel",
    "jpeg_roundtrip",
    "kernel_extent",
    "linear_motion_kernel",
    "luminance",
    "motion_kernel",
    "motion_kernels",
    "pad_kernel",
    "random_kernel",
    "reflect_pad",
    "saturate_highlights",
    "to_linear",
]
