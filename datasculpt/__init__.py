"""datasculpt: semantic long-context training sequences (DataSculpt, arXiv 2409.00997).

Python API: ``datasculpt.run(datasculpt.default_config(ctx_len=4096), output_dir="out")``.
"""

from datasculpt.config import default_config
from datasculpt.pipeline import run

__all__ = ["default_config", "run"]
__version__ = "0.1.0"
