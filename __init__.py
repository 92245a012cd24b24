"""polycodec: neural codecs for images, audio and video.

    file -> media tensor -> model -> quantizer -> entropy model -> coder -> container (.pcdc) -> file

Subpackages: ``bitstream`` (the container), ``entropy`` (entropy models and the ANS coder), ``quantizers``,
``models``, ``codecs`` (registered codecs, loaded with :func:`load`), ``metrics``, ``cli``.
"""

__version__ = "0.1.0"

from .codecs import available_codecs, load

__all__ = ["__version__", "available_codecs", "load"]
