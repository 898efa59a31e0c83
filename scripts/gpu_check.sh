#!/usr/bin/env bash
# One prepared pass on a CUDA machine: a smoke test of every CUDA path, then the GPU figures.
#
#   VGG=/path/to/vgg16.pth STYLES=/path/to/paintings bash scripts/gpu_check.sh OUT_DIR [cpu]
#   SECTIONS="kernels smoke" VGG=... # only these (default: figures smoke compiled; kernels:
#                                    # fast_kernels on vs off, eager)
#
# VGG: a torchvision-layout VGG16 ``features`` state dict (the runs check that training works, not
# what it paints, so the stand-in weights do); STYLES: a folder with starry_night.jpg and wave.jpg
# (seeded into an offline style cache, as the tests do). Every step runs under its own time limit
# and a failed step does not stop the rest. OUT_DIR gets few files (a lent GPU machine returns at
# most eight): summary.txt (one line per step, then the figures), steps.log (every step's output)
# and a few pictures. Figures come first, in case the whole call is cut short.
# The second argument ``cpu`` rehearses the whole script on the CPU at toy sizes.
set -u
OUT=${1:?usage: VGG=... STYLES=... bash scripts/gpu_check.sh OUT_DIR [cpu]}
MODE=${2:-cuda}
SECTIONS=" ${SECTIONS:-figures smoke compiled} "
want() { [[ $SECTIONS == *" $1 "* ]]; }
mkdir -p "$OUT"
WORK=$(mktemp -d)
mkdir -p "$WORK/logs"
SUMMARY="$OUT/summary.txt"
export PYTHONUNBUFFERED=1 FAST_STYLE_CACHE="$WORK/cache" WANDB_MODE=disabled
if [ "$MODE" = cpu ]; then
    DEVICE=cpu SIZE=64 BATCH=2 STEPS=5 LOG=1 FRAME=320x180 FBATCH=1 BIG=(warmup=1 window=2 windows=2)
    INFER=(windows=1 iters=1 warmup=0)
else
    DEVICE=cuda SIZE=256 BATCH=16 STEPS=30 LOG=5 FRAME=1920x1080 FBATCH=8 BIG=(warmup=5 window=20 windows=5)
    INFER=(windows=5 iters=3 warmup=2)
fi

say() { echo "$*" | tee -a "$SUMMARY"; }
step() {  # step NAME SECONDS command...: output to $WORK/logs/NAME.log, one summary line
    local name=$1 limit=$2 start=$SECONDS
    shift 2
    timeout "$limit" "$@" >"$WORK/logs/$name.log" 2>&1
    local rc=$?
    say "$( [ $rc = 0 ] && echo ok || echo "FAILED rc=$rc" ) $name ($((SECONDS - start)) s)"
    return $rc
}
flush_logs() {  # append the logs of finished steps to $OUT/steps.log, each once
    for log in "$WORK"/logs/*.log; do
        [ -e "$log" ] || continue
        { echo "===== $(basename "$log" .log)"; cat "$log"; } >>"$OUT/steps.log"
        mv "$log" "$log.done"
    done
}
figures() {  # the benchmark lines of the finished steps, into the summary
    grep -h -E "^(device|reference|project|ratio|top|backend|eager|autocast|bf16|fp16|torchscript|compile|fastest)|^ +[0-9.]+ ms" \
        "$WORK"/logs/bench_*.log* 2>/dev/null | tee -a "$SUMMARY"
}

say "== gpu_check $(date -u +%FT%TZ) mode=$MODE"
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv 2>&1
  python3 -c 'import torch, pytorch_lightning as pl, platform
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "cudnn", torch.backends.cudnn.version(), "lightning", pl.__version__)
if torch.cuda.is_available(): print(torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))'
  nproc; } 2>&1 | tee -a "$SUMMARY"

# -- data: a few real photos (scikit-image) and the style cache --------------------------------
python3 - "$WORK" "$STYLES" <<'EOF' 2>&1 | tee -a "$SUMMARY"
import shutil, sys
from pathlib import Path

from omegaconf import OmegaConf
from PIL import Image
from skimage import data

from fast_style.train.styles import cached_style_path

work, styles = Path(sys.argv[1]), Path(sys.argv[2])
photos = work / "photos"
photos.mkdir(parents=True)
for name in ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field"]:
    image = Image.fromarray(getattr(data, name)()).convert("RGB")
    for i in range(12):  # 72 photos: enough for batches of 32 (whole batches only)
        side = min(image.size) * (6 + i % 4) // 10
        x, y = (i * 37) % (image.width - side + 1), (i * 53) % (image.height - side + 1)
        image.crop((x, y, x + side, y + side)).save(photos / f"{name}_{i:02d}.png")
for name in ["starry_night", "wave"]:
    style = OmegaConf.load(f"configs/style/{name}.yaml").style
    target = cached_style_path(style.url, style.sha256)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(styles / f"{name}.jpg", target)
Image.fromarray(data.astronaut()).resize((1037, 691)).save(work / "odd.jpg")  # odd sizes on purpose
print("photos:", len(list(photos.iterdir())))
EOF

# -- 1. figures (each alone on the GPU; the compiled ones come last) ----------------------------
bench_train() {  # bench_train BATCH [compile=true ...]
    local batch=$1 name="bench_train_b$1"
    shift
    case " $* " in *" compile=true "*) name+="_compile" ;; esac
    step "$name" 420 python3 scripts/benchmark.py "size=$SIZE" "batch=$batch" precision=bf16-mixed \
        "device=$DEVICE" "${BIG[@]}" "$@"
}
if want figures; then
bench_train "$BATCH" profile=true
step bench_infer 420 python3 scripts/benchmark_inference.py "device=$DEVICE" "size=$FRAME" "batch=$FBATCH" \
    compile=true "backends=[eager32,eager32_cl,autocast_bf16_cl,bf16,fp16,torchscript,torchscript_bf16]" "${INFER[@]}"
bench_train $((BATCH * 2))
flush_logs
fi

# -- fast_kernels on vs off (the switch of fast_style.model.cpu_kernels), eager -----------------
if want kernels; then
for kernels in true false; do
    step "bench_train_b${BATCH}_fast_kernels_$kernels" 300 python3 scripts/benchmark.py "size=$SIZE" "batch=$BATCH" \
        precision=bf16-mixed "device=$DEVICE" "${BIG[@]}" reference=false "fast_kernels=$kernels" \
        "profile=$kernels"
    step "bench_infer_fast_kernels_$kernels" 300 python3 scripts/benchmark_inference.py "device=$DEVICE" \
        "size=$FRAME" "batch=$FBATCH" "backends=[eager32,eager32_cl,autocast_bf16_cl,bf16,fp16]" windows=3 iters=2 \
        warmup=1 "fast_kernels=$kernels"
done
flush_logs
fi

if want smoke; then
TRAIN=(python3 train.py loss=standin data=folder "data.root=$WORK/photos" "data.image_size=$SIZE"
       "data.batch_size=$BATCH" data.num_workers=4 "perceptual.weights=$VGG" logger=csv
       "trainer.max_steps=$STEPS" "trainer.log_every_n_steps=$LOG" trainer.enable_progress_bar=false
       samples.count=2 "export.formats=[]")

# -- 2. smoke: every precision, compiled, multi-style, in parallel (the GPU is big) -----------
step train_bf16 400 "${TRAIN[@]}" trainer.precision=bf16-mixed "export.formats=[onnx,torchscript,safetensors]" \
    "hydra.run.dir=$WORK/runs/bf16" &
step train_fp16 400 "${TRAIN[@]}" trainer.precision=16-mixed "hydra.run.dir=$WORK/runs/fp16" &
step train_fp32 400 "${TRAIN[@]}" trainer.precision=32 "hydra.run.dir=$WORK/runs/fp32" &
step train_compile 400 "${TRAIN[@]}" trainer.precision=bf16-mixed compile=true "hydra.run.dir=$WORK/runs/compile" &
step train_multi 400 "${TRAIN[@]}" "styles=[starry_night,wave]" trainer.precision=bf16-mixed \
    "export.formats=[onnx,torchscript]" "hydra.run.dir=$WORK/runs/multi" &
wait
if [ "$DEVICE" = cuda ]; then say "DDP: one GPU on this machine: 2-process NCCL DDP not run"; fi

# resume: ten more steps on the bf16 run, from its last checkpoint
step train_resume 300 "${TRAIN[@]}" trainer.precision=bf16-mixed "trainer.max_steps=$((STEPS + 10))" \
    resume=true "hydra.run.dir=$WORK/runs/bf16"

# losses finite, checkpoints on the CPU
python3 - "$WORK/runs" <<'EOF' 2>&1 | tee -a "$SUMMARY"
import csv, math, sys
from pathlib import Path

import torch

from fast_style.infer.stylizer import load_stylizer

for run in sorted(Path(sys.argv[1]).iterdir()):
    rows = [r for f in sorted(run.rglob("metrics.csv")) for r in csv.DictReader(f.open())]
    losses = [float(r["loss/total"]) for r in rows if r.get("loss/total")]
    finite = bool(losses) and all(math.isfinite(v) for v in losses)
    ckpt = run / "final.ckpt"
    try:
        stylizer = load_stylizer(ckpt)  # always on the CPU
        styles = stylizer.net.num_styles
        out = stylizer(torch.rand(1, 3, 67, 45), torch.full((1, styles), 1 / styles) if styles > 1 else None)
        loads = f"loads on CPU, out {tuple(out.shape)} in [{out.min():.2f}, {out.max():.2f}]"
    except Exception as exc:  # noqa: BLE001 -- report, go on
        loads = f"LOAD FAILED {type(exc).__name__}: {exc}"
    first, last = (f"{losses[0]:.3g}", f"{losses[-1]:.3g}") if losses else ("-", "-")
    print(f"{run.name}: {len(losses)} logged losses {first} -> {last}, {'finite' if finite else 'NOT FINITE'}; {loads}")
EOF

# stylize on CUDA (checkpoint, TorchScript, safetensors; an odd-sized photo), ONNX on ONNX Runtime
for kind in ckpt torchscript.pt safetensors; do
    step "stylize_${kind%%.*}" 300 python3 stylize.py "ckpt=$WORK/runs/bf16/final.$kind" "input=$WORK/odd.jpg" \
        "output=$OUT/stylized_${kind%%.*}.jpg" "device=$DEVICE" precision=bf16
done
step stylize_onnx 300 python3 stylize.py "ckpt=$WORK/runs/bf16/final.onnx" "input=$WORK/odd.jpg" \
    "output=$WORK/stylized_onnx.jpg" device=cpu
step stylize_multi_all 300 python3 stylize.py "ckpt=$WORK/runs/multi/final.ckpt" "input=$WORK/odd.jpg" \
    "output=$WORK/multi.jpg" style=all "device=$DEVICE"
step export_compiled_run 300 python3 scripts/export.py "ckpt=$WORK/runs/compile/final.ckpt" \
    "out_dir=$WORK/export" "formats=[onnx,torchscript]"
cp "$(ls "$WORK"/runs/bf16/samples/* | tail -1)" "$OUT/samples_bf16.png" 2>/dev/null
cp "$(ls "$WORK"/multi_*.jpg | tail -1)" "$OUT/" 2>/dev/null
flush_logs

fi

# compiled training (the smoke run above filled the inductor cache for batch $BATCH)
if want compiled; then
bench_train "$BATCH" compile=true reference=false
bench_train $((BATCH * 2)) compile=true reference=false
flush_logs
fi
say "== figures"
figures
say "== done $(date -u +%FT%TZ)"
