"""Mean-field prediction of gradient growth and decay before training (THEORY.md).

    pred = predict(model, input_var=1.0)     # per layer q^l, chi, log_gain, band
    critical_init("tanh", bias_var=0.05)     # 1.761: sigma_w^2 on the edge of chaos
    jacobian_spectrum(model, x)              # m_1, spread, s_max^2 / m_1 at a batch

Imports torch and numpy only.
"""

from gradprobe.theory.activations import ACTIVATIONS, Activation, get_activation
from gradprobe.theory.compare import Comparison, compare
from gradprobe.theory.critical import critical_init, critical_point
from gradprobe.theory.jacobian import JacobianSpectrum, jacobian_spectrum
from gradprobe.theory.model_spec import spec_from_model
from gradprobe.theory.predict import NotPredictedError, predict
from gradprobe.theory.prediction import Prediction
from gradprobe.theory.spec import LayerSpec, NetworkSpec

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "Comparison",
    "JacobianSpectrum",
    "LayerSpec",
    "NetworkSpec",
    "NotPredictedError",
    "Prediction",
    "compare",
    "critical_init",
    "critical_point",
    "get_activation",
    "jacobian_spectrum",
    "predict",
    "spec_from_model",
]
