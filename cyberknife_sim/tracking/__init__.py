"""Tracking models: correlation (external -> internal) and latency prediction."""

from ._correlation import (
    RANGE_MARGIN,
    CorrelationModel,
    CorrelationStatus,
    DualCorrelation,
    PolynomialCorrelation,
    VelocityCorrelation,
    make_correlation_model,
    outside_range,
    valid_range,
)
from ._evaluate import evaluate_correlation
from ._predictors import (
    KalmanPredictor,
    LinearPredictor,
    NLMSPredictor,
    NoPredictor,
    Predictor,
    RLSPredictor,
    horizon_steps,
    make_predictor,
    relative_rms,
)
from ._rolling import RollingCorrelation
from ._svrpred import SVRPredictor

__all__ = [
    "RANGE_MARGIN",
    "outside_range",
    "valid_range",
    "CorrelationModel",
    "CorrelationStatus",
    "DualCorrelation",
    "KalmanPredictor",
    "LinearPredictor",
    "NLMSPredictor",
    "NoPredictor",
    "PolynomialCorrelation",
    "Predictor",
    "RLSPredictor",
    "RollingCorrelation",
    "SVRPredictor",
    "VelocityCorrelation",
    "evaluate_correlation",
    "horizon_steps",
    "make_correlation_model",
    "make_predictor",
    "relative_rms",
]
