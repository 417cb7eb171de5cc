"""A benchmark of known-sick and known-healthy training runs, each with the set of findings
a careful human would report from its numbers; `run.py` scores `gradprobe.diagnose` on it.
"""
