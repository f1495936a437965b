"""Diagnostic scripts: measurements about trained models that are not training or evaluation runs."""
