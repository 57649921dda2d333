"""load(): splits, limit, normalization, errors; synthetic datasets; CSV loader."""

from __future__ import annotations

import numpy as np
import pytest

from lossbench import data
from lossbench.data import synthetic
from lossbench.errors import ConfigError, DataError

SYNTHETIC = ["blobs", "moons", "spirals", "regression", "counts", "heteroscedastic"]
PARTS = ["x_train", "y_train", "x_val", "y_val", "x_test", "y_test"]


def arrays(ds):
    return [getattr(ds, p) for p in PARTS]


# ---------------------------------------------------------------- synthetic

@pytest.mark.parametrize("name", SYNTHETIC)
def test_synthetic_shapes_and_dtypes(name):
    ds = data.load(name)  # 1000 samples, 20 % test, 10 % of the rest for validation
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (720, 80, 200)
    for part, x in zip(PARTS, arrays(ds)):
        assert x.flags.c_contiguous, part
    for x in (ds.x_train, ds.x_val, ds.x_test):
        assert x.dtype == np.float32 and x.shape[1] == ds.n_features
    if ds.task == "classification":
        for y in (ds.y_train, ds.y_val, ds.y_test):
            assert y.dtype == np.int64 and y.ndim == 1
        assert set(np.unique(ds.y_train)) == set(range(ds.n_outputs))
    else:
        for y in (ds.y_train, ds.y_val, ds.y_test):
            assert y.dtype == np.float32 and y.shape[1] == ds.n_outputs == 1


@pytest.mark.parametrize("name,n_classes", [("blobs", 3), ("moons", 2), ("spirals", 3)])
def test_synthetic_classes_are_balanced(name, n_classes):
    raw = data.DATASETS.get(name)(0)
    counts = np.bincount(np.concatenate([raw.y, raw.y_test]))
    assert len(counts) == raw.n_outputs == n_classes
    assert counts.max() - counts.min() <= 1  # the generated pool is exactly balanced
    train = np.bincount(data.load(name).y_train)
    assert train.min() > 0.8 * train.mean()  # and the random splits keep it roughly so


def test_synthetic_options_change_the_data():
    ds = data.load("spirals", n_classes=5, n_samples=500)
    assert ds.n_outputs == 5 and len(ds.x_train) + len(ds.x_val) + len(ds.x_test) == 500
    ds = data.load("blobs", n_features=7, n_classes=4)
    assert ds.n_features == 7 and ds.n_outputs == 4
    ds = data.load("regression", n_features=1)
    assert ds.n_features == 1


def test_blobs_clusters_are_separated_by_class():
    ds = data.load("blobs", cluster_std=0.1, normalize="none")
    means = np.array([ds.x_train[ds.y_train == k].mean(0) for k in range(3)])
    spread = max(ds.x_train[ds.y_train == k].std(0).max() for k in range(3))
    assert spread < 0.2 and np.linalg.norm(means[0] - means[1]) > 1


def test_regression_outliers_only_in_train_pool():
    raw = synthetic.regression(0)
    residual_pool = raw.y[:, 0] - synthetic.regression_target(raw.x)
    residual_test = raw.y_test[:, 0] - synthetic.regression_target(raw.x_test)
    assert (residual_pool > 4).sum() == 80  # 10 % of the 800 train+val targets, >= 5 above f
    assert np.abs(residual_test).max() < 0.6  # noise 0.1 only
    clean = synthetic.regression(0, outlier_fraction=0.0)
    assert np.abs(clean.y[:, 0] - synthetic.regression_target(clean.x)).max() < 0.6


def test_counts_are_poisson_with_a_log_linear_rate():
    raw = synthetic.counts(0, n_samples=20000, rate=4.0)
    y = np.concatenate([raw.y, raw.y_test])[:, 0]
    x = np.concatenate([raw.x, raw.x_test])
    assert (y >= 0).all() and (y == np.round(y)).all()
    # near x = 0 the mean count is `rate`
    near0 = np.abs(x).max(axis=1) < 0.1
    assert y[near0].mean() == pytest.approx(4.0, rel=0.1)
    # Poisson: variance = mean, in a narrow bin of x
    assert y[near0].var() == pytest.approx(y[near0].mean(), rel=0.2)
    assert data.load("counts", seed=0, rate=0.5).y_train.mean() < data.load("counts", seed=0).y_train.mean()


def test_heteroscedastic_noise_grows_with_x():
    raw = synthetic.heteroscedastic(0, n_samples=20000, noise=0.1, slope=0.5)
    r = raw.y[:, 0] - synthetic.regression_target(raw.x)
    a = np.abs(raw.x[:, 0])
    assert r[a < 0.2].std() == pytest.approx(0.1 + 0.5 * 0.1, rel=0.1)  # mean |x| 0.1 in that band
    assert r[a > 1.8].std() == pytest.approx(0.1 + 0.5 * 1.9, rel=0.1)
    flat = synthetic.heteroscedastic(0, slope=0.0)
    assert np.abs(flat.y[:, 0] - synthetic.regression_target(flat.x)).max() < 0.6


def test_synthetic_option_values_are_checked():
    with pytest.raises(ConfigError, match=r"^dataset\.n_samples: must be an integer >= 2, got -5$"):
        data.load("blobs", n_samples=-5)
    with pytest.raises(ConfigError, match=r"^dataset\.n_samples: must be at least n_classes \(5\), got 4$"):
        data.load("blobs", n_samples=4, n_classes=5)
    with pytest.raises(ConfigError, match=r"^dataset\.noise: must be a number >= 0, got -1$"):
        data.load("moons", noise=-1)
    with pytest.raises(ConfigError, match=r"^dataset\.outlier_fraction: must be a number in \[0, 1\), got 1\.0$"):
        data.load("regression", outlier_fraction=1.0)
    with pytest.raises(ConfigError, match=r"^dataset\.n_classes: must be an integer >= 2, got 2\.5$"):
        data.load("spirals", n_classes=2.5)
    with pytest.raises(ConfigError, match=r"^dataset\.test_fraction: must be a number in \(0, 1\), got 0$"):
        data.load("blobs", test_fraction=0)
    with pytest.raises(ConfigError, match=r"^dataset\.test_fraction: leaves 0 of 4 examples for the test split"):
        data.load("blobs", n_samples=4, test_fraction=0.1)


# ---------------------------------------------------------------- load()

def test_split_sizes():
    ds = data.load("blobs", n_samples=400, val_fraction=0.25)
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (240, 80, 80)
    ds = data.load("blobs", n_samples=400, val_fraction=0)
    assert (len(ds.x_train), ds.x_val.shape, len(ds.x_test)) == (320, (0, 2), 80)


def test_splits_are_disjoint_and_cover_the_pool():
    raw = data.DATASETS.get("blobs")(0)
    ds = data.load("blobs", normalize="none")
    pool = {tuple(r) for r in raw.x}
    train, val = {tuple(r) for r in ds.x_train}, {tuple(r) for r in ds.x_val}
    assert not train & val and train | val == pool


def test_standard_normalization_uses_train_statistics_only():
    raw = data.load("regression", seed=1, normalize="none")
    ds = data.load("regression", seed=1, normalize="standard")
    assert np.abs(ds.x_train.mean(0)).max() < 1e-5
    np.testing.assert_allclose(ds.x_train.std(0), 1, rtol=1e-4)
    assert np.abs(ds.x_val.mean(0)).max() > 1e-3  # val is not standardized on its own
    mean, std = raw.x_train.mean(0, dtype=np.float64), raw.x_train.std(0, dtype=np.float64)
    np.testing.assert_allclose(ds.x_val, (raw.x_val - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ds.x_test, (raw.x_test - mean) / std, rtol=1e-5, atol=1e-5)
    # regression targets are left as they are
    np.testing.assert_array_equal(ds.y_train, raw.y_train)


def test_minmax_normalization():
    raw = data.load("moons", normalize="none")
    ds = data.load("moons", normalize="minmax")
    np.testing.assert_allclose(ds.x_train.min(0), 0, atol=1e-7)
    np.testing.assert_allclose(ds.x_train.max(0), 1, atol=1e-6)
    lo, hi = raw.x_train.min(0), raw.x_train.max(0)
    np.testing.assert_allclose(ds.x_test, (raw.x_test - lo) / (hi - lo), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("normalize", ["standard", "minmax"])
def test_constant_feature_does_not_divide_by_zero(tmp_path, normalize):
    f = tmp_path / "c.csv"
    f.write_text("a,const,y\n" + "".join(f"{i},5,{i % 2}\n" for i in range(20)))
    ds = data.load("csv", path=str(f), normalize=normalize)
    assert np.isfinite(ds.x_train).all() and (ds.x_train[:, 1] == 0).all()


def test_limit_caps_pool_and_test():
    ds = data.load("blobs", limit=50)
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (45, 5, 50)
    again = data.load("blobs", limit=50)
    np.testing.assert_array_equal(ds.x_train, again.x_train)
    ds = data.load("blobs", n_samples=100, limit=500)  # larger than the data: no effect
    assert (len(ds.x_train) + len(ds.x_val), len(ds.x_test)) == (80, 20)


def test_load_errors():
    with pytest.raises(ConfigError, match=r"^dataset\.n_sample: unknown option .*got 10 "
                                          r"\(did you mean 'n_samples'\?\)$"):
        data.load("blobs", n_sample=10)
    with pytest.raises(ConfigError, match=r"^dataset\.normalize: must be one of \['none', 'standard', "
                                          r"'minmax'\], got 'zscore'$"):
        data.load("blobs", normalize="zscore")
    with pytest.raises(ConfigError, match=r"^dataset\.val_fraction: must be a number in \[0, 1\), got 1\.0$"):
        data.load("blobs", val_fraction=1.0)
    with pytest.raises(ConfigError, match=r"^dataset\.limit: must be an integer >= 1, got 0$"):
        data.load("blobs", limit=0)
    with pytest.raises(ConfigError, match=r"^dataset\.seed: must be an integer >= 0, got -1$"):
        data.load("blobs", seed=-1)
    with pytest.raises(ConfigError, match=r"^dataset\.rng: unknown option"):
        data.load("blobs", rng=1)
    with pytest.raises(ConfigError, match=r"^dataset\.name: must be one of \[.*\], got 'mnsit' "
                                          r"\(did you mean 'mnist'\?\)$"):
        data.load("mnsit")


def test_dataset_options_and_repr():
    common = {"seed", "val_fraction", "normalize", "limit"}
    moons = data.DATASETS.schema("moons").params
    assert {k: p.default for k, p in moons.items() if k not in common} == \
        {"n_samples": 1000, "noise": 0.1, "test_fraction": 0.2}
    assert set(data.DATASETS.schema("mnist").params) == common | {"path", "mirrors"}
    assert {"blobs", "moons", "spirals", "regression", "csv", "mnist",
            "fashion_mnist"} <= set(data.DATASETS.names())
    assert repr(data.load("blobs")) == ("Dataset('blobs', classification, n_outputs=3, "
                                        "n_features=2, train=720, val=80, test=200)")


# ---------------------------------------------------------------- csv

def write_csv(tmp_path, text, name="d.csv"):
    f = tmp_path / name
    f.write_text(text)
    return str(f)


def test_csv_string_labels_become_sorted_indices(tmp_path):
    names = ["dog", "cat", "ant"]
    rows = "".join(f"{i},{i * 10},{names[i % 3]}\n" for i in range(30))
    ds = data.load("csv", path=write_csv(tmp_path, "a,b,animal\n" + rows), normalize="none",
                   val_fraction=0)
    assert ds.task == "classification" and ds.n_outputs == 3
    for x, y in zip(np.concatenate([ds.x_train, ds.x_test]),
                    np.concatenate([ds.y_train, ds.y_test])):
        assert y == {"ant": 0, "cat": 1, "dog": 2}[names[int(x[0]) % 3]]


def test_csv_integer_target_with_few_values_is_classification(tmp_path):
    rows = "".join(f"{i},{i % 4}\n" for i in range(40))
    ds = data.load("csv", path=write_csv(tmp_path, "x,label\n" + rows))
    assert ds.task == "classification" and ds.n_outputs == 4 and ds.y_train.dtype == np.int64


def test_csv_real_target_is_regression(tmp_path):
    rows = "".join(f"{i},{i * 0.5 + 0.25},{i}\n" for i in range(40))
    ds = data.load("csv", path=write_csv(tmp_path, "x,y,z\n" + rows), target="y",
                   normalize="none", val_fraction=0)
    assert ds.task == "regression" and ds.n_outputs == 1 and ds.n_features == 2
    assert ds.y_train.shape == (32, 1) and ds.y_train.dtype == np.float32
    np.testing.assert_allclose(ds.y_train[:, 0], ds.x_train[:, 0] * 0.5 + 0.25)


def test_csv_many_integer_values_is_regression_unless_told(tmp_path):
    path = write_csv(tmp_path, "x,y\n" + "".join(f"{i},{i}\n" for i in range(40)))
    assert data.load("csv", path=path).task == "regression"
    ds = data.load("csv", path=path, task="classification")
    assert ds.task == "classification" and ds.n_outputs == 40


def test_csv_errors(tmp_path):
    with pytest.raises(DataError, match="no such file.*missing.csv"):
        data.load("csv", path=str(tmp_path / "missing.csv"))
    with pytest.raises(DataError, match=r"^dataset\.path: is a directory, not a CSV file, got "):
        data.load("csv", path=str(tmp_path))
    with pytest.raises(ConfigError, match=r"^dataset\.path: required by dataset 'csv' \(a string\), got nothing$"):
        data.load("csv")
    ok = write_csv(tmp_path, "x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(10)))
    with pytest.raises(ConfigError, match=r"^dataset\.target: must be a column of .*d\.csv \(x, y\), got 'label'$"):
        data.load("csv", path=ok, target="label")
    with pytest.raises(ConfigError,
                       match=r"^dataset\.task: must be one of \['classification', 'regression'\], got 'ranking'$"):
        data.load("csv", path=ok, task="ranking")
    nan = write_csv(tmp_path, "x,w,y\n1,,0\n2,3,1\n3,4,0\n", "nan.csv")
    with pytest.raises(DataError, match="missing values in column.*'w' \\(1\\)"):
        data.load("csv", path=nan)
    text = write_csv(tmp_path, "x,colour,y\n1,red,0\n2,blue,1\n3,red,0\n", "text.csv")
    with pytest.raises(DataError, match=r"\['colour'\] are not numeric"):
        data.load("csv", path=text)
    words = write_csv(tmp_path, "x,y\n1,a\n2,b\n3,c\n", "words.csv")
    with pytest.raises(DataError, match="not numeric, so it cannot be a regression target"):
        data.load("csv", path=words, task="regression")


def test_csv_files_as_people_have_them_are_explained(tmp_path):
    semi = write_csv(tmp_path, "x;y\n1;0\n2;1\n3;0\n", "semi.csv")
    with pytest.raises(DataError, match=r"found 1 column, 3 rows\); its header holds ';': lossbench reads "
                                        r"comma-separated files$"):
        data.load("csv", path=semi)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match=r"empty\.csv: is empty; a CSV file needs a header row"):
        data.load("csv", path=str(tmp_path / "empty.csv"))
    (tmp_path / "latin.csv").write_bytes("x,y\n1,caf\xe9\n2,b\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.csv: is not UTF-8 text \(byte 0xe9\); save it as UTF-8$"):
        data.load("csv", path=str(tmp_path / "latin.csv"))
