"""Online anomaly models: per-series scorers, log and trace analytics, the model registry.

The stream uses :class:`ModelEngine` (one :class:`ServiceModelState` per service key);
data scientists use the detectors, the log and trace configurations
(:class:`LogPatterns`, :class:`TraceRED`), :class:`ModelRegistry`, :func:`score_series`
and the NAB scorer in :mod:`models.nab` from notebooks.
"""

from models.analytics import LogPatterns, TraceRED
from models.base import Detector, Finding, ModelError
from models.calibration import Calibrator, score_from_log10p, tail_log10
from models.cli import models_command, resolve_detector, score_command
from models.columns import metric_category
from models.engine import ModelEngine, ServiceModelState
from models.forecast import ForecastResidual, HalfSpaceTreesScorer
from models.logs import LogAnalytics, TemplateMiner
from models.multivariate import FEATURES, ServiceVectorHST
from models.registry import ModelRegistry, ModelVersion
from models.replay import ReplayRun, replay, split_by_service
from models.score import score_csv, score_many, score_series
from models.series import BankResult, SeriesBank
from models.traces import TraceAnalytics
from models.univariate import RobustSeasonal

DETECTORS = (RobustSeasonal, ForecastResidual, HalfSpaceTreesScorer, ServiceVectorHST)
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
    "LogAnalytics",
    "LogPatterns",
    "ModelEngine",
    "ModelError",
    "ModelRegistry",
    "ModelVersion",
    "ReplayRun",
    "RobustSeasonal",
    "SeriesBank",
    "ServiceModelState",
    "ServiceVectorHST",
    "TemplateMiner",
    "TraceAnalytics",
    "TraceRED",
    "metric_category",
    "models_command",
    "replay",
    "resolve_detector",
    "score_command",
    "score_csv",
    "score_from_log10p",
    "score_many",
    "score_series",
    "split_by_service",
    "tail_log10",
]
