#!/usr/bin/env bash
# Set up whatever is missing, then run one job of monai_osteo.
#
#   bash scripts/run.sh demo [ARGS]   # the main end-to-end job: hand_osteo bundle, quick preset (README "Quick start")
#   bash scripts/run.sh test [ARGS]   # lint (ruff) + the default test suite (pytest) [+ label-test without ARGS]; CI
#   bash scripts/run.sh setup         # only create/refresh the environment
#   bash scripts/run.sh python ARGS   # run python inside the environment
#   bash scripts/run.sh label-setup   # only create/refresh the MONAI Label environment (a separate one)
#   bash scripts/run.sh label-server [--studies DIR] [--port N] [--run RUN] [ARGS]  # MONAI Label, 127.0.0.1
#   bash scripts/run.sh label-test [ARGS]  # the MONAI Label app's HTTP tests, in that environment
#
# The virtual environment lives outside the clone, keyed by a hash of the dependency lists
# (setup.cfg, pyproject.toml) and the Python version, so a dependency change builds a new one and an
# unchanged one is reused. Override its location with MONAI_OSTEO_VENV=/path/to/venv.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
EXTRAS=${MONAI_OSTEO_EXTRAS:-test,radiomics}

log() { printf '[monai_osteo] %s\n' "$*" >&2; }

command -v "$PYTHON" >/dev/null 2>&1 || { log "error: $PYTHON not found; install Python >= 3.11 or set PYTHON=/path/to/python3"; exit 2; }
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
  log "error: Python >= 3.11 is needed, found $("$PYTHON" -V 2>&1); set PYTHON=/path/to/python3.11"; exit 2; }

# setup_env VENV EXTRAS: create the environment if it is not complete, then point it at this clone
env_path() {  # env_path PREFIX EXTRAS -> the environment's path for this clone's dependency lists
  local key
  key=$( { cat "$ROOT/setup.cfg" "$ROOT/pyproject.toml"; echo "$2"; "$PYTHON" -V; } | sha256sum | cut -c1-16)
  echo "${XDG_CACHE_HOME:-$HOME/.cache}/monai_osteo/$1-$key"
}
VENV=${MONAI_OSTEO_VENV:-$(env_path venv "$EXTRAS")}
# MONAI Label 0.8.5 needs numpy < 2, pydicom < 3, jsonschema < 4 (its pydicom-seg dependency): an environment
# of its own, so the main one stays on numpy 2 / pydicom 3 (the "label" extra pins them; see apps/monailabel)
LABEL_EXTRAS=test,label
LABEL_VENV=${MONAI_OSTEO_LABEL_VENV:-$(env_path label-venv "$LABEL_EXTRAS")}

setup_env() {
  local venv=${1:-$VENV} extras=${2:-$EXTRAS}
  mkdir -p "$(dirname "$venv")"
  exec 9>"$venv.lock"
  flock 9
  if [ ! -f "$venv/.complete" ]; then
    log "creating environment $venv (first run: downloads torch, MONAI, ITK, ...; several minutes)"
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip setuptools wheel
    "$venv/bin/python" -m pip install -q -e "$ROOT[$extras]"
    touch "$venv/.complete"
  fi
  # point the environment at this clone (the environment may be shared by several clones); pip's record of the
  # editable install says where it points, so an environment already pointing here is left as it is
  if ! grep -qsF "\"url\": \"file://$ROOT\"" "$venv"/lib/python*/site-packages/monai_osteo-*.dist-info/direct_url.json; then
    "$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$ROOT" >/dev/null
  fi
  flock -u 9
}

job=${1:-}
[ $# -gt 0 ] && shift
case "$job" in
  setup)
    setup_env; log "environment ready: $VENV" ;;
  demo)
    setup_env
    cd "$ROOT"
    B=bundles/hand_osteo
    # the run's output folder (--output_dir DIR or --output_dir=DIR; the quick preset's default otherwise); the bundle
    # logs the seed and the package versions it runs with when it starts (monai_osteo.bundle.log_run_info)
    out=$B/runs/quick
    prev=
    for a in "$@"; do
      case "$a" in --output_dir=*) out=${a#--output_dir=} ;; esac
      [ "$prev" = --output_dir ] && out=$a
      prev=$a
    done
    log "hand_osteo bundle, quick preset: phantom cohort -> OT U-Net -> bone patches -> SSL ResNet-18 -> probe -> screening gates -> test + 2MCI baseline"
    "$VENV/bin/python" -m monai.bundle run --config_file "['$B/configs/train.json','$B/configs/quick.json']" "$@"
    cat "$out/eval/metrics.md"
    [ -f "$out/gates.json" ] && "$VENV/bin/python" -c 'import json, sys; g = json.load(open(sys.argv[1])); print("screening gates:", {k: v if v is None else round(v, 3) for k, v in g["thresholds"].items()}, "- refused %.1f %% of the %d calibration radiographs" % (100 * g["calibration_rejection_rate"], g["calibration_radiographs"]))' "$out/gates.json"
    log "models, metrics and figures in $out" ;;
  test)
    setup_env
    cd "$ROOT"
    log "ruff check"
    "$VENV/bin/ruff" check .
    log "pytest"
    set +e
    "$VENV/bin/python" -m pytest "$@"
    rc=$?
    set -e
    if [ "$rc" -eq 5 ]; then log "pytest collected no tests"; rc=0; fi
    # with no arguments (what CI runs), also the MONAI Label app's HTTP tests, in their own environment
    if [ $# -eq 0 ] && [ "${MONAI_OSTEO_SKIP_LABEL:-0}" != 1 ]; then
      set +e
      bash "$ROOT/scripts/run.sh" label-test
      lrc=$?
      set -e
      [ "$rc" -ne 0 ] || rc=$lrc
    fi
    exit "$rc" ;;
  python)
    setup_env
    exec "$VENV/bin/python" "$@" ;;
  label-setup)
    setup_env "$LABEL_VENV" "$LABEL_EXTRAS"; log "MONAI Label environment ready: $LABEL_VENV" ;;
  label-server)
    setup_env "$LABEL_VENV" "$LABEL_EXTRAS"
    cd "$ROOT"
    studies="" port=8000 run="$ROOT/bundles/hand_osteo/runs/quick" extra=()
    while [ $# -gt 0 ]; do
      case "$1" in
        --studies) studies=$2; shift 2 ;;
        --port) port=$2; shift 2 ;;
        --run) run=$2; shift 2 ;;
        *) extra+=("$1"); shift ;;
      esac
    done
    if [ ! -f "$run/segmentation.pt" ] || [ ! -f "$run/model.pt" ]; then
      [ "$run" = "$ROOT/bundles/hand_osteo/runs/quick" ] || { log "error: $run has no trained hand_osteo models (segmentation.pt, model.pt)"; exit 2; }
      log "no trained hand_osteo models in $run yet: training them first (bash scripts/run.sh demo, ~16 min on 2 cores)"
      bash "$ROOT/scripts/run.sh" demo
    fi
    if [ -z "$studies" ]; then  # default datastore: a copy of the phantom cohort's radiographs (unlabelled)
      studies="$ROOT/apps/monailabel/studies/hand_phantom"
      if [ ! -d "$studies" ]; then
        log "creating the default datastore $studies (quick phantom cohort: 144 radiographs)"
        tmp=$(mktemp -d)
        "$LABEL_VENV/bin/python" -m monai_osteo.data.phantoms hand --out "$tmp" --preset quick --seed 0 >/dev/null
        mkdir -p "$studies.partial" && cp "$tmp"/images/*.png "$studies.partial"/ && mv "$studies.partial" "$studies"
        rm -rf "$tmp"
      fi
    fi
    log "MONAI Label on http://127.0.0.1:$port (app apps/monailabel, studies $studies, models of $run)"
    # the monailabel launcher runs the python on PATH (or MONAILABEL_PYEXE): the label environment's
    PATH="$LABEL_VENV/bin:$PATH" MONAILABEL_PYEXE="$LABEL_VENV/bin/python" exec "$LABEL_VENV/bin/monailabel" start_server \
      --app "$ROOT/apps/monailabel" --studies "$studies" --host 127.0.0.1 --port "$port" \
      --conf hand_osteo_run "$run" ${extra[@]+"${extra[@]}"} ;;
  label-test)
    setup_env "$LABEL_VENV" "$LABEL_EXTRAS"
    cd "$ROOT"
    log "pytest tests/apps tests/bundle/test_label_app.py (MONAI Label environment)"
    PATH="$LABEL_VENV/bin:$PATH" exec "$LABEL_VENV/bin/python" -m pytest tests/apps tests/bundle/test_label_app.py -p no:cacheprovider "$@" ;;
  *)
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
