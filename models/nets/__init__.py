"""Detector networks."""
from models.nets.detectnet_v2 import DetectNetV2
from models.nets.mobilenet import MobileNetV2
from models.nets.resnet import ResNet18

__all__ = ["DetectNetV2", "MobileNetV2", "ResNet18"]
