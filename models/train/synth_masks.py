"""Synthetic face masks drawn from 5 face landmarks: an augmentation for the detector's training photos.

Method (our own code, after two published ones):

* **MaskTheFace** (Anwar & Raychowdhury, "Masked Face Recognition for Secure Authentication",
  arXiv:2008.11104, 2020): fit a mask shape (surgical, cloth, N95, KN95) to face landmarks, in many
  colours and textures, with the face's tilt taken from the landmarks;
* **MaskedFace-Net** (Cabani et al., "MaskedFace-Net - A dataset of correctly/incorrectly masked face
  images in the context of COVID-19", Smart Health 19, 2021): the same mask placed correctly (nose and
  mouth covered) or incorrectly (nose uncovered; nose and mouth uncovered, on the chin), labelled so.

MaskTheFace uses dlib's 68 landmarks and MaskedFace-Net 12; we have the 5 of YuNet (Wu et al. MIR 2023;
:mod:`models.nets.yunet`, the pretrained ``yunet_n.pth``): right eye, left eye, nose tip, right and left
mouth corner (image left to right: the subject's right eye first). They define a **face frame**
(:class:`FaceFrame`): origin at the mid-point of the eyes, ``u`` along the eye line, ``v``
perpendicular to it towards the mouth, unit ``d`` (eye distance) across and ``D`` (eyes to the mouth
centre along ``v``) down. Every shape is a polygon in that frame (x in ``d``, y in ``D``; nose tip near
``y = 0.55``, mouth corners near ``y = 1``, chin near ``y = 1.75``), mapped to the photo, so it follows
the face's size, roll and (through the nose tip's offset) yaw.

Shapes (:func:`mask_polygon`): ``surgical`` (rectangle with pleats and ear loops), ``cloth`` (rounded),
``ffp2`` (N95/FFP2 beak with a centre seam). Placement: ``worn`` (top edge on the nose bridge, above the
nose tip: label ``mask``), ``under_nose`` and ``chin`` (``mask_incorrect``). Looks: plain colours from a
palette including black, navy and printed patterns (stripes, dots, checks, blobs); shading from the
photo's own luminance and a fold gradient; a soft, anti-aliased edge. Hard negatives the issue's users
report, labelled ``no_mask``: a **beard** (dark hair texture on the jaw and upper lip, the mouth left
open) and a **hand over the mouth** (skin sampled from the face, with fingers).

Only the **training** photos' ``no_mask`` faces are drawn on (never ilc2021-dev, never validation):
:func:`face_landmarks` runs YuNet on each training photo once and keeps the landmarks of the faces that
match a ``no_mask`` label (IoU >= 0.3 and all five points inside the label box grown by 25 %).
"""
from __future__ import annotations

import argparse
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import cv2
import numpy as np

log = logging.getLogger("models.train.synth_masks")

MASK, NO_MASK, MASK_INCORRECT = 0, 1, 2
#: what is drawn -> the label the face gets
KINDS: Dict[str, int] = {"worn": MASK, "under_nose": MASK_INCORRECT, "chin": MASK_INCORRECT,
                         "beard": NO_MASK, "hand": NO_MASK}
#: default draw probabilities of the kinds (sum 1)
KIND_P: Dict[str, float] = {"worn": 0.40, "under_nose": 0.22, "chin": 0.13, "beard": 0.125, "hand": 0.125}
SHAPES = ("surgical", "cloth", "ffp2")
#: BGR mask colours: white, light blue (surgical), black, navy, grey, pink, red, green, beige, purple
PALETTE = [(235, 235, 235), (220, 200, 150), (25, 25, 25), (90, 40, 20), (130, 130, 130), (190, 170, 240),
           (40, 40, 190), (60, 130, 60), (170, 200, 220), (130, 60, 110), (200, 160, 90), (15, 15, 15)]


@dataclass
class FaceFrame:
    """A face's frame from its 5 landmarks (see module doc). ``origin`` (2,), ``u`` and ``v`` (2,) unit
    vectors, ``d`` and ``D`` px, and the landmarks' own frame coordinates ``pts`` (5, 2)."""

    origin: np.ndarray
    u: np.ndarray
    v: np.ndarray
    d: float
    D: float
    pts: np.ndarray

    @classmethod
    def from_landmarks(cls, kps: np.ndarray) -> "FaceFrame":
        """(5, 2) float px landmarks (right eye, left eye, nose tip, right mouth corner, left mouth corner)."""
        k = np.asarray(kps, np.float64).reshape(5, 2)
        origin = (k[0] + k[1]) / 2
        e = k[1] - k[0]
        d = max(float(np.hypot(*e)), 1e-3)
        u = e / d
        v = np.array([-u[1], u[0]])
        mouth = (k[3] + k[4]) / 2
        if (mouth - origin) @ v < 0:  # keep v pointing to the mouth
            v = -v
        D = max(float((mouth - origin) @ v), 0.3 * d)
        rel = k - origin
        pts = np.stack([rel @ u / d, rel @ v / D], 1)
        return cls(origin, u, v, d, D, pts)

    def to_px(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) frame coordinates -> (N, 2) float px."""
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        return self.origin + xy[:, :1] * self.d * self.u + xy[:, 1:] * self.D * self.v


def _curve(p0, p1, p2, n: int = 8) -> np.ndarray:
    """Quadratic Bezier from p0 to p2 with control p1: (n, 2)."""
    t = np.linspace(0, 1, n)[:, None]
    p0, p1, p2 = (np.asarray(p, np.float64) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2


def mask_polygon(frame: FaceFrame, shape: str = "surgical", placement: str = "worn",
                 rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """The mask outline in photo px, (N, 2) float64.

    Args:
        frame: the face's :class:`FaceFrame`.
        shape: one of :data:`SHAPES`.
        placement: ``worn`` (top on the nose bridge, y = 0.25-0.35: covers the nose tip and the mouth),
            ``under_nose`` (top 0.15 D below the nose tip, covers the mouth, not the nose), ``chin``
            (top 0.2 D below the mouth corners: nose and mouth uncovered).
        rng: small random variation of the outline (None: the mean shape).

    Raises:
        ValueError: an unknown shape or placement.
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown mask shape {shape!r}; known: {list(SHAPES)}")
    j = (lambda a, b: float(rng.uniform(a, b))) if rng is not None else (lambda a, b: (a + b) / 2)
    p = frame.pts
    nose_y, mouth_y = p[2, 1], max(p[3, 1], p[4, 1])
    cx = p[2, 0] * 0.6  # the centre line follows the nose tip (yaw)
    # sides: beyond the eyes and the mouth corners
    left = min(p[0, 0], p[3, 0]) - j(0.35, 0.5)
    right = max(p[1, 0], p[4, 0]) + j(0.35, 0.5)
    if placement == "worn":
        top = min(j(0.22, 0.35), nose_y - 0.2)
    elif placement == "under_nose":
        top = nose_y + j(0.15, 0.25)
    elif placement == "chin":
        top = mouth_y + j(0.18, 0.3)
    else:
        raise ValueError(f"unknown placement {placement!r}; known: ['worn', 'under_nose', 'chin']")
    height = j(1.3, 1.5) if placement == "worn" else j(1.0, 1.25)
    bottom = top + height if placement != "chin" else top + j(0.55, 0.7)
    if shape == "surgical":
        pts = np.concatenate([
            _curve((left + 0.05, top + 0.15), (cx, top - 0.08), (right - 0.05, top + 0.15)),
            [[right, top + 0.3], [right, bottom - 0.35]],
            _curve((right - 0.05, bottom - 0.2), (cx, bottom + 0.12), (left + 0.05, bottom - 0.2)),
            [[left, bottom - 0.35], [left, top + 0.3]]])
    elif shape == "cloth":
        pts = np.concatenate([
            _curve((left, top + 0.25), (cx, top - 0.15), (right, top + 0.25)),
            _curve((right, top + 0.25), (right + 0.05, bottom - 0.1), (cx, bottom), 10),
            _curve((cx, bottom), (left - 0.05, bottom - 0.1), (left, top + 0.25), 10)])
    else:  # ffp2: a beak, pointed at the chin
        pts = np.concatenate([
            _curve((left + 0.05, top + 0.3), (cx, top - 0.12), (right - 0.05, top + 0.3)),
            [[right, top + 0.55]],
            _curve((right - 0.05, bottom - 0.45), (cx + 0.35, bottom - 0.05), (cx, bottom + 0.05), 6),
            _curve((cx, bottom + 0.05), (cx - 0.35, bottom - 0.05), (left + 0.05, bottom - 0.45), 6),
            [[left, top + 0.55]]])
    return frame.to_px(pts)


def _texture(h: int, w: int, colour, rng: np.random.Generator) -> np.ndarray:
    """(h, w, 3) float32 BGR 0-255: a plain colour or a printed pattern on it."""
    base = np.empty((h, w, 3), np.float32)
    base[:] = colour
    kind = rng.choice(["plain", "plain", "plain", "stripes", "dots", "checks", "blobs"])
    if kind == "plain":
        return base
    other = np.asarray(PALETTE[int(rng.integers(len(PALETTE)))], np.float32)
    if np.abs(other - base[0, 0]).sum() < 90:
        other = 255.0 - other
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    period = max(2.0, float(rng.uniform(0.08, 0.2)) * max(h, w))
    ang = float(rng.uniform(0, math.pi))
    t = xx * math.cos(ang) + yy * math.sin(ang)
    if kind == "stripes":
        m = (np.mod(t, period) < period * 0.45)
    elif kind == "checks":
        m = (np.mod(xx, period) < period / 2) ^ (np.mod(yy, period) < period / 2)
    elif kind == "dots":
        m = (np.hypot(np.mod(xx, period) - period / 2, np.mod(yy, period) - period / 2) < period * 0.25)
    else:
        noise = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), max(1.0, period / 4))
        m = noise > np.median(noise)
    base[m] = other
    return base


def _render(img: np.ndarray, poly: np.ndarray, tex: np.ndarray, origin: Tuple[int, int], shade: np.ndarray,
            keep_light: float, feather: float) -> None:
    """Composite ``tex`` inside ``poly`` onto ``img`` (in place), anti-aliased; shading from the photo."""
    x0, y0 = origin
    h, w = tex.shape[:2]
    ss = 4  # supersampled outline
    alpha = np.zeros((h * ss, w * ss), np.uint8)
    cv2.fillPoly(alpha, [np.round((poly - (x0, y0)) * ss * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    alpha = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    if feather > 0:
        alpha = cv2.GaussianBlur(alpha, (0, 0), feather)
    region = img[y0:y0 + h, x0:x0 + w].astype(np.float32)
    lum = cv2.cvtColor(region.astype(np.uint8), cv2.COLOR_BGR2GRAY).astype(np.float32)
    # only the large-scale light of the photo, not the face's features (they would show through the mask)
    lum = cv2.GaussianBlur(lum, (0, 0), max(1.0, 0.12 * max(h, w)))
    light = lum / max(float(lum[alpha > 0.5].mean()) if (alpha > 0.5).any() else float(lum.mean()), 1.0)
    light = np.clip(1.0 + keep_light * (light - 1.0), 0.4, 1.6)
    out = np.clip(tex * (light * shade)[..., None], 0, 255)
    img[y0:y0 + h, x0:x0 + w] = np.clip(region * (1 - alpha[..., None]) + out * alpha[..., None], 0, 255).astype(np.uint8)


def _box(poly: np.ndarray, shape: Tuple[int, int], pad: int = 2) -> Optional[Tuple[int, int, int, int]]:
    H, W = shape
    x0, y0 = np.floor(poly.min(0)).astype(int) - pad
    x1, y1 = np.ceil(poly.max(0)).astype(int) + pad
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return x0, y0, x1, y1


def draw_mask(img: np.ndarray, kps: np.ndarray, placement: str, shape: str, rng: np.random.Generator) -> np.ndarray:
    """Draw one mask (in place) on the face with landmarks ``kps`` (5, 2) px; returns its polygon (N, 2) px."""
    fr = FaceFrame.from_landmarks(kps)
    poly = mask_polygon(fr, shape, placement, rng)
    b = _box(poly, img.shape[:2])
    if b is None:
        return poly
    x0, y0, x1, y1 = b
    h, w = y1 - y0, x1 - x0
    colour = np.asarray(PALETTE[int(rng.integers(len(PALETTE)))], np.float32) * float(rng.uniform(0.85, 1.1))
    tex = _texture(h, w, np.clip(colour, 0, 255), rng)
    # shading: brighter along the centre line (the nose ridge), darker towards the cheeks; pleats / seam
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    rel = np.stack([xx - fr.origin[0], yy - fr.origin[1]], -1)
    fx, fy = rel @ fr.u / fr.d, rel @ fr.v / fr.D
    shade = 1.05 - 0.25 * np.clip(np.abs(fx - fr.pts[2, 0] * 0.6) / 1.2, 0, 1) ** 2
    if shape == "surgical":
        top = poly[:, 1].min()
        for k in range(3):
            ph = ((rel @ fr.v) / fr.D)
            line = fr.pts[2, 1] * 0 + (0.55 + 0.3 * k if placement == "worn" else 0.25 * k + (ph.min() + 0.3))
            shade = shade - 0.12 * np.exp(-((fy - line) * fr.D / max(0.6, fr.D * 0.04)) ** 2)
        del top
    elif shape == "ffp2":
        shade = shade - 0.15 * np.exp(-((fx - fr.pts[2, 0] * 0.6) * fr.d / max(0.5, fr.d * 0.04)) ** 2)
    _render(img, poly, tex, (x0, y0), shade.astype(np.float32), float(rng.uniform(0.15, 0.45)),
            max(0.3, 0.01 * fr.d))
    if shape != "ffp2" and fr.d >= 12:  # ear loops on faces large enough to show them
        c = tuple(int(v) for v in np.clip(colour * 0.9, 0, 255))
        for side in (-1, 1):
            a = fr.to_px([[side * 1.05, 0.1], [side * 0.95, 0.6]])
            pts = poly[np.argsort(side * -(poly - fr.origin) @ fr.u)[:1]]
            cv2.line(img, tuple(np.round(a[0]).astype(int)), tuple(np.round(pts[0]).astype(int)), c, 1, cv2.LINE_AA)
    return poly


def draw_beard(img: np.ndarray, kps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A beard and moustache (dark hair texture on the jaw and upper lip, the mouth left uncovered), in place.
    Returns the beard polygon (N, 2) px."""
    fr = FaceFrame.from_landmarks(kps)
    p = fr.pts
    left, right = min(p[0, 0], p[3, 0]) - 0.45, max(p[1, 0], p[4, 0]) + 0.45
    ny, my = p[2, 1], max(p[3, 1], p[4, 1])
    outline = np.concatenate([[[left, ny - 0.05]], _curve((left, my), (p[2, 0] * 0.6, 2.2), (right, my), 12),
                              [[right, ny - 0.05]],
                              _curve((right - 0.3, ny + 0.12), (p[2, 0] * 0.6, ny + 0.05), (left + 0.3, ny + 0.12), 6)])
    poly = fr.to_px(outline)
    b = _box(poly, img.shape[:2])
    if b is None:
        return poly
    x0, y0, x1, y1 = b
    h, w = y1 - y0, x1 - x0
    orig = img[y0:y1, x0:x1].copy()
    tone = float(rng.uniform(15, 110))
    hair = np.array([tone * 0.8, tone * 0.9, tone], np.float32)
    tex = np.empty((h, w, 3), np.float32)
    tex[:] = hair
    noise = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 0.6) * 22
    tex += noise[..., None]
    tex *= (0.85 + 0.3 * cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), max(1.0, 0.1 * w)))[..., None]
    _render(img, poly, np.clip(tex, 0, 255), (x0, y0), np.ones((h, w), np.float32), 0.5, max(0.6, 0.04 * fr.d))
    # the mouth stays visible: the photo's own lips between the corners are put back
    lips = fr.to_px(np.concatenate([_curve((p[3, 0] - 0.05, p[3, 1]), ((p[3, 0] + p[4, 0]) / 2, my - 0.25),
                                           (p[4, 0] + 0.05, p[4, 1]), 6),
                                    _curve((p[4, 0] + 0.05, p[4, 1]), ((p[3, 0] + p[4, 0]) / 2, my + 0.3),
                                           (p[3, 0] - 0.05, p[3, 1]), 6)]))
    m = np.zeros((h, w), np.uint8)
    cv2.fillPoly(m, [np.round((lips - (x0, y0)) * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    region = img[y0:y1, x0:x1]
    region[m > 127] = orig[m > 127]
    return poly


def draw_hand(img: np.ndarray, kps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A hand over the mouth (skin sampled from the face, four fingers across it), in place; returns its
    outline (N, 2) px."""
    fr = FaceFrame.from_landmarks(kps)
    p = fr.pts
    # skin: the median colour between the eyes and the nose
    probe = fr.to_px([[0, 0.3]])[0]
    r = max(1, int(0.2 * fr.d))
    x, y = int(round(probe[0])), int(round(probe[1]))
    H, W = img.shape[:2]
    patch = img[max(0, y - r):min(H, y + r + 1), max(0, x - r):min(W, x + r + 1)].reshape(-1, 3)
    skin = np.median(patch, 0).astype(np.float32) if len(patch) else np.array([120, 140, 180], np.float32)
    skin = np.clip(skin * float(rng.uniform(0.85, 1.15)), 0, 255)
    side = float(rng.choice([-1.0, 1.0]))
    my = (p[3, 1] + p[4, 1]) / 2
    # palm from one side, fingers across the mouth to the other cheek
    palm = [[side * 1.3, my + 0.6], [side * 1.3, my - 0.45], [side * 0.2, my - 0.5]]
    tips = np.linspace(my - 0.45, my + 0.45, 4)
    fingers = [[-side * (0.75 + 0.1 * (k % 2)), t] for k, t in enumerate(tips)]
    outline = np.array(palm + fingers + [[side * 0.2, my + 0.75]], np.float64)
    poly = fr.to_px(outline)
    b = _box(poly, img.shape[:2])
    if b is None:
        return poly
    x0, y0, x1, y1 = b
    h, w = y1 - y0, x1 - x0
    tex = np.empty((h, w, 3), np.float32)
    tex[:] = skin
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    fy = (np.stack([xx - fr.origin[0], yy - fr.origin[1]], -1) @ fr.v) / fr.D
    shade = np.ones((h, w), np.float64)
    for t in (tips[:-1] + tips[1:]) / 2:  # the gaps between the fingers
        shade -= 0.3 * np.exp(-((fy - t) * fr.D / max(0.5, 0.03 * fr.D)) ** 2)
    _render(img, poly, tex, (x0, y0), shade.astype(np.float32), 0.4, max(0.5, 0.03 * fr.d))
    return poly


def synthesize(img: np.ndarray, kps: np.ndarray, kind: str, rng: np.random.Generator) -> Tuple[int, np.ndarray]:
    """Draw ``kind`` (a key of :data:`KINDS`) on one face (in place): ``(new label, polygon (N, 2) px)``."""
    if kind in ("worn", "under_nose", "chin"):
        shape = str(rng.choice(SHAPES, p=[0.45, 0.3, 0.25]))
        return KINDS[kind], draw_mask(img, kps, kind, shape, rng)
    if kind == "beard":
        return NO_MASK, draw_beard(img, kps, rng)
    if kind == "hand":
        return NO_MASK, draw_hand(img, kps, rng)
    raise ValueError(f"unknown kind {kind!r}; known: {sorted(KINDS)}")


def augment_photo(img: np.ndarray, labels: np.ndarray, landmarks: Dict[int, np.ndarray], rng: np.random.Generator,
                  p_face: float = 0.7, kind_p: Dict[str, float] = KIND_P) -> Tuple[np.ndarray, np.ndarray]:
    """Synthesis on one training photo: each ``no_mask`` face with landmarks is drawn on with probability
    ``p_face`` (kind drawn from ``kind_p``).

    Args:
        img: (H, W, 3) uint8 BGR photo (not modified).
        labels: (N,) int64 its labels.
        landmarks: label index -> (5, 2) float32 landmarks in photo px (:func:`face_landmarks`).

    Returns:
        ``(photo copy (H, W, 3) uint8, labels copy (N,) int64)``: the drawn faces relabelled.
    """
    out, lab = img, np.asarray(labels, np.int64).copy()
    kinds, probs = list(kind_p), np.asarray(list(kind_p.values()), np.float64)
    for i, kps in landmarks.items():
        if i >= len(lab) or lab[i] != NO_MASK or rng.random() >= p_face:
            continue
        if out is img:
            out = img.copy()
        lab[i], _ = synthesize(out, kps, str(rng.choice(kinds, p=probs / probs.sum())), rng)
    return out, lab


# ------------------------------------------------------------------------------------------ landmarks
def yunet_faces(net, img: np.ndarray, long_side: int = 1280, min_conf: float = 0.5, nms_iou: float = 0.4
                ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Faces and 5 landmarks from the pretrained YuNet (:func:`models.nets.yunet.load_yunet`).

    The photo is scaled to ``long_side`` (padded to multiples of 32); decoding as libfacedetection:
    per cell ``(i, j)`` of stride ``s``, box centre ``(j + dx, i + dy) s``, size ``exp(dw, dh) s``,
    landmark ``k`` at ``(j + kx_k, i + ky_k) s``; score ``sigmoid(cls) * sigmoid(obj)``; NMS.

    Returns:
        ``(boxes (K, 4) float32 xyxy photo px, scores (K,), landmarks (K, 5, 2) float32 photo px)``.
    """
    import torch

    from edge.decoders import nms

    h, w = img.shape[:2]
    k = long_side / max(h, w)
    iw, ih = int(math.ceil(w * k / 32) * 32), int(math.ceil(h * k / 32) * 32)
    x = np.zeros((ih, iw, 3), np.float32)
    x[:int(round(h * k)), :int(round(w * k))] = cv2.resize(img, (int(round(w * k)), int(round(h * k)))).astype(np.float32)
    with torch.no_grad():
        out = net(torch.from_numpy(x.transpose(2, 0, 1)[None].copy()))
    boxes, scores, kps = [], [], []
    for lv, s in enumerate((8, 16, 32)):
        cls = torch.sigmoid(out["cls"][lv][0, 0]).numpy()
        obj = torch.sigmoid(out["obj"][lv][0, 0]).numpy()
        sc = cls * obj
        ii, jj = np.nonzero(sc >= min_conf)
        if not len(ii):
            continue
        bx = out["box"][lv][0].numpy()[:, ii, jj]
        kp = out["kps"][lv][0].numpy()[:, ii, jj]
        cx, cy = (jj + bx[0]) * s, (ii + bx[1]) * s
        bw, bh = np.exp(np.minimum(bx[2], 8)) * s, np.exp(np.minimum(bx[3], 8)) * s
        boxes.append(np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1))
        kps.append(np.stack([(jj + kp[0::2]) * s, (ii + kp[1::2]) * s], -1).transpose(1, 0, 2))
        scores.append(sc[ii, jj])
    if not boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
    b, s_, kp = np.concatenate(boxes) / k, np.concatenate(scores), np.concatenate(kps) / k
    keep = nms(b.astype(np.float32), s_.astype(np.float32), nms_iou)
    return b[keep].astype(np.float32), s_[keep].astype(np.float32), kp[keep].astype(np.float32)


def match_landmarks(gt_boxes: np.ndarray, boxes: np.ndarray, kps: np.ndarray, min_iou: float = 0.3,
                    grow: float = 0.25) -> Dict[int, np.ndarray]:
    """Label index -> (5, 2) landmarks of the YuNet face matched to it (greedy by IoU >= ``min_iou``, all five
    points inside the label box grown by ``grow`` of its size on every side)."""
    from edge.decoders import box_iou, greedy_iou_match

    gt = np.asarray(gt_boxes, np.float32).reshape(-1, 4)
    if not len(gt) or not len(boxes):
        return {}
    out = {}
    for g, f in greedy_iou_match(box_iou(gt, boxes), min_iou):
        x1, y1, x2, y2 = gt[g]
        gw, gh = x2 - x1, y2 - y1
        p = kps[f]
        inside = ((p[:, 0] >= x1 - grow * gw) & (p[:, 0] <= x2 + grow * gw) & (p[:, 1] >= y1 - grow * gh)
                  & (p[:, 1] <= y2 + grow * gh)).all()
        if inside:
            out[int(g)] = p.astype(np.float32)
    return out


def face_landmarks(samples, weights: Path, cache: Optional[Path] = None, only_class: int = NO_MASK
                   ) -> Dict[str, Dict[int, np.ndarray]]:
    """Per photo stem: label index -> (5, 2) landmarks, for the labels of class ``only_class`` YuNet matches
    (:func:`match_landmarks`). Read from / written to ``cache`` (.npz) when given."""
    if cache is not None and Path(cache).exists():
        z = np.load(cache)
        out: Dict[str, Dict[int, np.ndarray]] = {}
        for key in z.files:
            stem, i = key.rsplit("/", 1)
            out.setdefault(stem, {})[int(i)] = z[key]
        return out
    from models.nets.yunet import load_yunet

    net = load_yunet(weights)
    out = {}
    for s in samples:
        sel = np.nonzero(np.asarray(s.labels) == only_class)[0]
        if not len(sel):
            continue
        img = cv2.imread(str(s.image))
        b, _, kp = yunet_faces(net, img, long_side=max(640, min(1600, 2 * max(img.shape[:2]))))
        m = match_landmarks(s.boxes[sel], b, kp)
        if m:
            out[s.image.stem] = {int(sel[g]): p for g, p in m.items()}
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache, **{f"{st}/{i}": p for st, d in out.items() for i, p in d.items()})
    return out


def point_in(poly: np.ndarray, pt: Sequence[float]) -> bool:
    """Is ``pt`` (x, y) inside the polygon (N, 2)?"""
    return cv2.pointPolygonTest(np.asarray(poly, np.float32).reshape(-1, 1, 2), (float(pt[0]), float(pt[1])), False) >= 0


def example_sheet(samples, landmarks: Dict[str, Dict[int, np.ndarray]], out: Path, n: int = 24, seed: int = 0,
                  size: int = 112) -> Path:
    """A picture of synthesised faces (original | each kind) for the model card: ``n`` faces, one row each."""
    rng = np.random.default_rng(seed)
    rows = []
    by_stem = {s.image.stem: s for s in samples}
    faces = [(st, i) for st in sorted(landmarks) for i in sorted(landmarks[st]) if st in by_stem]
    faces = [faces[k] for k in rng.permutation(len(faces))]
    kinds = ["worn", "worn", "worn", "under_nose", "chin", "beard", "hand"]
    for st, i in faces:
        s = by_stem[st]
        x1, y1, x2, y2 = s.boxes[i]
        if x2 - x1 < 28:
            continue
        img = cv2.imread(str(s.image))
        tiles = []
        for kind in [None] + kinds:
            im = img.copy()
            lab = NO_MASK
            if kind:
                lab, _ = synthesize(im, landmarks[st][i], kind, rng)
            cx, cy, L = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) * 1.3
            from edge.classifier import crop_region
            t = crop_region(im, (cx - L / 2, cy - L / 2, cx + L / 2, cy + L / 2), size)
            name = ("mask", "no_mask", "mask_incorrect")[lab] if kind else "original"
            cv2.putText(t, name, (3, size - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (255, 255, 255), 1, cv2.LINE_AA)
            tiles.append(t)
        rows.append(np.concatenate(tiles, 1))
        if len(rows) >= n:
            break
    sheet = np.concatenate(rows, 0)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), sheet)
    return out


def main(argv=None) -> int:
    from models.data import read_dataset, split

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/face-mask-andrewmvd"))
    ap.add_argument("--yunet", type=Path, default=Path("../shared/weights/yunet/yunet_n.pth"))
    ap.add_argument("--cache", type=Path, default=Path("runs/synth/landmarks.npz"))
    ap.add_argument("--sheet", type=Path, help="write the example picture here")
    a = ap.parse_args(argv)
    train, _ = split(read_dataset(a.data))  # training photos only
    lm = face_landmarks(train, a.yunet, a.cache)
    n_nm = sum(int((s.labels == NO_MASK).sum()) for s in train)
    log.info("landmarks for %d of %d no_mask training faces in %d photos", sum(len(v) for v in lm.values()), n_nm,
             len(lm))
    if a.sheet:
        example_sheet(train, lm, a.sheet)
        log.info("wrote %s", a.sheet)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
