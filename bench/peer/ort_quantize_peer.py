#!/usr/bin/env python3
"""Peer comparison for issue 7: onnxruntime's own quantize_static against Whittle's static quantization.

Runs where onnxruntime's Python package (which ships onnxruntime.quantization) is installed; Whittle itself
needs no Python. Both quantized models are timed and scored here, in one process, on the same machine:

- mnist-8: calibrate on the first 512 MNIST test images, evaluate on the other 9,488 (raw 0-255 input).
- ultraface: random calibration (the peer: 64 seeded normal samples; Whittle: its own seeded random data),
  fidelity against fp32 on 32 seeded random inputs (cosine and SQNR of the scores output).

Usage: ort_quantize_peer.py --mnist-dir DIR --mnist8 M --ultraface U [--ours-mnist8 Q] [--ours-ultraface Q] --out DIR
"""
import argparse
import gzip
import json
import os
import statistics
import time

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static


def read_idx(path):
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'rb') as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def find(dir_, stem):
    for name in (stem, stem + '.gz'):
        p = os.path.join(dir_, name)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(os.path.join(dir_, stem))


class Reader(CalibrationDataReader):
    def __init__(self, name, samples):
        self.name, self.samples, self.i = name, samples, 0

    def get_next(self):
        if self.i >= len(self.samples):
            return None
        self.i += 1
        return {self.name: self.samples[self.i - 1]}


def session(path):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=['CPUExecutionProvider'])


def latency(sessions, feed, rounds=5, runs=40):
    """Median batch-1 latency in ms of each session, interleaved round by round."""
    times = {k: [] for k in sessions}
    for s in sessions.values():
        for _ in range(10):
            s.run(None, feed)
    for _ in range(rounds):
        for k, s in sessions.items():
            for _ in range(runs):
                t0 = time.perf_counter()
                s.run(None, feed)
                times[k].append((time.perf_counter() - t0) * 1000)
    return {k: statistics.median(v) for k, v in times.items()}


def peer_quantize(src, dst, name, samples, notes, label):
    """quantize_static as its docs show it; if the result does not load (old opsets), again after upgrading
    the model to opset 13 with onnx.version_converter, as ORT's docs advise. Returns False when both fail."""
    def attempt(model_path):
        try:
            quantize_static(model_path, dst, Reader(name, samples), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax)
            session(dst)
            return None
        except Exception as e:  # the peer's failure is a finding, not a crash of the comparison
            return f'{type(e).__name__}: {str(e).splitlines()[0][:300]}'
    err = attempt(src)
    if err is None:
        return True
    notes.append(f'{label}: quantize_static on the model as it is gave a model that fails: {err}')
    import onnx
    from onnx import version_converter
    upgraded = dst + '.opset13.onnx'
    onnx.save(version_converter.convert_version(onnx.load(src), 13), upgraded)
    err = attempt(upgraded)
    if err is None:
        notes.append(f'{label}: quantize_static worked after upgrading the model to opset 13 (onnx.version_converter); that model is the one compared')
        return True
    notes.append(f'{label}: quantize_static failed after the opset 13 upgrade too: {err}')
    return False


def mnist(args, rows, notes):
    images = read_idx(find(args.mnist_dir, 't10k-images-idx3-ubyte')).astype(np.float32)
    labels = read_idx(find(args.mnist_dir, 't10k-labels-idx1-ubyte'))
    x = images.reshape(-1, 1, 1, 28, 28)
    name = session(args.mnist8).get_inputs()[0].name
    peer = os.path.join(args.out, 'mnist8.peer.onnx')
    models = {'fp32': args.mnist8}
    if peer_quantize(args.mnist8, peer, name, [x[i] for i in range(512)], notes, 'mnist-8'):
        models['onnxruntime quantize_static'] = peer
    if args.ours_mnist8:
        models['Whittle static'] = args.ours_mnist8
    sessions = {k: session(v) for k, v in models.items()}
    acc = {}
    for k, s in sessions.items():
        hits = sum(int(np.argmax(s.run(None, {name: x[i]})[0]) == labels[i]) for i in range(512, len(labels)))
        acc[k] = hits / (len(labels) - 512)
    lat = latency(sessions, {name: x[600]})
    for k in models:
        rows.append({'model': 'mnist-8', 'quantizer': k, 'accuracy': acc[k], 'dropPt': (acc['fp32'] - acc[k]) * 100,
                     'bytes': os.path.getsize(models[k]), 'latencyMs': lat[k], 'ratio': lat[k] / lat['fp32']})


def ultraface(args, rows, notes):
    name = session(args.ultraface).get_inputs()[0].name
    rng = np.random.default_rng(0)
    calib = [rng.standard_normal((1, 3, 240, 320), dtype=np.float32) for _ in range(64)]
    peer = os.path.join(args.out, 'ultraface.peer.onnx')
    models = {'fp32': args.ultraface}
    if peer_quantize(args.ultraface, peer, name, calib, notes, 'ultraface'):
        models['onnxruntime quantize_static'] = peer
    if args.ours_ultraface:
        models['Whittle static'] = args.ours_ultraface
    sessions = {k: session(v) for k, v in models.items()}
    test = [np.random.default_rng(100 + i).standard_normal((1, 3, 240, 320), dtype=np.float32) for i in range(32)]
    ref = [sessions['fp32'].run(None, {name: t})[0].ravel() for t in test]
    lat = latency(sessions, {name: test[0]}, rounds=3, runs=15)
    for k, s in sessions.items():
        out = [s.run(None, {name: t})[0].ravel() for t in test]
        a, b = np.concatenate(ref).astype(np.float64), np.concatenate(out).astype(np.float64)
        cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
        noise = float(((a - b) ** 2).sum())
        sqnr = float('inf') if noise == 0 else 10 * np.log10(float((a ** 2).sum()) / noise)
        rows.append({'model': 'ultraface', 'quantizer': k, 'cosine': cos, 'sqnrDb': sqnr,
                     'bytes': os.path.getsize(models[k]), 'latencyMs': lat[k], 'ratio': lat[k] / lat['fp32']})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--mnist-dir', required=True)
    ap.add_argument('--mnist8', required=True)
    ap.add_argument('--ultraface', required=True)
    ap.add_argument('--ours-mnist8')
    ap.add_argument('--ours-ultraface')
    ap.add_argument('--out', required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rows, notes = [], []
    flags = open('/proc/cpuinfo').read()
    cpu = next((l.split(':', 1)[1].strip() for l in flags.splitlines() if l.startswith('model name')), '?')
    vnni = 'avx512_vnni' in flags or 'avx_vnni' in flags
    mnist(args, rows, notes)
    ultraface(args, rows, notes)
    lines = [f'onnxruntime {ort.__version__} (Python), CPU EP; {cpu}; VNNI: {"yes" if vnni else "no"}', '',
             '| model | quantizer | accuracy / cosine | drop (pt) / SQNR (dB) | file (KiB) | latency (ms) | vs fp32 |',
             '|---|---|---:|---:|---:|---:|---:|']
    for r in rows:
        q = f"{r['accuracy'] * 100:.2f}%" if 'accuracy' in r else f"{r['cosine']:.5f}"
        d = f"{r['dropPt']:.2f}" if 'dropPt' in r else f"{r['sqnrDb']:.1f}"
        lines.append(f"| {r['model']} | {r['quantizer']} | {q} | {d} | {r['bytes'] / 1024:.1f} | {r['latencyMs']:.3f} | {r['ratio']:.2f}x |")
    lines += [''] + [f'- {n}' for n in notes]
    text = '\n'.join(lines)
    print(text)
    with open(os.path.join(args.out, 'peer.md'), 'w') as f:
        f.write(text + '\n')
    with open(os.path.join(args.out, 'peer.json'), 'w') as f:
        json.dump({'rows': rows, 'notes': notes, 'cpu': cpu, 'vnni': vnni, 'ort': ort.__version__}, f, indent=2)


if __name__ == '__main__':
    main()
