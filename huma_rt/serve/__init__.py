"""Live serving: ``huma-rt serve``, a web page that talks with the avatar over WebRTC.

One visitor = one peer connection = one worker process (``worker``), which owns the
conversation (``conversation``: VAD -> ASR -> responder -> TTS -> live avatar session, with
barge-in) and the media tracks (``peer``: video and audio paced from one clock). The server
process (``server``, ``pool``) only serves the page and hands each SDP offer to a loaded worker.
aiohttp and aiortc are imported where used (the ``serve`` extra).
"""
