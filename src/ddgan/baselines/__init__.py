"""Baselines that DDGAN is compared against."""
