"""--init_from_model (Table 3): the model folder a run starts from, checked
before anything is trained."""

from bam_tf import config as config_lib
from bam_tf.errors import RunError
from bam_tf.store import identity as identity_lib
from bam_tf.store import migration
from bam_tf.store.model_dir import ModelDir
from bam_tf.tasks import get_tasks


class InitSource:
    """The run `config.init_from_model` names, and its trial
    `config.init_from_trial`."""

    def __init__(self, config):
        self.config = config
        self.folder = ModelDir(config.bam_dir, config.init_from_model)
        self.weights_path = self.folder.weights_path(config.init_from_trial)

    def check(self):
        """A run continued from another one needs its very encoder.
        Returns the fingerprint of the weights it starts from (part of the
        run's identity)."""
        config, source = self.config, self.folder
        if source.read_saved_config() is None:
            raise RunError(
                f"--init_from_model: {source.config_path} not found.")
        source_config = source.read_config()
        differ = [f for f in config_lib.ENCODER_FIELDS
                  if getattr(source_config, f) != getattr(config, f)]
        if differ:
            raise RunError(
                f"--init_from_model={config.init_from_model}: its encoder "
                f"differs in {differ}; fine-tuning needs the same encoder.")
        if not self.folder.has_weights(config.init_from_trial):
            raise RunError(f"--init_from_model: {self.weights_path} not "
                           "found.")
        return identity_lib.file_fingerprint(self.weights_path)

    def check_encoder(self, encoder_print):
        """The source's encoder must be this run's (by fingerprint; for a
        folder written before fingerprints, by its encoder path)."""
        config, source = self.config, self.folder
        saved = source.read_identity()
        same = (saved.get("encoder") == encoder_print if saved is not None
                else migration.same_encoder_by_path(source, config))
        if not same:
            raise RunError(
                f"--init_from_model={config.init_from_model} was trained "
                f"from another encoder than {config.pretrained_model!r} (see "
                f"{source.identity_path if saved else source.config_path}); "
                "fine-tuning needs the same encoder.")

    def vocabulary(self):
        """The debug vocabulary the source learned from its data."""
        return self.folder.read_vocabulary()

    def head_specs(self):
        return [t.head_spec
                for t in get_tasks(self.folder.read_config().task_names)]
