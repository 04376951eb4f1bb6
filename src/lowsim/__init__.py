"""lowsim: calibrated low-light image simulation."""
__version__ = "0.1.0"
