"""relaywizard: office devices sending mail through Microsoft 365, set up, proven and kept working."""

__version__ = "0.1.0"
