"""The Jetson camera path: the GStreamer pipeline string, the OpenCV build check, the Jetson check, the
path choice and the stable /dev/v4l/by-id device name (a temporary folder of real symlinks). The real
C922 on a Jetson is tested by the `jetson` tests, skipped elsewhere."""
from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import pytest

from edge.sources import (BY_ID_DIR, OpenCVSource, SourceError, build_has_gstreamer, choose_camera_path,
                          find_by_id, fps_fraction, gstreamer_available, jetson_camera_pipeline, jetson_model,
                          make_source, resolve_camera_device)

C922 = "usb-046d_C922_Pro_Stream_Webcam_4A1B2C3D-video-index0"

# excerpts of cv2.getBuildInformation(): JetPack 5's apt OpenCV 4.5.4 and a pip wheel
JETPACK_BUILD = """
  Video I/O:
    FFMPEG:                      YES
      avcodec:                   YES (58.54.100)
    GStreamer:                   YES (1.16.3)
    v4l/v4l2:                    YES (linux/videodev2.h)
"""
WHEEL_BUILD = """
  Video I/O:
    DC1394:                      NO
    FFMPEG:                      YES
    GStreamer:                   NO
    v4l/v4l2:                    YES (linux/videodev2.h)
"""


def test_pipeline_string_720p60_hardware_decode():
    assert jetson_camera_pipeline("/dev/video0", 1280, 720, 60) == (
        "v4l2src device=/dev/video0 ! image/jpeg,width=1280,height=720,framerate=60/1 ! nvv4l2decoder mjpeg=1 "
        "! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR "
        "! appsink drop=true max-buffers=1 sync=false")


def test_pipeline_string_nvjpegdec_30fps_and_by_id_device():
    dev = f"/dev/v4l/by-id/{C922}"
    p = jetson_camera_pipeline(dev, 1280, 720, 30.0, decoder="nvjpegdec")
    assert p.startswith(f"v4l2src device={dev} ! image/jpeg,width=1280,height=720,framerate=30/1 ! nvjpegdec ! ")
    assert "mjpeg=1" not in p and p.endswith("appsink drop=true max-buffers=1 sync=false")
    # every element is separated by " ! " and the caps sit between the right elements
    parts = [x.strip() for x in p.split("!")]
    assert [x.split()[0].split(",")[0] for x in parts] == [
        "v4l2src", "image/jpeg", "nvjpegdec", "nvvidconv", "video/x-raw", "videoconvert", "video/x-raw", "appsink"]


def test_pipeline_rejects_bad_input():
    with pytest.raises(ValueError, match="decoder"):
        jetson_camera_pipeline("/dev/video0", decoder="avdec_mjpeg")
    with pytest.raises(ValueError, match="characters"):
        jetson_camera_pipeline("/dev/video0 ! filesink location=/etc/passwd")
    with pytest.raises(ValueError):
        fps_fraction(0)


def test_fps_fraction():
    assert fps_fraction(60) == (60, 1) and fps_fraction(30.0) == (30, 1)
    assert fps_fraction(7.5) == (15, 2) and fps_fraction(29.97) == (2997, 100)


def test_build_information_parsing():
    assert build_has_gstreamer(JETPACK_BUILD) is True
    assert build_has_gstreamer(WHEEL_BUILD) is False
    assert build_has_gstreamer("") is False
    # the real build of this machine agrees with the function the runtime uses
    assert build_has_gstreamer(cv2.getBuildInformation()) == gstreamer_available()


def test_choose_camera_path():
    assert choose_camera_path("auto", True, True) == "gstreamer"
    assert choose_camera_path("auto", True, False) == "v4l2"    # GStreamer OpenCV on a PC: plain V4L2
    assert choose_camera_path("auto", False, True) == "v4l2"    # a Jetson with a pip OpenCV
    assert choose_camera_path("v4l2", True, True) == "v4l2"
    assert choose_camera_path("gstreamer", True, False) == "gstreamer"
    with pytest.raises(SourceError, match="no GStreamer"):
        choose_camera_path("gstreamer", False, True)


def _by_id_dir(tmp_path: Path) -> Path:
    """/dev/v4l/by-id as udev makes it: symlinks to ../../videoN (here: real files in a temp tree)."""
    dev = tmp_path / "dev"
    by_id = dev / "v4l" / "by-id"
    by_id.mkdir(parents=True)
    for n in (0, 1, 2, 3):
        (dev / f"video{n}").write_bytes(b"")
    links = {C922: "video2", C922.replace("index0", "index1"): "video3",
             "usb-046d_HD_Pro_Webcam_C920_11112222-video-index0": "video0",
             "usb-Generic_USB_Camera_00000000-video-index0": "video1"}
    for name, target in links.items():
        os.symlink(os.path.join("..", "..", target), str(by_id / name))
    return by_id


def test_find_by_id_in_a_real_symlink_tree(tmp_path):
    by_id = _by_id_dir(tmp_path)
    found = find_by_id("*C922*-video-index0", by_id)
    assert found == str(by_id / C922)
    assert os.path.realpath(found) == str((tmp_path / "dev" / "video2").resolve())
    assert find_by_id("*C920*-video-index0", by_id) == str(by_id / "usb-046d_HD_Pro_Webcam_C920_11112222-video-index0")
    assert find_by_id("*Brio*", by_id) is None
    assert find_by_id("*C922*", tmp_path / "nonexistent") is None


def test_find_by_id_skips_a_dangling_link_and_a_replug_keeps_the_name(tmp_path):
    by_id = _by_id_dir(tmp_path)
    (tmp_path / "dev" / "video2").unlink()            # the C922 unplugged: its link dangles
    assert find_by_id("*C922*-video-index0", by_id) is None
    assert resolve_camera_device("/dev/video0", "*C922*-video-index0", by_id) == "/dev/video0"
    # re-plugged as another node: udev points the same stable name at it
    os.unlink(str(by_id / C922))
    os.symlink("../../video1", str(by_id / C922))
    assert resolve_camera_device("/dev/video0", "*C922*-video-index0", by_id) == str(by_id / C922)
    assert os.path.realpath(str(by_id / C922)) == str((tmp_path / "dev" / "video1").resolve())
    assert resolve_camera_device("/dev/video0", None, by_id) == "/dev/video0"


def test_jetson_model_from_a_device_tree(tmp_path):
    assert jetson_model(tmp_path) is None
    (tmp_path / "proc" / "device-tree").mkdir(parents=True)
    (tmp_path / "proc" / "device-tree" / "model").write_bytes(b"NVIDIA Jetson Xavier NX Developer Kit\0")
    assert jetson_model(tmp_path) == "NVIDIA Jetson Xavier NX Developer Kit"
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "nv_tegra_release").write_text("# R35 (release), REVISION: 2.1, GCID: 32413640\n")
    assert jetson_model(tmp_path) == "NVIDIA Jetson Xavier NX Developer Kit"
    (tmp_path / "proc" / "device-tree" / "model").unlink()
    assert jetson_model(tmp_path) == "Jetson (R35 (release))"
    pc = tmp_path / "pc"
    (pc / "proc" / "device-tree").mkdir(parents=True)
    (pc / "proc" / "device-tree" / "model").write_bytes(b"Raspberry Pi 4 Model B\0")
    assert jetson_model(pc) is None


def test_this_machine_is_detected_as_it_is():
    model = Path("/proc/device-tree/model")
    jetson = Path("/etc/nv_tegra_release").is_file() or (model.is_file() and b"jetson" in model.read_bytes().lower())
    assert (jetson_model() is not None) == jetson


def test_make_source_passes_the_camera_settings():
    src = make_source(f"/dev/v4l/by-id/{C922}", camera_backend="auto", jpeg_decoder="nvjpegdec",
                      by_id="*C922*-video-index0")
    assert isinstance(src, OpenCVSource) and src.kind == "camera" and src.live
    assert (src.camera_backend, src.jpeg_decoder, src.by_id) == ("auto", "nvjpegdec", "*C922*-video-index0")
    with pytest.raises(ValueError):
        OpenCVSource("/dev/video0", "camera", camera_backend="nvargus")


@pytest.mark.skipif(gstreamer_available(), reason="this OpenCV has GStreamer")
def test_forced_gstreamer_without_gstreamer_fails_clearly(tmp_path):
    fake = tmp_path / "video9"
    fake.write_bytes(b"")
    src = make_source("/dev/video0", camera_backend="gstreamer")
    src.target = str(fake)  # an existing path, so the failure is about GStreamer, not a missing device
    with pytest.raises(SourceError, match="no GStreamer"):
        src.open()


def test_missing_camera_is_a_source_error_on_the_auto_path():
    src = make_source("/dev/video97", camera_backend="auto", by_id="*NoSuchCamera*")
    with pytest.raises(SourceError, match="no camera at /dev/video97"):
        src.open()


# ---------------------------------------------------------------------------------------------- on the device

def _c922():
    found = find_by_id("*C922*-video-index0", BY_ID_DIR)
    if jetson_model() is None or found is None:
        pytest.skip("needs a Jetson with a C922 attached")
    return found


@pytest.mark.jetson
def test_c922_hardware_decoded_720p_on_the_jetson():
    dev = _c922()
    if not gstreamer_available():
        pytest.fail("the Jetson's OpenCV has no GStreamer: the venv must use --system-site-packages")
    src = make_source(dev, 1280, 720, 30, camera_backend="auto", by_id="*C922*-video-index0")
    src.open()
    try:
        assert src.path == "gstreamer"
        n, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < 3.0:
            img = src.read()
            assert img is not None and img.shape == (720, 1280, 3)
            n += 1
        assert n / (time.monotonic() - t0) >= 25
    finally:
        src.close()
