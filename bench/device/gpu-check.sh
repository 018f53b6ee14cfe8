#!/usr/bin/env bash
# GPU check for a machine with an NVIDIA GPU and no Node.js or internet: WebGPU EP (Dawn on the NVIDIA Vulkan
# driver) against the CPU EP, on real models, through the CLI. Needs, beside the checkout:
#   .device/runtime.tar.xz   bin/node and nm/{onnxruntime-node,onnxruntime-common} (Linux x64)
#   .device/*.deb            the Vulkan loader and glvnd (libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
#   .device/data/            mnist8.onnx, ultraface.onnx, superres.onnx, t10k-{images-idx3,labels-idx1}-ubyte.gz
#   dist/                    the built CLI (npm run build)
# Writes $OUT/gpu-check.md (and .json files); prints the same.
set -u
OUT=${OUT:-/tmp/gpu-check}
RAW=/tmp/gpu-check-raw
mkdir -p "$OUT" "$RAW" /tmp/rt
tar -xJf .device/runtime.tar.xz -C /tmp/rt
export PATH=/tmp/rt/bin:$PATH NODE_PATH=/tmp/rt/nm
for f in .device/*.deb; do dpkg -x "$f" /; done; ldconfig
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES=$icd
{ nvidia-smi -L; grep -m1 'model name' /proc/cpuinfo; node --version; ls /usr/local/nvidia/share/vulkan/icd.d/ 2>&1; } 2>&1 | tee "$OUT/machine.txt"
D=.device/data
run() { # name model data ep
  local name=$1 model=$2 data=$3 ep=$4
  timeout 240 node dist/cli.js eval "$model" --data "$data" --ep "$ep" --json >"$RAW/$name-$ep.json" 2>"$RAW/$name-$ep.err"
  echo "$name $ep rc=$? $(tail -c 300 "$RAW/$name-$ep.err" | tr '\n' ' ' | grep -o 'whittle:.*' )"
}
# QUANTIZE_ONLY=1 skips the fp32 evaluations.
eps="cpu webgpu"
[ -n "${QUANTIZE_ONLY:-}" ] && eps=""
for ep in $eps; do
  run mnist8 $D/mnist8.onnx "$D/t10k-images-idx3-ubyte.gz" $ep
  run superres $D/superres.onnx random $ep
  run ultraface $D/ultraface.onnx random $ep
done
# Quantized models on the GPU: the quantize preflight times each against fp32 on the same EP.
quant() { # name model mode ep
  timeout 240 node dist/cli.js quantize "$2" --mode "$3" --ep "$4" --limit 16 --out "$RAW/q-$1-$3-$4" --json >"$RAW/q-$1-$3-$4.json" 2>"$RAW/q-$1-$3-$4.err"
  echo "quantize $1 $3 $4 rc=$? $(node -e 'try{const r=require(process.argv[1]);console.log(`preflight ${r.preflight.ratio.toFixed(2)}x (${r.preflight.baselineMs.toFixed(3)} -> ${r.preflight.candidateMs.toFixed(3)} ms) ep ${r.preflight.ep} cosine ${r.metrics.cosine}`)}catch(e){console.log("no result")}' "$RAW/q-$1-$3-$4.json")"
}
for ep in webgpu cpu; do
  for mode in fp16 static; do quant superres $D/superres.onnx $mode $ep; done
  quant ultraface $D/ultraface.onnx static $ep
done | tee "$OUT/quantize.txt"
# openSession checks every non-CPU EP against CPU on a sample and falls back, with a warning, when the
# outputs differ beyond epTolerances.json: 'EP used' webgpu means that check passed.
node -e '
const fs = require("fs"); const [out, dest] = process.argv.slice(1);
const rows = [];
for (const m of ["mnist8", "superres", "ultraface"]) {
  const r = {};
  for (const ep of ["cpu", "webgpu"]) { try { r[ep] = JSON.parse(fs.readFileSync(`${out}/${m}-${ep}.json`, "utf8")); } catch { r[ep] = undefined; } }
  const c = r.cpu, g = r.webgpu;
  rows.push(`| ${m} | ${c ? c.samples : "-"} | ${c?.accuracy !== undefined ? (c.accuracy*100).toFixed(2)+"%" : "-"} | ${g?.accuracy !== undefined ? (g.accuracy*100).toFixed(2)+"%" : "-"} | ${c ? c.latencyMs.median : "-"} | ${g ? g.latencyMs.median : "-"} | ${c && g ? (g.latencyMs.median / c.latencyMs.median).toFixed(2)+"x" : "-"} | ${g ? g.ep : "failed"} | ${g ? (g.warnings||[]).join("; ").slice(0,200) : ""} |`);
}
const text = ["| model | samples | CPU accuracy | WebGPU accuracy | CPU ms | WebGPU ms | WebGPU/CPU | EP used | warnings |", "|---|---:|---:|---:|---:|---:|---:|---|---|", ...rows].join("\n");
fs.writeFileSync(`${dest}/gpu-check.md`, text + "\n"); console.log(text);
' "$RAW" "$OUT"
tar -czf "$OUT/raw.tgz" -C "$RAW" .
