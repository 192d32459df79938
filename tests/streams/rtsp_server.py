"""Serves a video file over RTSP on loopback, as an IP camera would, with
GStreamer's RTSP server (Debian's gir1.2-gst-rtsp-server-1.0; run it with
Debian's /usr/bin/python3, which has the GObject bindings, python3-gi).

    /usr/bin/python3 rtsp_server.py FILE PORT MOUNT

serves rtsp://127.0.0.1:PORT/MOUNT: the file's first H.264 video track as it
is (no re-encoding), paced at its own frame rate, from the start for each
client (RTP over UDP or interleaved in the RTSP connection, as the client
asks). Prints "ready" once it listens; runs until killed.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main():
    path, port, mount = sys.argv[1], sys.argv[2], sys.argv[3]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    location = GLib.strescape(path)
    factory.set_launch(
        f'( filesrc location="{location}" ! qtdemux name=d d.video_0 ! queue '
        "! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 )"
    )
    server.get_mount_points().add_factory(f"/{mount}", factory)
    if server.attach(None) == 0:
        sys.exit(f"rtsp_server: cannot listen on 127.0.0.1:{port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
