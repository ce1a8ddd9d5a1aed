#!/bin/bash
# A latent-size study spread over a Slurm job array: array task i trains latent size LATENT_DIMS[i] in
# its own run directory, STUDY_DIR/latent_<z>. The tasks share nothing but the study directory, so
# Slurm may put each on a different machine; `vaelab report STUDY_DIR` then merges whatever runs exist.
#
#   jobid=$(sbatch --parsable examples/slurm_study.sh runs/study --epochs 20)
#   sbatch --dependency=afterany:$jobid --wrap "vaelab report runs/study"
#
# Extra arguments after STUDY_DIR go to `vaelab train`. --resume makes a task safe to requeue or
# resubmit: it continues its run's checkpoint, or starts afresh where there is none. A task may itself
# train data-parallel: replace `vaelab train` with `torchrun --standalone --nproc_per_node=N -m vaelab
# train` and ask for N GPUs.
#
#SBATCH --job-name=vaelab-study
#SBATCH --array=0-2
#SBATCH --gpus=1
#SBATCH --cpus-per-task=4
#SBATCH --time=02:00:00
#SBATCH --output=%x-%A_%a.out
set -euo pipefail

LATENT_DIMS=(2 4 16)
STUDY_DIR=${1:-runs/study}
shift || true
Z=${LATENT_DIMS[$SLURM_ARRAY_TASK_ID]}

vaelab train -z "$Z" --study-dir "$STUDY_DIR" --resume --no-progress "$@"
