"""guiagent: train and evaluate vision-language GUI agents on phones and desktops."""

import glob
import os
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("guiagent")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

# accelerate imports DeepSpeed on every save_pretrained, and DeepSpeed's accelerator probe then prints a
# warning to stdout on a machine without a GPU, mixing it into the output of commands like
# `guiagent policy tiny DIR`. Without NVIDIA device nodes there is nothing to probe: name the CPU.
if "DS_ACCELERATOR" not in os.environ and not glob.glob("/dev/nvidia[0-9]*"):
    os.environ["DS_ACCELERATOR"] = "cpu"
