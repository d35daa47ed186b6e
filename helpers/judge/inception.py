"""The FID Inception network: the TF Inception-v3 of 2015-12-05 (the one FID and IS were defined with) in PyTorch.

The architecture is pytorch-fid's `fid_inception_v3` (Apache-2.0, https://github.com/mseitzer/pytorch-fid):
torchvision's Inception3 blocks patched to match TensorFlow (average pooling without the padded zeros, max
pooling in the last block, 1008 classes), written out here so that the zoo does not need torchvision, which
every maintained package that has it (pytorch-fid, clean-fid, torch-fidelity) imports.
Its weights are pytorch-fid's converted TF checkpoint, downloaded once by `torch.hub` (the 8 hex digits in the
file name are the start of its sha256, checked on download only, never on the cached copy).

Images are resized as clean-fid does (Parmar et al. 2022): each channel of the uint8 image as float32, PIL
bicubic with antialiasing, to 299 x 299; then scaled as the TF graph does, (x - 128) / 128 (clean-fid's TF
port and torch-fidelity; pytorch-fid's 2x - 1 on [0, 1] differs by 0.4%).

tests/judge/test_metrics.py checks it against torch-fidelity 0.4.0's `FeatureExtractorInceptionV3` with the same random
weights, loaded strictly by both: fed the same tensor, the pool3 features and unbiased logits are equal bit for bit;
from `to_batch` (the same values in another memory layout) they agree to float rounding (CPU convolutions round
differently for another layout), within 1e-5 relative.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

SIZE = 299
RESIZE = "clean-fid: PIL bicubic with antialiasing, per channel in float32, to 299x299"
RESIZES = {"clean": RESIZE, "bilinear": "pytorch-fid/torchmetrics: torch bilinear without antialiasing, to 299x299"}


class BasicConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _avg(x):
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)  # TF: padded zeros not averaged


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1, self.branch5x5_2 = BasicConv2d(cin, 48, 1), BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool, 1)

    def forward(self, x):
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg(x))], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionC(nn.Module):
    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for i in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{i}")(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg(x))], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1, self.branch3x3_2 = BasicConv2d(cin, 192, 1), BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    def __init__(self, cin: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool  # TF's last block max-pools (pytorch-fid's FIDInceptionE_2)
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        pool = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg(x)
        return torch.cat([self.branch1x1(x), b3, d, self.branch_pool(pool)], 1)


class FIDInceptionV3(nn.Module):
    """Inception-v3 as in FID: 2048-d pool3 features and the 1008 TF logits, from images in [-1, 1] at 299 px."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = InceptionA(192, 32), InceptionA(256, 64), InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b, self.Mixed_6c = InceptionC(768, 128), InceptionC(768, 160)
        self.Mixed_6d, self.Mixed_6e = InceptionC(768, 160), InceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b, self.Mixed_7c = InceptionE(1280, max_pool=False), InceptionE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)

    def forward(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        """(pool3 features N x 2048, logits N x 1008 without the bias, as the TF Inception-score code used)."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(F.max_pool2d(x, 3, stride=2)))
        x = F.max_pool2d(x, 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        pool = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return pool, pool @ self.fc.weight.T


def load_weights(model: FIDInceptionV3, state: dict) -> FIDInceptionV3:
    """Load a pytorch-fid state dict; every weight must match (BatchNorm's batch counters may be absent)."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"not FID Inception weights: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model.eval()


def clean_resize(image: Image.Image, size: int = SIZE) -> np.ndarray:
    """clean-fid's resize: each channel of the uint8 RGB image as float32, PIL bicubic (antialiased), H x W x 3."""
    rgb = np.asarray(image.convert("RGB"))
    channels = [
        np.asarray(Image.fromarray(rgb[..., c].astype(np.float32)).resize((size, size), Image.BICUBIC))
        for c in range(3)
    ]
    return np.clip(np.stack(channels, axis=-1), 0, 255)


def to_batch(images: list[Image.Image], resize: str = "clean") -> torch.Tensor:
    """Resized images as an N x 3 x 299 x 299 float tensor, (x - 128) / 128 as in the TF graph.

    `resize="bilinear"` is pytorch-fid's and torchmetrics' way (no antialiasing), kept to show how much it matters.
    """
    if resize == "bilinear":
        x = [torch.from_numpy(np.asarray(im.convert("RGB"), np.float32)).permute(2, 0, 1) for im in images]
        x = torch.stack([F.interpolate(t[None], (SIZE, SIZE), mode="bilinear", align_corners=False)[0] for t in x])
        return (x - 128) / 128
    if resize != "clean":
        raise ValueError(f"resize '{resize}' is not one of {sorted(RESIZES)}")
    arr = np.stack([clean_resize(im) for im in images]).transpose(0, 3, 1, 2)
    return torch.from_numpy((arr - 128) / 128).float()
