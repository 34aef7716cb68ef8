"""Sample-quality metrics: FID, Inception Score, improved precision/recall, StackedMNIST mode coverage,
their feature extractors (FID InceptionV3, digit CNN) and the cached real-data reference."""
from .digit_classifier import (
    DigitClassifier,
    load_digit_classifier,
    load_digit_splits,
    save_digit_classifier,
    train_digit_classifier,
)
from .extractors import DigitFeatures, build_feature_extractor
from .features import FeatureExtractor, extract_features
from .frechet import FrechetDistance, GaussianStatistics, frechet_distance, gaussian_statistics
from .inception_score import InceptionScore, inception_score
from .mode_coverage import ModeCoverage, mode_coverage, mode_histogram, predict_stacked_modes
from .precision_recall import PrecisionRecall, precision_recall
from .reference import ReferenceSet, load_or_compute_reference, reference_path

__all__ = [
    "DigitClassifier", "DigitFeatures", "FeatureExtractor", "FrechetDistance", "GaussianStatistics", "InceptionScore",
    "ModeCoverage", "PrecisionRecall", "ReferenceSet", "build_feature_extractor", "extract_features",
    "frechet_distance", "gaussian_statistics", "inception_score", "load_digit_classifier", "load_digit_splits",
    "load_or_compute_reference", "mode_coverage", "mode_histogram", "precision_recall", "predict_stacked_modes",
    "reference_path", "save_digit_classifier", "train_digit_classifier",
]
