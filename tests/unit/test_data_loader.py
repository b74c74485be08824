"""TrainDataset / collate shapes and dtypes; the eval batches are the server's preprocessing."""

from pathlib import Path

import numpy as np
import pytest
import torch

from generator.data.dataset import load_yolo
from generator.data.loader import TrainDataset, collate, iter_images
from generator.data.synth import synthesize
from generator.errors import UsageError
from generator.runtime import boxes as runtime_boxes
from generator.runtime import imaging

S = 96


@pytest.fixture(scope="module")
def train(tmp_path_factory):
    data_yaml = synthesize(tmp_path_factory.mktemp("loader") / "ds", 12, 3, 128, 3, progress=False)
    return load_yolo(data_yaml, "train")


def check_item(image, targets, nc):
    assert image.shape == (3, S, S) and image.dtype == torch.float32
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert targets.dtype == torch.float32 and targets.ndim == 2 and targets.shape[1] == 5
    cls = targets[:, 0]
    assert torch.equal(cls, cls.round()) and ((cls >= 0) & (cls < nc)).all()
    xyxy = targets[:, 1:]
    assert ((xyxy >= 0) & (xyxy <= S)).all()
    assert (xyxy[:, 2:] > xyxy[:, :2]).all()


def test_plain_items_are_exactly_the_serving_preprocessing(train):
    ds = TrainDataset(train, S, augment=False, seed=0)
    assert len(ds) == len(train.samples)
    for i in range(3):
        image, targets = ds[i]
        check_item(image, targets, train.nc)
        sample = train.samples[i]
        chw, transform = imaging.preprocess_bytes(sample.image_path.read_bytes(), S, S)
        assert torch.equal(image, torch.from_numpy(chw))
        expected = runtime_boxes.letterbox_boxes(sample.boxes, transform)
        np.testing.assert_allclose(targets[:, 1:].numpy(), expected, atol=1e-4)
        assert targets[:, 0].tolist() == sample.classes.tolist()


@pytest.mark.parametrize("mosaic", [0.0, 1.0])
def test_augmented_items_shapes_and_reproducibility(train, mosaic):
    ds = TrainDataset(train, S, augment=True, seed=5, mosaic=mosaic)
    torch.manual_seed(0)
    first = [ds[i] for i in range(len(ds))]
    for image, targets in first:
        check_item(image, targets, train.nc)
    assert sum(len(t) for _, t in first) > 0
    torch.manual_seed(0)
    again = [ds[i] for i in range(4)]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    later = ds[0]  # torch's stream moved on: a different augmentation of the same image
    assert not torch.equal(later[0], first[0][0])


def test_collate_adds_batch_index(train):
    ds = TrainDataset(train, S, augment=False, seed=0)
    batch = [ds[i] for i in range(4)]
    images, targets = collate(batch)
    assert images.shape == (4, 3, S, S) and images.dtype == torch.float32
    counts = [len(t) for _, t in batch]
    assert targets.shape == (sum(counts), 6) and targets.dtype == torch.float32
    assert targets[:, 0].tolist() == [float(i) for i, n in enumerate(counts) for _ in range(n)]
    assert torch.equal(targets[:, 1:], torch.cat([t for _, t in batch]))


def test_collate_without_objects():
    images, targets = collate([(torch.zeros(3, 8, 8), torch.zeros(0, 5))] * 2)
    assert images.shape == (2, 3, 8, 8) and targets.shape == (0, 6)


def test_dataloader_with_collate(train):
    ds = TrainDataset(train, S, augment=True, seed=1, mosaic=0.5)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, shuffle=True, collate_fn=collate,
                                         generator=torch.Generator().manual_seed(0))
    batches = list(loader)
    assert len(batches) == (len(ds) + 3) // 4
    images, targets = batches[0]
    assert images.shape[1:] == (3, S, S) and targets.shape[1] == 6
    assert sum(len(t) for _, t in batches) > 0
    for images, targets in batches:
        assert set(targets[:, 0].long().tolist()) <= set(range(images.shape[0]))


def test_iter_images_batches(train):
    batches = list(iter_images(train, S, batch_size=4))
    n = len(train.samples)
    assert [len(idx) for _, _, idx in batches] == [4] * (n // 4) + ([n % 4] if n % 4 else [])
    images, transforms, indices = batches[0]
    assert images.shape == (4, 3, S, S) and images.dtype == np.float32
    assert transforms.shape == (4, 5) and indices.tolist() == [0, 1, 2, 3]
    for row, i in zip(transforms, indices):
        s = train.samples[i]
        assert (row[3], row[4]) == (s.width, s.height)
        chw, t = imaging.preprocess_bytes(s.image_path.read_bytes(), S, S)
        np.testing.assert_array_equal(images[list(indices).index(i)], chw)
        np.testing.assert_array_equal(row, t)


def test_size_mismatch_and_bad_arguments(train, tmp_path):
    sample = train.samples[0]
    wrong = type(train)(train.names, [type(sample)(sample.image_path, sample.boxes, sample.classes,
                                                    sample.width + 1, sample.height)], "t")
    with pytest.raises(UsageError, match="differs from the dataset's"):
        TrainDataset(wrong, S, augment=False, seed=0)[0]
    with pytest.raises(UsageError, match="mosaic probability"):
        TrainDataset(train, S, augment=True, seed=0, mosaic=1.5)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"nope")
    bad = type(train)(train.names, [type(sample)(Path(broken), width=4, height=4)], "t")
    with pytest.raises(UsageError, match="broken.jpg: cannot decode"):
        next(iter_images(bad, S))
