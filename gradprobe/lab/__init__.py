"""The lab: deep networks of any depth, activation and initialisation, real datasets, a
trainer with the probe attached, configs, sweeps and the demo.

Submodules are imported on use (`from gradprobe.lab.models import mlp`); importing this
package imports nothing heavy.
"""
