"""maskwatch: face-mask detection appliance for building entrances (Jetson Xavier NX, offline)."""
from setuptools import find_packages, setup

setup(
    name="maskwatch",
    version="0.1.0",
    description="Offline face-mask detection appliance: camera -> detector -> tracker -> spoken alarm -> monitor",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.8",
    packages=find_packages(include=["edge", "edge.*", "models", "models.*"]),
    include_package_data=True,
    package_data={"edge": ["*.yaml", "assets/*", "py.typed"], "models": ["released/*/model*.onnx", "released/*/MODEL_CARD.md", "released/*/*.json"]},
    install_requires=[
        # runtime (edge/): Python 3.8 (JetPack 5) to 3.12
        "numpy>=1.21",
        "opencv-python-headless>=4.5; platform_machine != 'aarch64'",  # the Jetson uses the system OpenCV (GStreamer)
        "onnxruntime>=1.14",
        "pyyaml>=5.4",
        "pydantic>=2.0,<3",
        "pygame>=2.1",        # the monitor window (SDL2: X11, Wayland or KMS/DRM); imported only with a display
        "sounddevice>=0.4",   # alarm playback via PortAudio (apt libportaudio2)
        "matplotlib>=3.5",    # `maskwatch report --png` only (imported lazily)
    ],
    extras_require={
        "train": [
            "torch==2.13.0",
            "onnx>=1.16",
            "albumentations>=2.0",
            "faster-coco-eval>=1.6",
            "matplotlib>=3.7",
            "tqdm>=4.66",
            "torch-pruning==1.6.1",  # models/train/prune.py (DependencyGraph); needs only numpy + torch
        ],
        # the Jetson (JetPack 5, aarch64): pycuda builds against the CUDA toolkit JetPack installs; jetson-stats
        # is the jtop library (its service: `sudo jtop --install-service`); TensorRT and the GStreamer OpenCV
        # come from apt (python3-libnvinfer, libopencv-python) through a venv with --system-site-packages
        "jetson": [
            "pycuda>=2022.1; platform_machine == 'aarch64' and sys_platform == 'linux'",
            "jetson-stats>=4.2; platform_machine == 'aarch64' and sys_platform == 'linux'",
        ],
        # Pillow: X root-window screenshots in the display test; systemd-python (builds against apt libsystemd-dev +
        # pkg-config): systemd.daemon.notify and the journal handler, tested both with and without it. It is optional
        # at run time (edge/systemd.py falls back to its own socket and stderr); on the Jetson it is apt
        # python3-systemd, seen by a venv made with --system-site-packages
        # the opt-in mqtt: section (events, counts and state to the site's broker); imported only when it is set.
        # 2.1 is the last release for Python 3.8 (JetPack 5); pip picks it there
        "mqtt": ["paho-mqtt>=2.1,<3", "markdown-it-py>=3"],
        # markdown-it-py: the link and anchor check of README.md and docs/ (tests/test_docs_links.py)
        "dev": ["pytest>=7", "vermin>=1.6", "Pillow>=9.2", "systemd-python>=234; sys_platform == 'linux'",
                "paho-mqtt>=2.1,<3", "markdown-it-py>=3"],
    },
    entry_points={"console_scripts": ["maskwatch=edge.cli:main"]},
)
