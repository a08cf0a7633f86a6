"""Checks for the exercises of notebook nb12."""
