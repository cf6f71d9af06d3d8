// The microphone's samples in 20 ms blocks, on the audio thread (an AudioWorklet).
//
// The room's AudioContext runs at 48 kHz, and the node is set to one channel ("explicit",
// "speakers"), so whatever the microphone delivers (the fake device gives 44.1 kHz stereo)
// arrives here as 48 kHz mono. Render quanta of 128 samples are gathered into blocks of 960
// (20 ms, one Opus frame) and posted to the page, which measures the level and encodes them.
// The node has no outputs: the browser pulls it on its own, and nothing is played back.

const BLOCK = 960;

class HearthCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.block = new Float32Array(BLOCK);
    this.filled = 0;
  }

  process(inputs) {
    const samples = inputs[0]?.[0];
    if (!samples) return true; // no input connected (yet): nothing to gather
    let at = 0;
    while (at < samples.length) {
      const n = Math.min(samples.length - at, BLOCK - this.filled);
      this.block.set(samples.subarray(at, at + n), this.filled);
      this.filled += n;
      at += n;
      if (this.filled === BLOCK) {
        this.port.postMessage(this.block, [this.block.buffer]);
        this.block = new Float32Array(BLOCK);
        this.filled = 0;
      }
    }
    return true;
  }
}

registerProcessor("hearth-capture", HearthCapture);
