"""Checks for the exercises of notebook appendix_a."""
