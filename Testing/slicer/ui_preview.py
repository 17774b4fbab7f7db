"""Load ARCOSegment.ui with PySide6 outside Slicer, and render a preview of the panel.

Loading as is: QUiLoader replaces unknown Slicer/CTK classes by their declared base class.
For the preview, Slicer widgets are drawn by look-alike Qt widgets (collapsible sections as group
boxes, node selectors as combo boxes showing a sample node) and filled with sample content.

    QT_QPA_PLATFORM=offscreen python Testing/slicer/ui_preview.py   # writes the README screenshot
"""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QBuffer, QByteArray, QIODevice  # noqa: E402
from PySide6.QtUiTools import QUiLoader  # noqa: E402
from PySide6.QtWidgets import QApplication, QWidget  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "ARCOSegment") not in sys.path:  # run as a script: the module's Lib package
    sys.path.insert(0, str(REPO / "ARCOSegment"))

import numpy as np  # noqa: E402

from ARCOSegmentLib.annotations import describe_annotations  # noqa: E402
from ARCOSegmentLib.device import DeviceInfo, describe  # noqa: E402
from ARCOSegmentLib.engine import AdaptOutput  # noqa: E402
from ARCOSegmentLib.models import ModelEntry, format_entry  # noqa: E402
from ARCOSegmentLib.panel import suggestion_text  # noqa: E402
UI_FILE = REPO / "ARCOSegment" / "Resources" / "UI" / "ARCOSegment.ui"
SCREENSHOT = REPO / "Resources" / "Screenshots" / "panel.png"

# Look-alikes for the preview and the sample node each selector shows.
LOOK_ALIKES = {"ctkCollapsibleButton": "QGroupBox", "qMRMLNodeComboBox": "QComboBox",
               "qMRMLCheckableNodeComboBox": "QComboBox", "ctkPathLineEdit": "QLineEdit",
               "qMRMLWidget": "QWidget"}
SAMPLE_NODES = {"inputSelector": "CT abdomen", "roiSelector": "Whole volume",
                "outputSegmentationSelector": "CT abdomen segmentation",
                "annotationSegmentationSelector": "CT abdomen annotations",
                "unlabelledVolumesComboBox": "CT abdomen 2, CT abdomen 3"}
KEPT_PROPERTIES = {"toolTip", "enabled", "title"}


_APP: list[QApplication] = []  # keep the application alive as long as this module


def application() -> QApplication:
    """The QApplication (created once)."""
    if not _APP:
        _APP.append(QApplication.instance() or QApplication(sys.argv[:1]))
    return _APP[0]


def load(xml: bytes) -> tuple[QWidget, str]:
    """(root widget, loader error string) of .ui XML."""
    application()
    data = QByteArray(xml)
    buffer = QBuffer(data)
    buffer.open(QIODevice.ReadOnly)
    loader = QUiLoader()
    widget = loader.load(buffer)
    buffer.close()
    return widget, loader.errorString()


def load_ui_file(path: Path = UI_FILE) -> tuple[QWidget, str]:
    """The .ui file as is."""
    return load(path.read_bytes())


def preview_xml(path: Path = UI_FILE) -> bytes:
    """The .ui with Slicer widgets replaced by look-alikes."""
    root = ET.parse(path).getroot()
    for widget in root.iter("widget"):
        cls = widget.get("class")
        if cls not in LOOK_ALIKES:
            continue
        widget.set("class", LOOK_ALIKES[cls])
        for prop in list(widget.findall("property")):
            if prop.get("name") == "text" and cls == "ctkCollapsibleButton":
                prop.set("name", "title")
            if prop.get("name") not in KEPT_PROPERTIES:
                widget.remove(prop)
        sample = SAMPLE_NODES.get(widget.get("name"))
        if sample:
            item = ET.SubElement(widget, "item")
            ET.SubElement(ET.SubElement(item, "property", {"name": "text"}), "string").text = sample
    root.remove(root.find("customwidgets"))
    root.remove(root.find("connections"))
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def render_preview(out: Path, width: int = 440) -> Path:
    """Render the panel with sample content to a PNG."""
    widget, error = load(preview_xml())
    if error:
        raise RuntimeError(error)
    fill_sample_content(widget)
    height = widget.heightForWidth(width) if widget.hasHeightForWidth() else -1
    widget.resize(width, max(height, widget.sizeHint().height()))
    out.parent.mkdir(parents=True, exist_ok=True)
    if not widget.grab().save(str(out)):
        raise RuntimeError(f"Could not write {out}")
    return out


def fill_sample_content(widget: QWidget) -> None:
    """What the panel shows after an adaptation on a GPU workstation, worded by the module's own
    formatting functions."""
    find = lambda name: widget.findChild(QWidget, name)  # noqa: E731
    versions = [ModelEntry("abdomen", "v3", True, "2026-03-02T14:03", "abdomen@v2", "", "adapted"),
                ModelEntry("abdomen", "v2", False, "2026-03-02T11:40", "abdomen@v1", "", "adapted"),
                ModelEntry("abdomen", "v1", False, "2026-02-20T09:12")]
    for entry in versions:
        find("modelsListWidget").addItem(format_entry(entry))
    find("modelsListWidget").setCurrentRow(0)
    find("modelFolderPathLineEdit").setPlaceholderText("(use the selection above)")
    find("deviceLabel").setText(describe(DeviceInfo("cuda", "NVIDIA RTX A6000", "2.13.0", "12.8",
                                                    False)))
    find("cpuWarningLabel").setVisible(False)
    axial = np.diag([-0.8, -0.8, 2.5, 1.0])
    find("annotationSummaryLabel").setText(describe_annotations(0, [12, 17, 30, 41], axial))
    adapted = AdaptOutput(versions[0], heldout_slice=30, parent_dice=0.712, adapted_dice=0.804,
                          activated=True, axis=0, suggested_slices=[23, 35, 8])
    find("heldoutLabel").setText(adapted.summary())
    for index in adapted.suggested_slices:
        find("suggestedSlicesListWidget").addItem(suggestion_text(adapted.axis, index))
    find("segmentButton").setEnabled(True)
    find("adaptButton").setEnabled(True)
    find("progressBar").setValue(100)
    find("statusLabel").setText(f"Adapted: {versions[0].ref}.")
    for line in ("Adapting abdomen on 3 annotated slice(s) along axis 0 (budget 300 s)",
                 "Device: NVIDIA RTX A6000 (cuda), torch 2.13.0",
                 "Next slices to annotate (axis 0): [23, 35, 8]"):
        find("logTextEdit").appendPlainText(line)


if __name__ == "__main__":
    print(render_preview(SCREENSHOT))
