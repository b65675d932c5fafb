// @ts-check
// This browser's camera and microphone, and audio levels (the prejoin meter and the speaking
// indicator on every tile).

import { log } from "./log.js";

const DEVICE_KEYS = { audio: "confab.microphone", video: "confab.camera" };
/// A shared screen's frame rate: enough for slides, code and a pointer.
export const SCREEN_FPS = 5;

const VIDEO_CONSTRAINTS = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } };

export class LocalMedia {
  constructor() {
    this.stream = new MediaStream();
    /** @type {{ audio: MediaStreamTrack | null, video: MediaStreamTrack | null }} */
    this.tracks = { audio: null, video: null };
    this.wanted = { audio: true, video: true };
    this.deviceIds = { audio: localStorage.getItem(DEVICE_KEYS.audio), video: localStorage.getItem(DEVICE_KEYS.video) };
    this.lastError = null;
    /** @type {MediaStream | null} the screen being shared, if any */
    this.screen = null;
  }

  /// The track to send for `kind`: the live track, or null while the camera is off. A
  /// muted microphone's track is kept (disabled, it sends silence) so that unmuting is
  /// instant.
  track(kind) {
    return this.tracks[kind];
  }

  get audioOn() {
    return this.wanted.audio && !!this.tracks.audio;
  }

  get videoOn() {
    return this.wanted.video && !!this.tracks.video;
  }

  /// Opens the device for `kind` (the chosen one, if any). Returns the new track or null,
  /// keeping the reason in `lastError`.
  /// With `exact`, only the chosen device will do (a person picked it, or flipped to it);
  /// otherwise the remembered one is preferred, and another taken if it is gone.
  async open(kind, exact = false) {
    const id = this.deviceIds[kind];
    const base = kind === "video" ? VIDEO_CONSTRAINTS : { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
    const constraints = { [kind]: id ? { ...base, deviceId: exact ? { exact: id } : { ideal: id } } : base };
    try {
      const stream = await navigator.mediaDevices.getUserMedia(constraints);
      const track = stream.getTracks()[0];
      this.replace(kind, track);
      this.lastError = null;
      return track;
    } catch (e) {
      this.lastError = e;
      this.replace(kind, null);
      return null;
    }
  }

  replace(kind, track) {
    const old = this.tracks[kind];
    if (old) {
      old.stop();
      this.stream.removeTrack(old);
    }
    this.tracks[kind] = track;
    if (track) {
      this.stream.addTrack(track);
      if (kind === "audio") track.enabled = this.wanted.audio;
    }
  }

  /// Turns the microphone on or off. Returns the track to send if it changed, else undefined.
  async setAudio(on) {
    this.wanted.audio = on;
    if (this.tracks.audio) {
      this.tracks.audio.enabled = on;
      return undefined;
    }
    return on ? this.open("audio") : undefined;
  }

  /// Turns the camera on (opening it) or off (releasing it, so its light goes out).
  async setVideo(on) {
    this.wanted.video = on;
    if (on) return this.open("video");
    this.replace("video", null);
    return null;
  }

  async choose(kind, deviceId) {
    this.deviceIds[kind] = deviceId;
    localStorage.setItem(DEVICE_KEYS[kind], deviceId);
    if (!this.wanted[kind]) return undefined;
    // A device's own formats may fit the ideal size worse than another's: ask for it exactly.
    return (await this.open(kind, true)) ?? this.open(kind);
  }

  async devices() {
    try {
      const all = await navigator.mediaDevices.enumerateDevices();
      return {
        audio: all.filter((d) => d.kind === "audioinput"),
        video: all.filter((d) => d.kind === "videoinput"),
        output: all.filter((d) => d.kind === "audiooutput"),
      };
    } catch {
      return { audio: [], video: [], output: [] };
    }
  }

  /// Starts sharing a screen, window or tab (the browser asks which), with its audio where
  /// the browser offers it. Returns the new stream, or null if the person declined.
  /// `onEnded` runs when the share stops from the browser's own controls.
  async startScreen(onEnded) {
    this.stopScreen();
    let stream;
    try {
      // Up to 1080p at 5 fps (as Jitsi shares): slides and code stay sharp, and the encoder
      // leaves the camera its share of the processor and the uplink.
      const video = { width: { max: 1920 }, height: { max: 1080 }, frameRate: { ideal: SCREEN_FPS, max: SCREEN_FPS } };
      stream = await navigator.mediaDevices.getDisplayMedia({ video, audio: true });
    } catch (e) {
      this.lastError = e;
      return null;
    }
    const video = stream.getVideoTracks()[0];
    // Text stays sharp: the encoder keeps the resolution and gives up frame rate.
    if (video && "contentHint" in video) video.contentHint = "detail";
    video?.addEventListener("ended", () => {
      if (this.screen === stream) {
        this.stopScreen();
        onEnded();
      }
    });
    this.screen = stream;
    return stream;
  }

  stopScreen() {
    for (const track of this.screen?.getTracks() ?? []) track.stop();
    this.screen = null;
  }

  /// The screen share's track of `kind`, or null.
  screenTrack(kind) {
    return (kind === "audio" ? this.screen?.getAudioTracks()[0] : this.screen?.getVideoTracks()[0]) ?? null;
  }

  stop() {
    this.stopScreen();
    this.replace("audio", null);
    this.replace("video", null);
  }
}

/// Watches the audio level of streams: calls `onLevel(level 0..1)` about ten times a second.
export class Levels {
  constructor() {
    this.context = null;
    this.watched = new Map();
    this.timer = null;
    // Browsers start an AudioContext made before any click or key press suspended; the
    // first one lets the meters run.
    const resume = () => this.context?.state === "suspended" && this.context.resume().catch(() => {});
    addEventListener("pointerdown", resume, { capture: true });
    addEventListener("keydown", resume, { capture: true });
  }

  watch(key, stream, onLevel) {
    this.unwatch(key);
    if (!stream.getAudioTracks().length) return;
    try {
      this.context ??= new AudioContext();
      if (this.context.state === "suspended") this.context.resume().catch(() => {});
      const source = this.context.createMediaStreamSource(stream);
      const analyser = this.context.createAnalyser();
      analyser.fftSize = 512;
      source.connect(analyser);
      this.watched.set(key, { source, analyser, onLevel, samples: new Float32Array(analyser.fftSize) });
      this.timer ??= setInterval(() => this.sample(), 100);
    } catch (e) {
      log("warn", "audio levels unavailable", e);
    }
  }

  unwatch(key) {
    const w = this.watched.get(key);
    if (!w) return;
    w.source.disconnect();
    this.watched.delete(key);
  }

  sample() {
    for (const w of this.watched.values()) {
      w.analyser.getFloatTimeDomainData(w.samples);
      let sum = 0;
      for (const x of w.samples) sum += x * x;
      w.onLevel(Math.min(1, Math.sqrt(sum / w.samples.length) * 4));
    }
  }
}

/// Turns a stream of levels into speaking / not speaking, holding "speaking" briefly so that
/// the indicator does not flicker between words.
export function speakingDetector(onChange, threshold = 0.06, holdMs = 400) {
  let speaking = false;
  let lastLoud = 0;
  return (level) => {
    const now = performance.now();
    if (level >= threshold) lastLoud = now;
    const next = now - lastLoud < holdMs;
    if (next !== speaking) {
      speaking = next;
      onChange(speaking);
    }
  };
}
