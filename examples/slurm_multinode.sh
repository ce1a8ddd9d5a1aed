#!/bin/bash
# One run trained data-parallel over several machines: srun starts one torchrun per node, torchrun
# starts one vaelab process per GPU (NCCL), and they meet at the first node (c10d rendezvous). Rank 0,
# on the first node, alone writes the run directory; every node must be able to read the data
# (--data-dir on a shared filesystem, or the same path holding a copy on each node).
#
#   sbatch examples/slurm_multinode.sh runs/study -z 16 --epochs 50 --batch-size 1024
#
#SBATCH --job-name=vaelab-ddp
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=16
#SBATCH --time=02:00:00
#SBATCH --output=%x-%j.out
set -euo pipefail

STUDY_DIR=${1:-runs/study}
shift || true
head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)

# --nproc_per_node matches --gpus-per-node above.
srun torchrun --nnodes="$SLURM_JOB_NUM_NODES" --nproc_per_node=4 \
    --rdzv-backend=c10d --rdzv-endpoint="$head_node:29500" --rdzv-id="$SLURM_JOB_ID" \
    -m vaelab train --study-dir "$STUDY_DIR" --resume --no-progress "$@"
