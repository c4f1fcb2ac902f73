"""`ModelDir`: the layout of BAM_DIR/models/<name>/ as code. Every path
inside a model folder is built here; the files' formats live beside it in
`bam_tf.store` (predictions in `outputs`, locks and claims in `locking`,
the identity in `identity`, earlier versions' folders in `migration`).

    config.json       the configuration of the newest start; paths inside
                      the BAM_DIR relative to it ("./glue_data", "." for
                      the BAM_DIR itself), so they move with it
    identity.json     what decides the run's numbers (`bam_tf.store.identity`)
    runs.json         every start: when, where (host, pid, absolute paths),
                      which trials, output and runtime settings
    results.json/txt  the finished trials, merged under the folder's lock
    claims/trial_<k>.json   the process training trial k (`locking.Claim`)
    checkpoints/trial_<k>/  what resuming trial k needs
    checkpoints/trial_<k>.weights.h5   its trained model
    logs/trial_<k>/   TensorBoard events
    outputs/<task>_<split>_predictions_<k>.npz   predictions by example id
    outputs/glue/<k>/ GLUE leaderboard files (`bam_tf.store.outputs`)
    vocab.txt         the tokenizer's vocabulary
"""

import contextlib
import glob
import json
import math
import os
import shutil
import tempfile
import time

from bam_tf import config as config_lib
from bam_tf.errors import BamError
from bam_tf.io_utils import atomic_write_json
from bam_tf.io_utils import atomic_write_text
from bam_tf.store import bam_dir as bam_dir_lib
from bam_tf.store import migration
from bam_tf.store.locking import Claim
from bam_tf.store.locking import FolderLock
from bam_tf.store.locking import claim_alive
from bam_tf.store.locking import this_process
from bam_tf.store.trial_hold import claim_trials


class ModelDirError(BamError):
    pass


class ModelDir:
    """One model folder.

    Example:

    ```python
    folder = ModelDir(bam_dir, "rte-model")
    folder.weights_path(1)      # BAM_DIR/models/rte-model/checkpoints/...
    folder.read_results()       # {"trials": [...]}, checked
    ```
    """

    def __init__(self, bam_dir, name):
        self.bam_dir = os.path.abspath(bam_dir)
        self.name = name
        self.path = bam_dir_lib.model_path(self.bam_dir, name)

    @classmethod
    def of(cls, config):
        return cls(config.bam_dir, config.model_name)

    @classmethod
    @contextlib.contextmanager
    def scratch(cls, name):
        """A folder named `name` in a new temporary BAM_DIR, deleted when
        the block ends: where a non-chief worker writes its checkpoints
        (saving takes every worker) without touching the chief's."""
        root = tempfile.mkdtemp(prefix="bam_tf_worker_")
        try:
            yield cls(root, name)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    @classmethod
    def at(cls, path):
        """The model folder at `path` (BAM_DIR/models/<name>)."""
        path = os.path.abspath(path)
        return cls(os.path.dirname(os.path.dirname(path)),
                   os.path.basename(os.path.normpath(path)))

    # ------------------------------------------------------------- layout
    def file(self, *parts):
        return os.path.join(self.path, *parts)

    @property
    def config_path(self):
        return self.file("config.json")

    @property
    def identity_path(self):
        return self.file("identity.json")

    @property
    def results_path(self):
        return self.file("results.json")

    @property
    def runs_path(self):
        return self.file("runs.json")

    @property
    def vocab_path(self):
        return self.file("vocab.txt")

    def claim_path(self, trial):
        return self.file("claims", f"trial_{trial}.json")

    def checkpoints_dir(self, trial):
        return self.file("checkpoints", f"trial_{trial}")

    def weights_path(self, trial):
        return self.file("checkpoints", f"trial_{trial}.weights.h5")

    def logs_dir(self, trial):
        return self.file("logs", f"trial_{trial}")

    def glue_submission_path(self, trial, file_name):
        return self.file("outputs", "glue", str(trial), file_name)

    def predictions_path(self, task_name, split, trial):
        return self.file("outputs",
                         f"{task_name}_{split}_predictions_{trial}.npz")

    def write_vocabulary(self, tokens):
        atomic_write_text(self.vocab_path, "\n".join(tokens) + "\n")

    def read_vocabulary(self):
        """The tokens of vocab.txt; an error naming it when it is
        missing, unreadable or empty."""
        try:
            with open(self.vocab_path, encoding="utf-8") as f:
                tokens = f.read().splitlines()
        except OSError as e:
            raise ModelDirError(f"{self.vocab_path}: cannot read the "
                                f"vocabulary ({e.strerror}).") from None
        except UnicodeDecodeError as e:
            raise ModelDirError(f"{self.vocab_path}: not UTF-8 text ({e}); "
                                "restore it from a copy.") from None
        if not tokens:
            raise ModelDirError(f"{self.vocab_path}: holds no token; restore "
                                "it from a copy.")
        return tokens

    def exists(self):
        return os.path.isdir(self.path)

    def has_weights(self, trial):
        return os.path.isfile(self.weights_path(trial))

    def has_checkpoints(self):
        """Whether any trial left training checkpoints or final weights."""
        return bool(glob.glob(self.file("checkpoints", "trial_*", "*.index"))
                    or glob.glob(self.file("checkpoints", "*.weights.h5")))

    def lock(self):
        return FolderLock(self.path)

    # ------------------------------------------------------------- config
    def read_saved_config(self):
        """config.json as saved (a dict), or None when there is none;
        errors name the file."""
        return _read_object(self.config_path, "configuration",
                            "restore it from a copy, or train the folder "
                            "afresh (the training command with "
                            "--overwrite)")

    def read_config(self):
        """The saved configuration as a RunConfig, its paths resolved
        against where this folder is now."""
        saved = self.read_saved_config()
        if saved is None:
            raise ModelDirError(f"{self.config_path} not found; train "
                                f"{self.name!r} first.")
        values = migration.config_as_read_now(saved)
        values["bam_dir"] = self.bam_dir
        for key in config_lib.PATH_FIELDS:
            values[key] = self.resolve(values.get(key))
        try:
            return config_lib.RunConfig.from_dict(values)
        except config_lib.ConfigError as e:
            raise config_lib.ConfigError(f"{self.config_path}: {e}") from None

    def _portable(self, value):
        """A path inside the BAM_DIR as "./x", so that it moves with it; a
        path outside stays absolute (it does not move with the BAM_DIR);
        names (an encoder under pretrained_models/, a keras-hub preset) as
        they are."""
        if not value or not os.path.exists(value):
            return value
        relative = os.path.relpath(os.path.abspath(value), self.bam_dir)
        if relative == ".":
            return "."
        if relative.startswith(".."):
            return os.path.abspath(value)
        return "./" + relative

    def resolve(self, value):
        """A path as config.json saves it, where it is now: "./x" and "."
        under this folder's BAM_DIR; anything else as it is."""
        if isinstance(value, str) and (value == "." or value.startswith(
                ("./", "../"))):
            return os.path.normpath(os.path.join(self.bam_dir, value))
        return value

    # ----------------------------------------------------------- identity
    def read_identity(self):
        identity = _read_object(self.identity_path, "run identity",
                                "restore it from a copy, or delete it to "
                                "have the next run check the configuration "
                                "only")
        if identity is not None and not isinstance(
                identity.get("experiment"), dict):
            raise ModelDirError(
                f"{self.identity_path}: no \"experiment\" object; restore "
                "the file from a copy, or delete it to have the next run "
                "check the configuration only.")
        return identity

    def record_start(self, config, runtime, trials, identity=None):
        """Writes what a start records: `identity` to identity.json (when
        given), `config` to config.json (its paths portable) and this
        start's line in runs.json, the settings that do not change the
        numbers, kept for every start. Call under the lock."""
        saved_config = config.to_dict()
        run = {"paths": {"bam_dir": self.bam_dir,
                         "glue_dir": config_lib.glue_dir(config),
                         "pretrained_model": config.pretrained_model},
               "outputs": config.section("outputs")}
        saved_config["bam_dir"] = "."
        for key in config_lib.PATH_FIELDS:
            saved_config[key] = self._portable(saved_config[key])
        runs = _read_object(self.runs_path, "run log",
                            "restore it from a copy or delete it") or {}
        entries = runs.get("runs") if isinstance(runs.get("runs"),
                                                 list) else []
        entries.append({
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **{k: this_process()[k] for k in ("host", "pid")},
            "trials": list(trials), **run,
            "runtime": {k: (list(v) if isinstance(v, tuple) else v)
                        for k, v in runtime.__dict__.items()},
        })
        if identity is not None:
            atomic_write_json(self.identity_path, identity)
        atomic_write_json(self.config_path, saved_config)
        atomic_write_json(self.runs_path, {"runs": entries})

    # ------------------------------------------------------------ results
    def read_results(self):
        """{"trials": [...]}, every record checked; {"trials": []} when
        there is no file yet. Errors name the file and the record."""
        results = _read_object(self.results_path, "results",
                               "restore it from a copy (results.txt has "
                               "the same numbers)")
        if results is None:
            return {"trials": []}
        trials = results.get("trials")
        if not isinstance(trials, list):
            raise ModelDirError(
                f"{self.results_path}: expected {{\"trials\": [...]}}; "
                "restore it from a copy.")
        for i, trial in enumerate(trials):
            problem = _record_problem(trial)
            if problem:
                raise ModelDirError(
                    f"{self.results_path}: trial record {i + 1} {problem}; "
                    "restore the file from a copy.")
        return results

    def finished_trials(self):
        return {t["trial"] for t in self.read_results()["trials"]}

    def merge_results(self, records):
        """Adds `records` to results.json, keeping every trial already
        there (a trial finished by another process stays as it wrote it).
        Call under the lock. Returns the merged results."""
        results = self.read_results()
        have = {t["trial"] for t in results["trials"]}
        results["trials"] = sorted(
            results["trials"] + [r for r in records if r["trial"] not in have],
            key=lambda t: t["trial"])
        atomic_write_json(self.results_path, results)
        atomic_write_text(self.file("results.txt"), format_results(results))
        return results

    # ------------------------------------------------------------- claims
    def claim_trials(self, trials, claim_timeout_secs, heartbeat_secs,
                     follow=False):
        """A `TrialHold` for each of `trials` this process is to train; a
        `FollowedTrial` for each where it `follow`s the chief
        (`bam_tf.store.trial_hold.claim_trials`)."""
        return claim_trials(self, trials, claim_timeout_secs,
                            heartbeat_secs, follow)

    def live_claims(self, claim_timeout_secs):
        """{trial: holder} of the claims whose process may still run."""
        folder = self.file("claims")
        held = {}
        if not os.path.isdir(folder):
            return held
        for name in sorted(os.listdir(folder)):
            number = name[len("trial_"):-len(".json")]
            if not (name.startswith("trial_") and name.endswith(".json")
                    and number.isdigit()):
                continue  # not a claim (an editor's backup, say)
            holder = Claim.holder(os.path.join(folder, name))
            if holder is not None and claim_alive(holder,
                                                  claim_timeout_secs):
                held[int(number)] = holder
        return held

    def students(self):
        """The other model folders of this BAM_DIR whose config.json
        names this one among its teachers (a folder whose config cannot
        be read is left out: it names none that can be trusted)."""
        found = []
        for name in bam_dir_lib.model_names(self.bam_dir):
            if name == self.name:
                continue
            other = ModelDir(self.bam_dir, name)
            try:
                saved = other.read_saved_config() or {}
            except ModelDirError:
                continue
            teachers = saved.get("teachers")
            if isinstance(teachers, dict) and self.name in teachers.values():
                found.append(other)
        return found

    def remove(self):
        shutil.rmtree(self.path, ignore_errors=True)


def _read_object(path, what, way_out):
    """A JSON object file, or None when it does not exist."""
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelDirError(f"{path}: damaged {what} file, not valid JSON "
                            f"({e}); {way_out}.") from None
    except OSError as e:
        raise ModelDirError(f"{path}: cannot read the {what} file "
                            f"({e}).") from None
    if not isinstance(value, dict):
        raise ModelDirError(f"{path}: expected a JSON object in the {what} "
                            f"file, got {type(value).__name__}; {way_out}.")
    return value


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _record_problem(trial):
    """What is wrong with one results.json record, or None."""
    if not isinstance(trial, dict):
        return "is not an object"
    for key in ("trial", "seed"):
        if not isinstance(trial.get(key), int) or isinstance(
                trial.get(key), bool):
            return f"has no integer {key!r}"
    if not _number(trial.get("avg")) or not math.isfinite(trial["avg"]):
        return f"(trial {trial['trial']}) has no number 'avg'"
    metrics = trial.get("metrics")
    if not isinstance(metrics, dict) or not all(
            isinstance(m, dict) and _number(m.get("score"))
            and all(_number(v) for v in m.values())
            for m in metrics.values()):
        return (f"(trial {trial['trial']}) has no 'metrics' of the form "
                "{task: {metric: number, ..., \"score\": number}}")
    return None


def format_results(results):
    lines = []
    for trial in results["trials"]:
        lines.append(f"trial {trial['trial']} (seed {trial['seed']}): "
                     f"avg {trial['avg']:.2f}")
        for task, metrics in sorted(trial["metrics"].items()):
            shown = ", ".join(f"{k} {v:.2f}" for k, v in sorted(
                metrics.items()))
            lines.append(f"  {task}: {shown}")
    return "\n".join(lines) + "\n"
