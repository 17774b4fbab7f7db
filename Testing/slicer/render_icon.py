"""Draw the ARCOSegment icon (128×128): an axial slice with two segmented organs, and a few
annotation strokes. Writes the module icon and the extension icon.

    python Testing/slicer/render_icon.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QPointF, QRectF, Qt  # noqa: E402
from PySide6.QtGui import QColor, QGuiApplication, QImage, QPainter, QPainterPath, QPen  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
ICONS = (REPO / "ARCOSegment" / "Resources" / "Icons" / "ARCOSegment.png",
         REPO / "Resources" / "Icons" / "ARCOSegment.png")
SIZE = 128


def draw_icon() -> QImage:
    """The icon as a 128×128 ARGB image."""
    image = QImage(SIZE, SIZE, QImage.Format_ARGB32)
    image.fill(Qt.transparent)
    p = QPainter(image)
    p.setRenderHint(QPainter.Antialiasing)
    p.setPen(Qt.NoPen)
    p.setBrush(QColor("#1b2330"))
    p.drawRoundedRect(QRectF(4, 4, 120, 120), 22, 22)
    p.setBrush(QColor("#8a94a3"))  # body outline
    p.drawEllipse(QRectF(16, 26, 96, 76))
    p.setBrush(QColor("#5d6673"))
    p.drawEllipse(QRectF(24, 33, 80, 62))
    p.setBrush(QColor(230, 57, 70, 230))  # liver-like organ
    liver = QPainterPath(QPointF(30, 52))
    liver.cubicTo(QPointF(36, 36), QPointF(66, 36), QPointF(68, 52))
    liver.cubicTo(QPointF(70, 68), QPointF(48, 86), QPointF(36, 78))
    liver.cubicTo(QPointF(28, 72), QPointF(27, 60), QPointF(30, 52))
    p.drawPath(liver)
    p.setBrush(QColor(46, 196, 182, 230))  # second organ
    p.drawEllipse(QRectF(74, 50, 22, 30))
    p.setPen(QPen(QColor("#ffd166"), 5, Qt.SolidLine, Qt.RoundCap))  # annotation strokes
    p.drawLine(QPointF(40, 104), QPointF(64, 104))
    p.drawLine(QPointF(72, 104), QPointF(88, 104))
    p.setPen(QPen(QColor("#ffffff"), 3, Qt.SolidLine, Qt.RoundCap))  # spine
    p.drawPoint(QPointF(64, 90))
    p.end()
    return image


if __name__ == "__main__":
    app = QGuiApplication(sys.argv[:1])
    icon = draw_icon()
    for path in ICONS:
        path.parent.mkdir(parents=True, exist_ok=True)
        icon.save(str(path))
        print(path)
