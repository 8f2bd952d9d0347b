"""Tests of the lab itself: the real servers behave as the later tests rely on."""
