"""Online anomaly models: per-series scorers, log and trace analytics, the model registry.

The stream uses :class:`ModelEngine` (one :class:`ServiceModelState` per service key);
data scientists use the detectors, the log and trace configurations
(:class:`LogPatterns`, :class:`TraceRED`) and :class:`ModelRegistry`; offline scoring
(:mod:`pipeline.evaluate.score`, the NAB scorer in :mod:`pipeline.evaluate.nab`) and
replays (:mod:`pipeline.detect.replay`) build on them.
"""

from models.analytics import LogPatterns, TraceRED
from models.base import Detector, Finding, ModelError
from models.calibration import Calibrator, score_from_log10p, tail_log10
from models.columns import metric_category
from models.engine import METRIC_CLASSES, ModelEngine, ServiceModelState
from models.ensemble import SeasonalEnsemble
from models.forecast import ForecastResidual, HalfSpaceTreesScorer
from models.logs import LogAnalytics, TemplateMiner
from models.multivariate import FEATURES, ServiceVectorHST
from models.registry import ModelRegistry, ModelVersion
from models.series import BankResult, SeriesBank
from models.traces import TraceAnalytics
from models.univariate import RobustSeasonal

DETECTORS = (SeasonalEnsemble, RobustSeasonal, ForecastResidual, HalfSpaceTreesScorer,
             ServiceVectorHST)
"""Every detector class (the shared test suite runs over these)."""

__all__ = [
    "DETECTORS",
    "FEATURES",
    "BankResult",
    "Calibrator",
    "Detector",
    "Finding",
    "ForecastResidual",
    "HalfSpaceTreesScorer",
    "METRIC_CLASSES",
    "LogAnalytics",
    "LogPatterns",
    "ModelEngine",
    "ModelError",
    "ModelRegistry",
    "ModelVersion",
    "RobustSeasonal",
    "SeasonalEnsemble",
    "SeriesBank",
    "ServiceModelState",
    "ServiceVectorHST",
    "TemplateMiner",
    "TraceAnalytics",
    "TraceRED",
    "metric_category",
    "score_from_log10p",
    "tail_log10",
]
