import { useRef, useState, type FormEvent, type KeyboardEvent } from "react";
import { MicIcon } from "./Icons";

export const MAX_MESSAGE_CHARS = 8000;

interface Props {
  // a turn of this conversation is under way: one at a time, so the composer waits
  busy: boolean;
  // resolves true when the message was accepted (the text is then cleared)
  onSend: (text: string) => Promise<boolean>;
  // voice input: a recording to text (null when it failed; the page says why)
  onTranscribe?: (audio: Blob) => Promise<string | null>;
}

type Recording = "idle" | "listening" | "transcribing";

export function Composer({ busy, onSend, onTranscribe }: Props) {
  const [text, setText] = useState("");
  const [recording, setRecording] = useState<Recording>("idle");
  const recorder = useRef<MediaRecorder | null>(null);

  // Click to speak, click again to stop: the words land in the box, to read before sending.
  async function toggleRecording() {
    if (!onTranscribe) return;
    if (recorder.current) {
      recorder.current.stop();
      return;
    }
    let stream: MediaStream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch {
      setRecording("idle");
      alert("The microphone is not available: allow it for this page to speak a message.");
      return;
    }
    const rec = new MediaRecorder(stream);
    const chunks: Blob[] = [];
    rec.ondataavailable = (e) => { if (e.data.size) chunks.push(e.data); };
    rec.onstop = async () => {
      stream.getTracks().forEach((t) => t.stop());
      recorder.current = null;
      setRecording("transcribing");
      const heard = await onTranscribe(new Blob(chunks, { type: (rec.mimeType || "audio/webm").split(";")[0] }));
      setRecording("idle");
      if (heard) setText((t) => (t.trim() ? `${t.trimEnd()} ${heard}` : heard));
    };
    recorder.current = rec;
    rec.start();
    setRecording("listening");
  }
  const length = [...text.trim()].length;
  const over = length - MAX_MESSAGE_CHARS;

  async function submit(e?: FormEvent) {
    e?.preventDefault();
    const message = text.trim();
    if (busy || !message || over > 0) return;
    if (await onSend(message)) setText("");
  }

  function onKeyDown(e: KeyboardEvent<HTMLTextAreaElement>) {
    if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      void submit();
    }
  }

  return (
    <form id="composer" className="composer" onSubmit={submit}>
      <div className="composer-field">
        <textarea id="composer-input" rows={2} value={text} aria-label="Message"
                  placeholder="Message (Enter to send, Shift+Enter for a new line)"
                  aria-describedby="too-long" onChange={(e) => setText(e.target.value)} onKeyDown={onKeyDown} />
        <div id="too-long" className="too-long" role="status" hidden={over <= 0}>
          {`This message is ${length.toLocaleString("en")} characters; the limit is ${MAX_MESSAGE_CHARS.toLocaleString("en")}. ` +
            `Shorten it by ${over.toLocaleString("en")} before sending.`}
        </div>
      </div>
      {onTranscribe ? (
        <button id="record" type="button" className={recording === "listening" ? "record on" : "record"}
                aria-pressed={recording === "listening"} disabled={recording === "transcribing"} onClick={() => void toggleRecording()}
                title={recording === "listening" ? "stop and transcribe" : "speak a message"}
                aria-label={recording === "listening" ? "stop and transcribe" : "speak a message"}>
          {recording === "listening" ? "■ stop" : recording === "transcribing" ? "…" : <MicIcon />}
        </button>
      ) : null}
      <span id="voice-status" className="voice-status" role="status" hidden={recording === "idle"}>
        {recording === "listening" ? "Listening…" : "Transcribing…"}
      </span>
      <button id="send" className="primary" disabled={busy || over > 0}>{busy ? "Sending…" : "Send"}</button>
    </form>
  );
}
