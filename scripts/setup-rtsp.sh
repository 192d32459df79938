#!/usr/bin/env bash
# Installs what the stream tests' RTSP camera needs (tests/streams/rtsp_server.py):
# GStreamer's RTSP server library with its GObject introspection data, the
# plugins that demux MP4 and packetise H.264 for RTP, and the GObject bindings
# of Debian's /usr/bin/python3 (Debian packages). A second run finds them and
# does nothing.
set -euo pipefail
check() {
  /usr/bin/python3 - <<'PY' 2>/dev/null
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer  # noqa: F401
Gst.init(None)
missing = [e for e in ("filesrc", "qtdemux", "h264parse", "rtph264pay") if not Gst.ElementFactory.find(e)]
raise SystemExit(1 if missing else 0)
PY
}
if check; then
  exit 0
fi
bash "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh" setup-rtsp \
  gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
  gstreamer1.0-plugins-bad python3-gi
check
echo "setup-rtsp: GStreamer RTSP server ready for /usr/bin/python3" >&2
