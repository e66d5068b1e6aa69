"""dbgan: Deblurring by Realistic Blurring (Zhang et al., CVPR 2020) as a toolkit.

Learn a blur generator (BGAN) that turns sharp images into realistic blur from
unpaired real blurred photos, then train a deblurrer (DBGAN) on its output.
"""

__version__ = "0.1.0"
