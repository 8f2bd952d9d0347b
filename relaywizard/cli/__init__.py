"""The command line over the core. Imports no Qt until a GUI command runs."""
