"""mechclaims: claims about the inner structure of transformers, on trial against random nets.

One import name; the project's folders are its subpackages (setuptools' package-dir mapping):

    mechclaims.model      the NumPy transformer (model/)
    mechclaims.interp     measurements, nulls, statistics and verdicts (interp/)
    mechclaims.evidence   the pytest plugin that writes the evidence report (evidence/)
    mechclaims.fixtures   the harness's pytest plugin: options, registry, memo, judge (fixtures/)

The front door: `from mechclaims import Transformer, TransformerConfig`.
"""

from importlib import metadata

from mechclaims.model.config import TransformerConfig
from mechclaims.model.transformer import Transformer

__version__ = metadata.version("mechclaims")
__all__ = ["Transformer", "TransformerConfig", "__version__"]
