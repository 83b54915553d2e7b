"""Run directories, atomic checkpoints and resuming: one face over the package's rooms.

    rundir.py     the layout of a run directory (file names), its lock, a new run's directory, config.yaml
    durable.py    crash-safe writes (temporary file, fsync, rename), sha256, arrays flattened for np.savez
    models.py     model files (model.pt, best_model.pt): write, read, find the one to evaluate
    periodic.py   periodic checkpoints: Checkpointer (write, manifest last, prune), verify, discard_newer
    resume.py     resuming: the config, the newest intact checkpoint that fits, training_state / restore
    logs.py       progress.csv and evaluations.csv cut back to a checkpoint's step

A run directory holds::

    config.yaml        the fully resolved configuration (reloadable with --preset)
    command.txt        the command line that started the run (and each --resume after it)
    progress.csv       one row per log interval
    evaluations.csv    one row per evaluation
    tensorboard/       TensorBoard event files
    checkpoints/       periodic checkpoints, each three files:
                         step_<N>.pt           training state: agent (networks, optimizer), RNGs, envs, logs
                         step_<N>.replay.npz   the replay buffer (when save_replay allows it)
                         step_<N>.json         manifest: size and sha256 of the other two, written last
    best_model.pt      Q-network with the best evaluation so far
    model.pt           final Q-network
    qtable.csv         --algo qlearning: the final Q-table, with best_qtable.csv, in place of the .pt files

Design decisions:
- Every file is written to a temporary name in the same directory, flushed, fsynced, then renamed (and the
  directory fsynced), so a crash never leaves a half-written file under a real name.
- A checkpoint counts only when its manifest exists and every file it lists has the recorded size and sha256.
  The manifest is written last, so a kill -9 at any moment leaves either a complete checkpoint or one that is
  skipped; a flipped byte (which torch.load may well accept) is caught by the checksum. ``--resume`` takes the
  newest checkpoint that verifies and names each one it skipped and why.
- Old checkpoints are deleted only after the new one is complete, so a failed write (disk full) leaves the
  previous checkpoint as it was; the files of the failed one are removed and the error says so.
- Everything the loop needs to continue is in the checkpoint: the step counters, the agent's state
  (:meth:`qzoo.agent.QAgent.state_dict`), the loop's and torch's RNG states, the training envs
  (:func:`qzoo.envs.vec_env_state`), the progress log's recent episodes, the best evaluation, and the replay
  buffer (:meth:`qzoo.replay.ReplayBuffer.state_dict`) in its own ``.npz`` (numpy arrays, no pickle). The
  epsilon and beta schedules are functions of the step, so they follow from the restored step.
- A resume changes nothing in the run directory until every check has passed (checkpoint intact, same env,
  observation shape, algorithm, settings and format version); then progress.csv and evaluations.csv are cut
  back to the checkpoint's step (rows written after it, before the run died, would otherwise repeat) and
  TensorBoard drops the events after it (``purge_step``).
"""

from qzoo.checkpoint.durable import (
    CheckpointError,
    atomic_write,
    atomic_write_bytes,
    describe_os_error,
    flatten,
    sha256_file,
    unflatten,
)
from qzoo.checkpoint.logs import rewind_logs
from qzoo.checkpoint.models import FORMAT_VERSION, MODEL_VERSIONS, find_model, load, model_payload, save
from qzoo.checkpoint.periodic import AUTO_REPLAY_MAX_BYTES, Checkpointer, discard_newer, verify
from qzoo.checkpoint.resume import (
    RESUME_MAY_CHANGE,
    Restored,
    Resume,
    find_resumable,
    load_replay,
    prepare_resume,
    restore,
    resume_config,
    training_state,
)
from qzoo.checkpoint.rundir import (
    BEST_FILE,
    CONFIG_FILE,
    LOG_FILES,
    MODEL_FILE,
    checkpoint_files,
    new_run_dir,
    read_config,
    run_dir_lock,
    write_config,
)

__all__ = [
    "AUTO_REPLAY_MAX_BYTES", "BEST_FILE", "CONFIG_FILE", "FORMAT_VERSION", "LOG_FILES", "MODEL_FILE", "MODEL_VERSIONS",
    "RESUME_MAY_CHANGE", "CheckpointError", "Checkpointer", "Restored", "Resume", "atomic_write", "atomic_write_bytes",
    "checkpoint_files", "describe_os_error", "discard_newer", "find_model", "find_resumable", "flatten", "load",
    "load_replay", "model_payload", "new_run_dir", "prepare_resume", "read_config", "restore", "resume_config",
    "rewind_logs", "run_dir_lock", "save", "sha256_file", "training_state", "unflatten", "verify", "write_config",
]
