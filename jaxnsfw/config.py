"""The shape of an open_nsfw-family ResNet, as a frozen dataclass.

The defaults are Yahoo's ResNet_50_1by2_nsfw: a ResNet-50 with every width halved. The converter
reads a config off a prototxt, so smaller nets of the same family (the tests build some) share
one Flax module and one converter.
"""

from __future__ import annotations

import dataclasses
import json


@dataclasses.dataclass(frozen=True)
class ResNetConfig:
    input_size: int = 224
    input_channels: int = 3
    stem_features: int = 64
    stem_kernel: int = 7
    stem_stride: int = 2
    stem_padding: int = 3
    stem_pool_kernel: int = 3
    stem_pool_stride: int = 2
    stage_sizes: tuple[int, ...] = (3, 4, 6, 3)
    stage_widths: tuple[int, ...] = (32, 64, 128, 256)
    stage_strides: tuple[int, ...] = (1, 2, 2, 2)
    expansion: int = 4
    head_pool_kernel: int = 7
    num_classes: int = 2
    batch_norm_eps: float = 1e-5
    classifier_name: str = "fc_nsfw"

    def __post_init__(self):
        if not (len(self.stage_sizes) == len(self.stage_widths) == len(self.stage_strides)):
            raise ValueError(f"stage_sizes, stage_widths and stage_strides differ in length: {self}")

    @property
    def embedding_size(self) -> int:
        return self.stage_widths[-1] * self.expansion

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ResNetConfig":
        fields = json.loads(text)
        for name in ("stage_sizes", "stage_widths", "stage_strides"):
            fields[name] = tuple(fields[name])
        return cls(**fields)


OPEN_NSFW = ResNetConfig()
