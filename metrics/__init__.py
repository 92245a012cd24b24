"""Rate and distortion measures."""

from .rate import bits_per_element, information_bits

__all__ = ["bits_per_element", "information_bits"]
