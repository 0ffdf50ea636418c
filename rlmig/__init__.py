"""rlmig: learned, SLO- and accuracy-aware NVIDIA MIG partitioning for shared inference GPUs.

The domain core lives here: GPU geometry (`rlmig.geometry`), nvidia-mig-parted configs
(`rlmig.migparted`) and the command line (`rlmig.cli`). Learning, the environment and the
evaluation harness are the subpackages `rlmig.agents`, `rlmig.envs` and `rlmig.eval`.
"""

from rlmig.errors import RlmigError
from rlmig.geometry import GpuModel, Instance, Layout, Profile, gpu_model, gpu_models

__version__ = "0.1.0"

__all__ = ["GpuModel", "Instance", "Layout", "Profile", "RlmigError", "gpu_model", "gpu_models"]
