#!/usr/bin/env bash
# Run the studies of studies/ one at a time, smallest first, and build each report.
# Usage: scripts/run_studies.sh [OUT] [WORKERS] [STUDY ...]
#   OUT      output folder (default: out/studies); each study goes to OUT/<name>/
#   WORKERS  LocalCluster workers (default: 2); ignored when CKSIM_SCHEDULER is set
#   STUDY    names to run (default: all, in the order below)
# Set CKSIM_SCHEDULER=tcp://host:8786 to run on an existing Dask cluster.
# A study that was interrupted resumes (only its missing runs run); a study whose runs
# partly failed or stopped still gets its report (cksim sweep exits 1 then).
set -u
cd "$(dirname "$0")/.."
if ! command -v cksim > /dev/null && [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi
command -v cksim > /dev/null || { echo "cksim not found: install the package (pip install -e .)"; exit 2; }
out=${1:-out/studies}
workers=${2:-2}
shift $(( $# > 2 ? 2 : $# ))
studies=("$@")
if [ ${#studies[@]} -eq 0 ]; then
  studies=(smoke predictors_traces phase_shift interval_latency slice_thickness spine_drift)
fi
where=(--workers "$workers")
if [ -n "${CKSIM_SCHEDULER:-}" ]; then where=(--scheduler "$CKSIM_SCHEDULER"); fi
status=0
for name in "${studies[@]}"; do
  echo "== $name ($(date -u +%H:%M:%S))"
  start=$(date +%s)
  cksim sweep "studies/$name.yaml" --out "$out/$name" "${where[@]}"
  rc=$?
  if [ $rc -ge 2 ]; then echo "$name: cksim sweep failed (exit $rc)"; status=$rc; continue; fi
  [ $rc -eq 1 ] && status=1
  cksim sweep-report "$out/$name" || status=2
  echo "== $name done in $(( $(date +%s) - start )) s (sweep exit $rc)"
done
exit $status
