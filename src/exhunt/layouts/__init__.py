"""Recognise evidence collections and expose each as one read-only tree of Windows paths."""
