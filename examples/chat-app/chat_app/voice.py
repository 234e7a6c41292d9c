"""Voice through the provider's OpenAI-compatible audio endpoints: speech to text
(`/audio/transcriptions`, which Groq serves with Whisper) and text to speech (`/audio/speech`).
The app relays the browser's recording and the reply's text; the key stays on the server."""
from __future__ import annotations

import json
import os
import secrets
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Optional

MAX_AUDIO_BYTES = 10 * 1024 * 1024  # about ten minutes of compressed speech
MAX_SPEECH_CHARS = 4000
AUDIO_TYPES = {"audio/webm": "webm", "audio/ogg": "ogg", "audio/wav": "wav", "audio/x-wav": "wav", "audio/mpeg": "mp3",
               "audio/mp4": "m4a"}


class VoiceError(Exception):
    """The provider failed or did not answer (its text is not shown: it may name internal hosts)."""


@dataclass
class VoiceSettings:
    base_url: Optional[str]          # CHAT_APP_AUDIO_BASE_URL: no voice input without it
    api_key: Optional[str]           # CHAT_APP_AUDIO_API_KEY
    transcription_model: str         # CHAT_APP_TRANSCRIPTION_MODEL
    speech_model: Optional[str]      # CHAT_APP_SPEECH_MODEL: without it the browser speaks
    speech_voice: str                # CHAT_APP_SPEECH_VOICE
    timeout: float = 30.0

    @classmethod
    def from_env(cls) -> "VoiceSettings":
        env = os.environ.get
        return cls(env("CHAT_APP_AUDIO_BASE_URL") or None, env("CHAT_APP_AUDIO_API_KEY") or None,
                   env("CHAT_APP_TRANSCRIPTION_MODEL", "whisper-large-v3"), env("CHAT_APP_SPEECH_MODEL") or None,
                   env("CHAT_APP_SPEECH_VOICE", "alloy"))

    @property
    def can_transcribe(self) -> bool:
        return bool(self.base_url)

    @property
    def can_speak(self) -> bool:
        return bool(self.base_url and self.speech_model)


def _post(settings: VoiceSettings, path: str, body: bytes, content_type: str) -> tuple:
    headers = {"Content-Type": content_type, "User-Agent": "memory_ext-chat-app"}
    if settings.api_key:
        headers["Authorization"] = f"Bearer {settings.api_key}"
    request = urllib.request.Request(settings.base_url.rstrip("/") + path, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=settings.timeout) as r:
            return r.headers.get("Content-Type", ""), r.read()
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        raise VoiceError(type(e).__name__) from None


def multipart(fields: dict, file_field: str, filename: str, file_type: str, data: bytes) -> tuple:
    """A multipart/form-data body (what the transcription endpoint reads) and its content type."""
    boundary = "memory_ext-" + secrets.token_hex(12)
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
                 f"Content-Type: {file_type}\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def transcribe(settings: VoiceSettings, audio: bytes, audio_type: str) -> str:
    extension = AUDIO_TYPES[audio_type]
    body, content_type = multipart({"model": settings.transcription_model, "response_format": "json"},
                                   "file", f"speech.{extension}", audio_type, audio)
    _, data = _post(settings, "/audio/transcriptions", body, content_type)
    try:
        return str(json.loads(data)["text"]).strip()
    except (ValueError, KeyError, TypeError):
        raise VoiceError("the transcription was not JSON with a text") from None


def speak(settings: VoiceSettings, text: str) -> tuple:
    """(content type, audio bytes) of the text read aloud."""
    body = json.dumps({"model": settings.speech_model, "input": text, "voice": settings.speech_voice,
                       "response_format": "wav"}).encode()
    content_type, data = _post(settings, "/audio/speech", body, "application/json")
    if not content_type.startswith("audio/") or not data:
        raise VoiceError("the speech endpoint did not answer with audio")
    return content_type, data
